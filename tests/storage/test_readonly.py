"""A database that cannot be written for a while (its SQLite file read-only; a PostgreSQL
database set read-only): writes answer 503 ServiceUnavailable, health says degraded, the log
tells the episode once; once it is writable again, writes pass and jobs in flight finish
within seconds, by themselves."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support import Cmhost, _postgres_admin, create_server, error_code

UNAVAILABLE_LINE = "the database is unavailable"
BACK_LINE = "the database is available again"


class UnprivilegedCmhost(Cmhost):
    """A cmhost that file permissions apply to: run as root (as the tests may be), it gets
    no capabilities (`setpriv --bounding-set=-all`), so a file made read-only by chmod is
    read-only to it too, as it would be to any service account."""

    def launcher(self) -> list[str]:
        return (["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0
                else [])


@pytest.fixture()
def cm(tmp_path: Path) -> Iterator[Cmhost]:
    # With the credential pool's filler (on by default): it too must stay quiet in an outage.
    server = UnprivilegedCmhost(tmp_path, clock="real", provisioning_seconds=1.0,
                                deletion_seconds=1.0)
    server.start()
    yield server
    server.stop()


def _sqlite_files(cm: Cmhost) -> list[Path]:
    path = Path(cm.database_url.removeprefix("sqlite:///"))
    return [p for p in (path, path.with_name(path.name + "-wal"),
                        path.with_name(path.name + "-shm")) if p.exists()]


def read_only(cm: Cmhost) -> Callable[[], None]:
    """Make cm's database read-only; returns what makes it writable again."""
    if cm.database_url.startswith("sqlite"):
        # What `chmod -R a-w` on the data directory does to the database.
        files = _sqlite_files(cm)
        for path in files:
            path.chmod(0o444)
        cm.data_dir.chmod(0o555)

        def writable() -> None:
            cm.data_dir.chmod(0o700)
            for path in files:
                path.chmod(0o600)
        return writable
    name = cm.database_url.rsplit("/", 1)[1]
    # New sessions are read-only; those open now are ended, so cmhost's next ones are.
    _postgres_admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on',
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
    return lambda: _postgres_admin(
        f'ALTER DATABASE "{name}" RESET default_transaction_read_only')


def health(cm: Cmhost) -> tuple[int, dict[str, Any]]:
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(cm.url + "/_cmhost/health", timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def create(cm: Cmhost, name: str) -> str:
    """The outcome of one CreateServer: "ok" or the error code."""
    try:
        create_server(cm.client(), name, "Chef" if hash(name) % 2 else "Puppet")
        return "ok"
    except ClientError as err:
        return error_code(err)


def statuses(cm: Cmhost) -> dict[str, str]:
    return {s["ServerName"]: s["Status"] for s in cm.client().describe_servers()["Servers"]}


def wait_for(what: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(0.2)
    raise AssertionError(message)


def test_a_read_only_database_refuses_writes_then_recovers_by_itself(cm: Cmhost) -> None:
    assert create(cm, "before") == "ok"
    wait_for(lambda: statuses(cm) == {"before": "HEALTHY"}, 15, "no first server")
    assert create(cm, "in-flight") == "ok"  # CREATING: its job is due in a second
    writable = read_only(cm)
    try:
        time.sleep(2.0)  # the job comes due while nothing can be written
        with ThreadPoolExecutor(8) as pool:  # enough at once to open new connections
            outcomes = list(pool.map(lambda i: create(cm, f"during-{i}"), range(16)))
        assert outcomes == ["ServiceUnavailable"] * 16
        status, state = health(cm)
        assert (status, state["status"]) == (503, "degraded"), state
        assert state["database"].startswith("not writable"), state
        assert statuses(cm)["in-flight"] == "CREATING"  # reads still answer
    finally:
        writable()
    back = time.monotonic()
    wait_for(lambda: create(cm, "after") == "ok", 10, "writes still fail once writable")
    wait_for(lambda: set(statuses(cm).values()) == {"HEALTHY"}, 15,
             f"servers stuck after the database came back: {statuses(cm)}")
    assert time.monotonic() - back < 15
    assert sorted(statuses(cm)) == ["after", "before", "in-flight"]
    assert health(cm)[0] == 200
    # One episode, told when it starts and when it ends, however much failed meanwhile; on
    # PostgreSQL the connections ended to make it read-only may make one of their own.
    log = cm.log()
    begun = [line for line in log.splitlines() if UNAVAILABLE_LINE in line]
    if cm.database_url.startswith("sqlite"):
        assert len(begun) == 1 and "is read-only" in begun[0], log
    assert 1 <= len(begun) <= 2 and log.count(BACK_LINE) == len(begun), log
    assert "Traceback" not in log, log
