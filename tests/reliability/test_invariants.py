"""The crash harness's own checks can fail: each catches the damage it is meant to catch."""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any

from cmhost.engines import archive
from cmhost.engines.base import EngineMaterial
from cmhost.storage.secrets import SecretBox
from tests.reliability import invariants
from tests.reliability.dbprobe import DbProbe
from tests.reliability.invariants import Call, Ledger

ACCOUNT = "000000000000"
ARN = f"arn:aws:opsworks-cm:us-east-1:{ACCOUNT}:server/web/"


def _server(name: str, sid: str, status: str = "HEALTHY") -> dict[str, Any]:
    return {"ServerName": name, "ServerArn": ARN.replace("web", name) + sid, "Status": status}


def _ledger(*calls: tuple[str, str, str, Any]) -> Ledger:
    ledger = Ledger()
    for op, server, outcome, response in calls:
        ledger.calls.append(Call(len(ledger.calls), 1, ACCOUNT, op, server, {}, outcome,
                                 response=response))
    return ledger


def _created(name: str, sid: str) -> tuple[str, str, str, Any]:
    return ("CreateServer", name, "accepted", {"Server": _server(name, sid)})


def test_a_lost_server_a_lost_backup_and_a_stray_backup_are_caught() -> None:
    ledger = _ledger(_created("web", "1"),
                     ("CreateBackup", "web", "accepted", {"Backup": {"BackupId": "web-1"}}),
                     ("CreateBackup", "web", "unknown", None))
    backups = [{"BackupId": b, "BackupType": "MANUAL", "ServerName": "web", "Status": "OK"}
               for b in ("web-2", "web-3")]
    problems = invariants.account_problems(ledger, ACCOUNT, [], backups, settled=True)
    assert any("vanished" in p for p in problems)
    assert any("web-1 was lost" in p for p in problems)
    assert any("2 manual backup(s) of web" in p for p in problems)  # one could be unknown's


def test_the_bookkeeping_allows_what_lost_responses_and_deletes_explain() -> None:
    ledger = _ledger(_created("web", "1"), ("DeleteServer", "web", "unknown", None),
                     ("CreateServer", "db", "unknown", None),
                     ("CreateBackup", "db", "unknown", None))
    servers = [_server("db", "9")]
    backups = [{"BackupId": "db-1", "BackupType": "MANUAL", "ServerName": "db", "Status": "OK"}]
    assert invariants.account_problems(ledger, ACCOUNT, servers, backups, settled=True) == []


def test_a_server_left_after_an_accepted_delete_is_caught_once_settled() -> None:
    ledger = _ledger(_created("web", "1"), ("DeleteServer", "web", "accepted", {}))
    deleting = [_server("web", "1", "DELETING")]
    assert invariants.account_problems(ledger, ACCOUNT, deleting, [], settled=False) == []
    assert invariants.account_problems(ledger, ACCOUNT, deleting, [], settled=True)
    assert invariants.settled_problems(deleting, [])


def test_events_catch_a_step_done_twice_and_an_operation_never_finished() -> None:
    server = _server("web", "1")
    base = ["Server web creation started (Chef 2, embedded engine).",
            "Engine provisioned by the embedded driver; waiting for its health check.",
            "Server web is online and HEALTHY."]
    fine = base + ["Backup web-1 started.", "Backup web-1 completed.",
                   "Node n1: associate requested.", "Node n1: associate failed: gone",
                   "Maintenance started.", "Maintenance backup web-2 completed.",
                   "Maintenance completed successfully."]
    assert invariants.event_problems(server, fine) == []
    twice = fine + ["Backup web-1 completed."]
    assert any("web-1" in p for p in invariants.event_problems(server, twice))
    unfinished = fine + ["Restore from backup web-1 started."]
    assert any("restore" in p for p in invariants.event_problems(server, unfinished))
    provisioned_twice = fine + [base[1]]
    assert invariants.event_problems(server, provisioned_twice)


def test_the_probe_catches_a_truncated_and_a_missing_artifact(tmp_path: Path) -> None:
    key = os.urandom(32)
    key_file = tmp_path / "master.key"
    key_file.write_text(base64.b64encode(key).decode())
    key_file.chmod(0o600)
    box = SecretBox(key)
    db = tmp_path / "cmhost.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE backups (id, arn, account, region, status, artifact_key, "
                 "artifact_sha256, artifact_size)")
    material = EngineMaterial(public={"ca_cert": "c", "server_cert": "s"},
                              secrets={"ca_key": "k", "server_key": "k"})
    for backup_id in ("good", "cut", "gone"):
        arn = f"arn:backup/{backup_id}"
        sealed = box.encrypt_bytes(archive.pack({"family": "Chef"}, material, {"a": b"1"}), arn)
        blob = tmp_path / "blobs" / "backups" / f"{backup_id}.enc"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(sealed)
        log = tmp_path / "blobs" / "logs" / ACCOUNT / "us-east-1" / f"{backup_id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("log")
        conn.execute("INSERT INTO backups VALUES (?, ?, ?, 'us-east-1', 'OK', ?, ?, ?)",
                     (backup_id, arn, ACCOUNT, f"backups/{backup_id}.enc",
                      hashlib.sha256(sealed).hexdigest(), len(sealed)))
    conn.commit()
    conn.close()
    cut = tmp_path / "blobs" / "backups" / "cut.enc"
    cut.write_bytes(cut.read_bytes()[:-10])
    (tmp_path / "blobs" / "backups" / "gone.enc").unlink()
    (tmp_path / "blobs" / "backups" / ".good.enc.x1.tmp").write_bytes(b"half")
    probe = DbProbe(f"sqlite:///{db}", tmp_path, key_file)
    problems, checked = probe.artifact_problems()
    assert checked == 3
    assert [p.split(":")[0] for p in problems] == ["backup cut (OK)", "backup gone (OK)"]
    assert probe.integrity_problems() == []
    assert probe.leftovers()["blob_tmp"] == ["backups/.good.enc.x1.tmp"]
