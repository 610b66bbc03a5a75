"""Events retention and logs: a step log goes when the last event linking to it is pruned;
a backup's log stays (it is the backup's, shown by its S3LogUrl)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from cmhost.service.retention import EventPruner
from cmhost.service.step_logs import StepLog, step_log_key
from cmhost.storage import repo
from cmhost.storage.blobs import DirectoryBlobStore
from cmhost.storage.db import Database
from tests.support import fresh_database_url

SERVER = {"id": "7d6f1c2e-0000-4000-8000-000000000001", "account": "000000000000",
          "region": "us-east-1"}
OTHER = {**SERVER, "id": "7d6f1c2e-0000-4000-8000-000000000002"}
BACKUP_LOG = "logs/000000000000/us-east-1/one-20250101000000000.log"


def test_pruning_deletes_the_step_logs_no_kept_event_links_to(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repo, "server_ids", lambda conn: [SERVER["id"]])
    db = Database(fresh_database_url(tmp_path))
    db.upgrade()
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    old = step_log_key(SERVER, "restore-old")
    shared = step_log_key(SERVER, "maintenance-shared")
    new = step_log_key(SERVER, "restore-new")
    foreign = step_log_key(OTHER, "creation")  # another server's: never this one's to prune
    for key in (old, shared, new, foreign, BACKUP_LOG):
        blobs.put(key, StepLog().add(0.0, key).encode())
    links = [old, None, BACKUP_LOG, shared, None, foreign, shared, None, new, None]
    with db.write() as conn:
        for at, key in enumerate(links):
            repo.insert_event(conn, server_id=SERVER["id"], server_name="one",
                              created_at=float(at), message=f"e{at}", log_key=key)
    # Keep the newest 4: events 6..9 (shared, -, new, -) stay; 0..5 go.
    EventPruner(SimpleNamespace(db=db, blobs=blobs), keep=4).tick(0.0)  # type: ignore[arg-type]
    with db.read() as conn:
        kept = [r["message"] for r in repo.list_events(conn, SERVER["id"], before=None,
                                                       limit=100)]
    assert kept == ["e9", "e8", "e7", "e6"]
    assert not blobs.exists(old)  # only pruned events linked to it
    assert blobs.exists(shared)  # a kept event still links to it
    assert blobs.exists(new)
    assert blobs.exists(BACKUP_LOG)  # the backup's, not the events'
    assert blobs.exists(foreign)

    with db.read() as conn:
        assert sorted(repo.event_log_keys(conn, SERVER["id"])) == sorted([shared, new])
    EventPruner(SimpleNamespace(db=db, blobs=blobs), keep=1).tick(0.0)  # type: ignore[arg-type]
    assert not blobs.exists(shared) and not blobs.exists(new)
