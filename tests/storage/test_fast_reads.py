"""The raw read path (`Database.fetch`): same answers as a transaction, and on PostgreSQL a
connection the server dropped is replaced on the next read."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from cmhost.storage import repo
from cmhost.storage.db import Database
from tests.support import POSTGRES_URL, fresh_database_url


def test_fetch_reads_what_was_written(tmp_path: Path) -> None:
    db = Database(fresh_database_url(tmp_path))
    db.upgrade()
    with db.write() as conn:
        repo.insert_event(conn, server_id="s1", server_name="one", created_at=1.0, message="m")
    with db.read() as conn:
        (event,) = repo.list_events(conn, "s1", before=None, limit=5)
    assert event["message"] == "m"
    rows = db.fetch(repo.SERVER_REVISIONS, {"account": "1", "region": "r", "after": "",
                                            "limit": 5})
    assert rows == []
    db.dispose()


@pytest.mark.skipif(not POSTGRES_URL, reason="PostgreSQL only (CMHOST_TEST_DATABASE_URL)")
def test_fetch_reconnects_after_the_server_dropped_its_connection(tmp_path: Path) -> None:
    db = Database(fresh_database_url(tmp_path))
    db.upgrade()
    params = {"account": "1", "region": "r", "after": "", "limit": 5}
    assert db.fetch(repo.SERVER_REVISIONS, params) == []
    pid = db._local.raw.driver_connection.info.backend_pid
    with db.write() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    assert db.fetch(repo.SERVER_REVISIONS, params) == []
    assert db._local.raw.driver_connection.info.backend_pid != pid
    db.dispose()


@pytest.mark.skipif(not POSTGRES_URL, reason="PostgreSQL only (CMHOST_TEST_DATABASE_URL)")
@pytest.mark.parametrize("pool", ["write", "read", "statement"])
def test_a_pooled_connection_dropped_while_idle_is_replaced_before_use(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pool: str) -> None:
    from cmhost.storage import db as db_module

    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    db = Database(fresh_database_url(tmp_path))
    db.upgrade()
    use = getattr(db, pool)  # transactions and autocommit have pools of their own
    with use() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    # Another connection ends the pooled one's backend while it sits in the pool.
    other = Database(db.url)
    with other.write() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    other.dispose()
    with use() as conn:  # pinged at checkout, found dead, replaced: no error
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    with db.write() as conn:
        repo.insert_event(conn, server_id="s1", server_name="one", created_at=1.0, message="m")
    db.dispose()


@pytest.mark.skipif(not POSTGRES_URL, reason="PostgreSQL only (CMHOST_TEST_DATABASE_URL)")
def test_a_connection_used_a_moment_ago_is_not_pinged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(fresh_database_url(tmp_path))
    db.upgrade()
    pings: list[object] = []
    for engine in (db._writer, db._reader):  # the transaction and the autocommit pool
        real_ping = engine.dialect.do_ping
        monkeypatch.setattr(engine.dialect, "do_ping",
                            lambda c, ping=real_ping: pings.append(c) or ping(c))
    for _ in range(5):
        with db.read() as conn:
            conn.execute(text("SELECT 1"))
        with db.write() as conn:
            conn.execute(text("SELECT 1"))
    assert pings == []
    db.dispose()
