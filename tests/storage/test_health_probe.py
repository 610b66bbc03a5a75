"""The health endpoint answers anyone: its probe of the database writes nothing while all is
well and is asked at most once per couple of seconds however many call it at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support import Cmhost


@pytest.fixture()
def cm(tmp_path: Path) -> Iterator[Cmhost]:
    server = Cmhost(tmp_path).start()
    yield server
    server.stop()


def test_health_probes_commit_nothing(cm: Cmhost) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        states = list(pool.map(lambda _: cm.get("/_cmhost/health"), range(200)))
    assert {s["status"] for s in states} == {"ok"}
    assert {s["database"] for s in states} == {"ok"}
    assert time.monotonic() - started < 20
    engine = create_engine(cm.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT key FROM meta WHERE key LIKE 'health%'")).all()
    finally:
        engine.dispose()
    assert rows == []  # before: every probe wrote (and committed) a meta row
