"""Cached DescribeServers reads (Database.fetch(cached=True)): a process's cached rows are given
again only until any process, or anyone with SQL, changes the servers table (PostgreSQL:
storage/changes.py; SQLite: `PRAGMA data_version`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from cmhost.storage import repo
from cmhost.storage.db import Database, WouldBlock
from tests.storage.test_create_check import add_server
from tests.support import POSTGRES_URL, fresh_database_url

PARAMS = {"account": "111122223333", "region": "us-east-1", "after": "", "limit": 100}


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    """Two Database objects on one database: two cmhost processes."""
    url = fresh_database_url(tmp_path)
    a, b = Database(url), Database(url)
    a.upgrade()
    yield a, b
    a.dispose()
    b.dispose()


def names(db: Database) -> list[str]:
    return [row[2] for row in db.fetch(repo.SERVER_REVISIONS, PARAMS, cached=True)]


def cached_names(db: Database) -> list[str]:
    with db.cached_only():
        return names(db)


def listening(db: Database, timeout: float = 10.0) -> None:
    """Wait until `db` caches (its listener said LISTEN), and warm the cache."""
    deadline = time.monotonic() + timeout
    while True:
        names(db)
        try:
            cached_names(db)
            return
        except WouldBlock:
            assert time.monotonic() < deadline, "the listener never started"
            time.sleep(0.02)


def eventually(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_read_is_cached_and_a_miss_would_block(two: tuple[Database, Database]) -> None:
    a, _ = two
    add_server(a, "111122223333", "us-east-1", "one")
    if POSTGRES_URL:
        with pytest.raises(WouldBlock), a.cached_only():
            names(a)  # not listening yet: nothing is cached
    listening(a)
    assert cached_names(a) == ["one"]
    with pytest.raises(WouldBlock), a.cached_only():  # other parameters: not cached
        a.fetch(repo.SERVER_REVISIONS, {**PARAMS, "after": "a"}, cached=True)
    with pytest.raises(WouldBlock), a.cached_only(), a.read():
        pass  # nor any transaction


def test_own_writes_are_seen_at_once(two: tuple[Database, Database]) -> None:
    a, _ = two
    listening(a)
    assert cached_names(a) == []
    add_server(a, "111122223333", "us-east-1", "mine")
    with pytest.raises(WouldBlock):
        cached_names(a)  # the commit made the cached rows stale, before returning
    assert names(a) == ["mine"]


def test_another_process_and_plain_sql_are_seen(two: tuple[Database, Database]) -> None:
    a, b = two
    listening(a)
    add_server(b, "111122223333", "us-east-1", "theirs")
    eventually(lambda: names(a) == ["theirs"])
    engine = create_engine(a.url)  # someone with psql
    with engine.begin() as conn:
        conn.execute(text("UPDATE servers SET name = 'renamed'"))
    engine.dispose()
    eventually(lambda: names(a) == ["renamed"])
    listening(a)
    assert cached_names(a) == ["renamed"]


@pytest.mark.skipif(not POSTGRES_URL, reason="PostgreSQL's listener (CI's second pass)")
def test_no_caching_while_the_listener_is_away(two: tuple[Database, Database]) -> None:
    a, b = two
    listening(a)
    engine = create_engine(a.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        killed = conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() "
            "AND application_name = 'cmhost-server-changes'")).all()
    engine.dispose()
    assert killed == [(True,)]
    # The listener notices (at once, or at its next ping) and caching stops; a change made
    # meanwhile is not lost: after it reconnects the cache starts from a new generation.
    eventually(lambda: a._changes.generation() is None)  # off while it reconnects (1 s)
    add_server(b, "111122223333", "us-east-1", "during")
    listening(a)
    assert cached_names(a) == ["during"]

