"""A database that cannot serve for now (locked, unreachable) answers 503 ServiceUnavailable,
the code that says "retry later" (botocore retries 500 too, but 500 says cmhost failed); other
failures stay 500 InternalFailure."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from sqlalchemy import exc

from cmhost.api.protocol import AwsJsonApp
from cmhost.api.sigv4 import KeyRecord, SigV4Verifier
from cmhost.storage.db import Database

KEY = KeyRecord("test", "test", "000000000000", "arn:aws:iam::000000000000:root")


def locked_error(path: Path) -> sqlite3.OperationalError:
    """A real 'database is locked': a write lock held, a second writer that will not wait."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        return error
    finally:
        other.close()
        holder.close()
    raise AssertionError("the second writer was not refused")


def test_which_failures_are_the_databases_for_now(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    locked = locked_error(tmp_path / "x.db")
    assert "locked" in str(locked)
    assert db.unavailable(locked)
    assert db.unavailable(exc.OperationalError("BEGIN IMMEDIATE", {}, locked))
    assert db.unavailable(exc.TimeoutError("QueuePool limit reached"))
    assert not db.unavailable(sqlite3.OperationalError("no such table: servers"))
    assert not db.unavailable(exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("x")))
    assert not db.unavailable(ValueError("a bug"))
    db.dispose()


def test_postgresql_errors_by_sqlstate() -> None:
    from psycopg import errors

    db = Database("postgresql+psycopg://cmhost:cmhost@127.0.0.1:1/nowhere")
    for transient in (errors.SerializationFailure, errors.DeadlockDetected,
                      errors.AdminShutdown, errors.ReadOnlySqlTransaction,
                      errors.TooManyConnections, errors.LockNotAvailable):
        assert db.unavailable(transient("x")), transient
        assert db.unavailable(exc.DBAPIError("SELECT", {}, transient("x"))), transient
    for lasting in (errors.ProgramLimitExceeded, errors.ObjectNotInPrerequisiteState,
                    errors.UndefinedTable, errors.InvalidPassword, errors.UniqueViolation):
        assert not db.unavailable(lasting("x")), lasting
    db.dispose()


def test_an_unreachable_postgresql_is_unavailable() -> None:
    db = Database("postgresql+psycopg://cmhost:cmhost@127.0.0.1:1/nowhere")
    with pytest.raises(exc.OperationalError) as raised, db.read():
        pass
    assert db.unavailable(raised.value)
    db.dispose()


def call(app: AwsJsonApp) -> tuple[int, dict[str, str], bytes]:
    """One signed DescribeServers request through the ASGI app, as boto3 would send it."""
    request = AWSRequest(method="POST", url="http://127.0.0.1:4580/", data=b"{}", headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "OpsWorksCM_V2016_11_01.DescribeServers"})
    SigV4Auth(Credentials(KEY.access_key_id, KEY.secret_access_key), "opsworks-cm",
              "us-east-1").add_auth(request)
    headers = [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
    headers.append((b"host", b"127.0.0.1:4580"))
    scope = {"type": "http", "method": "POST", "path": "/", "raw_path": b"/",
             "query_string": b"", "headers": headers}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, body = sent
    return (start["status"], {k.decode(): v.decode() for k, v in start["headers"]},
            body["body"])


@pytest.mark.parametrize(("error", "status", "code"), [
    (sqlite3.OperationalError("database is locked"), 503, "ServiceUnavailable"),
    (sqlite3.OperationalError("no such table: servers"), 500, "InternalFailure"),
    (RuntimeError("a bug"), 500, "InternalFailure"),
])
def test_the_answer_to_a_failed_request(tmp_path: Path, error: Exception, status: int,
                                        code: str) -> None:
    def handler(caller: Any, params: Any) -> Any:
        raise error

    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with ThreadPoolExecutor(1) as executor:
        app = AwsJsonApp({"DescribeServers": handler},
                         SigV4Verifier(lambda key: KEY if key == KEY.access_key_id else None),
                         None, executor, unavailable=db.unavailable)
        got_status, headers, body = call(app)
    db.dispose()
    assert (got_status, headers["x-amzn-errortype"]) == (status, code)
    assert code.encode() in body


def test_contention_opens_no_outage_episode(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """A lock held past the busy timeout answers 503 but is not an outage: no "unavailable"
    and "available again" lines, no connections reset; a storage fault is one."""
    from cmhost.storage.dbfile import DatabaseNotWritable

    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    db.upgrade()
    locked = locked_error(tmp_path / "x.db")
    with caplog.at_level("WARNING", logger="cmhost.storage"):
        for error in (locked, exc.OperationalError("BEGIN IMMEDIATE", {}, locked),
                      exc.TimeoutError("QueuePool limit reached")):
            with pytest.raises(type(error)), db.write():
                raise error
            assert db.unavailable(error) and not db.outage_active, error
        assert not caplog.records
        with pytest.raises(DatabaseNotWritable), db.write():
            raise DatabaseNotWritable("the database file is read-only")
        assert db.outage_active
        with db.write():
            pass
        assert not db.outage_active
    assert [r.getMessage()[:31] for r in caplog.records] == [
        "the database is unavailable: th", "the database is available again"]
    db.dispose()


def test_postgresql_contention_is_no_outage() -> None:
    from psycopg import errors

    db = Database("postgresql+psycopg://cmhost:cmhost@127.0.0.1:1/nowhere")
    for contention in (errors.SerializationFailure, errors.DeadlockDetected,
                       errors.LockNotAvailable, errors.QueryCanceled):
        assert not db._outage_fault(contention("x")), contention
    for outage in (errors.AdminShutdown, errors.ReadOnlySqlTransaction, errors.DiskFull,
                   errors.CannotConnectNow):
        assert db._outage_fault(outage("x")), outage
    db.dispose()
