"""Events retention: a server keeps only its newest events."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cmhost.service.retention import EventPruner
from cmhost.storage import repo
from cmhost.storage.db import Database
from tests.support import fresh_database_url


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    db = Database(fresh_database_url(tmp_path))
    db.upgrade()
    with db.write() as conn:
        for i in range(30):
            repo.insert_event(conn, server_id="s1", server_name="one", created_at=float(i // 2),
                              message=f"e{i}")
        repo.insert_event(conn, server_id="s2", server_name="two", created_at=1.0, message="x")
    with db.write() as conn:
        assert repo.prune_events(conn, "s1", 7) == 23
        assert repo.prune_events(conn, "s1", 7) == 0
        assert repo.prune_events(conn, "s2", 7) == 0
    with db.read() as conn:
        kept = [r["message"] for r in repo.list_events(conn, "s1", before=None, limit=100)]
    assert kept == [f"e{i}" for i in range(29, 22, -1)]


def test_the_pruner_takes_the_writer_only_for_servers_over_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(fresh_database_url(tmp_path))
    db.upgrade()
    with db.write() as conn:
        for i in range(12):
            repo.insert_event(conn, server_id="s1", server_name="one", created_at=float(i),
                              message=f"e{i}")
        repo.insert_event(conn, server_id="s2", server_name="two", created_at=1.0, message="x")
    monkeypatch.setattr(repo, "server_ids", lambda conn: ["s1", "s2"])
    writes = []
    real_write = db.write

    def counted_write() -> Any:
        writes.append(1)
        return real_write()

    monkeypatch.setattr(db, "write", counted_write)
    EventPruner(SimpleNamespace(db=db), keep=5).tick(0.0)  # type: ignore[arg-type]
    assert len(writes) == 1
    with db.read() as conn:
        assert len(repo.list_events(conn, "s1", before=None, limit=100)) == 5
        assert len(repo.list_events(conn, "s2", before=None, limit=100)) == 1
