"""The background import of a backup's PuppetDB archive, against a stand-in PuppetDB API
(tests/real_engines/test_puppetdb.py runs it against a real PuppetDB)."""

from __future__ import annotations

import gzip
import io
import tarfile
import threading
from pathlib import Path

from cmhost.engines.puppetdb_http import PuppetDBClient, PuppetDBRefused, Status
from cmhost.engines.puppetdb_restore import (
    POSTED,
    Imports,
    import_staged,
    in_progress,
    stage,
    unstage,
)


def archive(commands: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        names = ["puppetdb-bak/export-metadata.json",
                 *(f"puppetdb-bak/facts/node-{i}.json" for i in range(commands))]
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
    return gzip.compress(out.getvalue())


class StandIn(PuppetDBClient):
    """PuppetDB's status and archive import as a list of answers: starting, then running
    with the imported commands queued, then stored."""

    def __init__(self, states: list[tuple[str, int]], refuse: bool = False) -> None:
        self.states, self.refuse = states, refuse
        self.imported: list[bytes] = []

    def status(self) -> Status:
        state, depth = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if state == "down":
            raise ConnectionRefusedError(111, "Connection refused")
        return Status(http_status=200, state=state, queue_depth=depth, write_db_up=True,
                      read_db_up=True)

    def import_archive(self, data: bytes) -> None:
        if self.refuse:
            raise PuppetDBRefused("PuppetDB refused to import the backup's data (HTTP 400): no")
        self.imported.append(data)


def test_the_archive_waits_for_puppetdb_then_its_queue(tmp_path: Path) -> None:
    root, data = tmp_path / "puppetdb", archive(3)
    stage(root, data)
    assert in_progress(root) and ((root / "restore.tgz").stat().st_mode & 0o777) == 0o600
    api = StandIn([("down", 0), ("starting", 0), ("running", 0), ("running", 3),
                   ("running", 1), ("running", 0)])
    outcome = import_staged(root, root / "var", lambda: api, threading.Event(), poll=0.01)
    assert outcome is not None and (outcome.imported, outcome.discarded) == (3, 0)
    assert api.imported == [data]  # handed over once
    assert not in_progress(root)
    assert outcome.message == "PuppetDB holds the backup's data again (3 records)."


def test_discarded_commands_and_a_refusal_are_told(tmp_path: Path) -> None:
    root = tmp_path / "puppetdb"
    (root / "var" / "stockpile" / "discard").mkdir(parents=True)
    (root / "var" / "stockpile" / "discard" / "1-1_facts_5_x.json_err.txt").write_text("x")
    stage(root, archive(2))
    outcome = import_staged(root, root / "var", lambda: StandIn([("running", 0)]),
                            threading.Event(), poll=0.01)
    assert outcome is not None and "could not store 1 of the backup's 2" in outcome.message

    stage(root, archive(2))
    refused = import_staged(root, root / "var", lambda: StandIn([("running", 0)], refuse=True),
                            threading.Event(), poll=0.01)
    assert refused is not None and "refused the backup's data" in refused.message
    assert not in_progress(root)


def test_a_new_restore_or_a_removal_replaces_what_was_staged(tmp_path: Path) -> None:
    root = tmp_path / "puppetdb"
    stage(root, archive(1))
    (root / "restore.tgz").replace(root / POSTED)  # the first archive was handed over
    stage(root, archive(2))
    assert not (root / POSTED).exists()  # its commands are not waited for any more
    unstage(root)
    assert import_staged(root, root / "var", lambda: StandIn([("running", 0)]),
                         threading.Event(), poll=0.01) is None


def test_imports_run_in_the_background_and_leave_one_event(tmp_path: Path) -> None:
    root = tmp_path / "puppetdb"
    stage(root, archive(1))
    imports, api = Imports(poll=0.01), StandIn([("running", 1), ("running", 0)])
    imports.ensure("server-1", root, root / "var", lambda: api)
    imports.ensure("server-1", root, root / "var", lambda: api)  # one thread per server
    for _ in range(100):
        events = imports.take_events()
        if events:
            break
        threading.Event().wait(0.05)
    assert [(e.server_id, e.message) for e in events] == [
        ("server-1", "PuppetDB holds the backup's data again (1 record).")]
    assert len(api.imported) == 1 and imports.take_events() == []
    imports.close()
