"""Shared fixtures: a running cmhost per test module, and boto3 clients for it."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Cmhost, drop_created_databases

# Tests never read the developer's AWS configuration.
os.environ.setdefault("AWS_CONFIG_FILE", "/dev/null")
os.environ.setdefault("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN", "AWS_DATA_PATH"):
    os.environ.pop(var, None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the PostgreSQL databases the session's cmhosts used (no-op on SQLite); a failure
    to clean up is reported, not turned into a failed run."""
    try:
        drop_created_databases()
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"could not drop the test databases: {exc}", stacklevel=1)


@pytest.fixture(scope="module")
def cmhost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmhost]:
    """A cmhost on a virtual clock, throttling off, CREATING lasting 60 virtual seconds."""
    server = Cmhost(Path(tmp_path_factory.mktemp("cmhost"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(cmhost: Cmhost) -> Any:
    return cmhost.client()
