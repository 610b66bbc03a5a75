"""Fault injection (/_cmhost/faults), seen by a boto3 client: jobs that end FAILED with the
armed reason, servers held in a status for a while and then back, operations answered with
an AWS error or late; faults are counted, scoped, listed, expire, are cleared, and come back
after a restart; bad input is refused with a clear message."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.ops.helpers import (
    CREATING_SECONDS,
    backup_now,
    chef_attributes,
    events,
    healthy_server,
    quiet_windows,
    server,
    settle,
)
from tests.support import Cmhost, create_server

REASON = "The EC2 instance could not be launched: InsufficientInstanceCapacity"


@pytest.fixture(scope="module")
def cm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmhost]:
    """Health checks every 0.2 s: a held server must stay held while the monitor checks."""
    started = Cmhost(Path(tmp_path_factory.mktemp("faults")),
                     extra_args=["--health-interval", "0.2", "--server-limit", "50"]).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def client(cm: Cmhost) -> Any:
    return cm.client()


@pytest.fixture(autouse=True)
def no_faults_left(cm: Cmhost) -> Iterator[None]:
    yield
    call(cm, "DELETE", "/_cmhost/faults")


def call(cm: Cmhost, method: str, path: str, body: Any = None, *,
         raw: bytes | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(cm.host, cm.port, timeout=30)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def arm(cm: Cmhost, **fault: Any) -> dict[str, Any]:
    status, armed = call(cm, "POST", "/_cmhost/faults", fault)
    assert status == 201, armed
    return armed


def listed(cm: Cmhost) -> dict[str, dict[str, Any]]:
    status, answer = call(cm, "GET", "/_cmhost/faults")
    assert status == 200, answer
    return {f["id"]: f for f in answer["faults"]}


def error_of(call_: Any, **params: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as info:
        call_(**params)
    response = info.value.response
    return (response["Error"]["Code"], response["Error"]["Message"],
            response["ResponseMetadata"]["HTTPStatusCode"])


# --- fail_job ---------------------------------------------------------------------------


def test_a_creation_ends_failed_with_the_armed_reason(cm: Cmhost, client: Any) -> None:
    fault = arm(cm, kind="fail_job", job="create_server", status_reason=REASON,
                server_name="doomed-*")
    assert fault["remaining"] == 1 and fault["fired"] == 0
    create_server(client, "spared-1", **quiet_windows(cm))
    create_server(client, "doomed-1", **quiet_windows(cm))
    create_server(client, "doomed-2", **quiet_windows(cm))
    cm.advance(CREATING_SECONDS + 1)
    doomed = server(client, "doomed-1")
    assert (doomed["Status"], doomed["StatusReason"]) == ("FAILED", REASON)
    assert f"Server creation failed: {REASON}" in events(client, "doomed-1")
    # Its count is used up: the next creation it covers, and the one it does not, succeed.
    assert server(client, "doomed-2")["Status"] == "HEALTHY"
    assert server(client, "spared-1")["Status"] == "HEALTHY"
    assert fault["id"] not in listed(cm)


def test_a_backup_fails_with_the_reason_and_the_next_one_succeeds(cm: Cmhost,
                                                                   client: Any) -> None:
    healthy_server(cm, client, "backed-1")
    arm(cm, kind="fail_job", job="backup", status_reason="S3 upload failed: SlowDown",
        server_name="backed-*", account="000000000000")
    backup = client.create_backup(ServerName="backed-1")["Backup"]
    settle(cm)
    failed = client.describe_backups(BackupId=backup["BackupId"])["Backups"][0]
    assert (failed["Status"], failed["StatusDescription"]) == (
        "FAILED", "S3 upload failed: SlowDown")
    assert server(client, "backed-1")["Status"] == "HEALTHY"
    backup_now(cm, client, "backed-1")  # asserts OK


def test_a_restore_fails_and_the_server_keeps_its_state(cm: Cmhost, client: Any) -> None:
    healthy_server(cm, client, "restored-1")
    backup = backup_now(cm, client, "restored-1")
    arm(cm, kind="fail_job", job="restore", status_reason="the volume did not attach")
    client.restore_server(ServerName="restored-1", BackupId=backup["BackupId"])
    settle(cm)
    assert server(client, "restored-1")["Status"] == "HEALTHY"
    # Also its StatusReason, until the next health check finds the engine fine (0.2 s here).
    assert (f"Restore from backup {backup['BackupId']} failed: the volume did not attach"
            in events(client, "restored-1"))


def test_a_maintenance_fails(cm: Cmhost, client: Any) -> None:
    healthy_server(cm, client, "maintained-1")
    arm(cm, kind="fail_job", job="maintenance", status_reason="the patch did not apply")
    client.start_maintenance(ServerName="maintained-1")
    settle(cm)
    found = server(client, "maintained-1")
    assert (found["Status"], found["MaintenanceStatus"]) == ("HEALTHY", "FAILED")
    assert ("Maintenance failed and was rolled back: the patch did not apply"
            in events(client, "maintained-1"))


def test_a_node_association_fails_and_the_next_one_succeeds(cm: Cmhost, client: Any) -> None:
    healthy_server(cm, client, "nodes-1")
    arm(cm, kind="fail_job", job="associate_node", status_reason="the node was unreachable")
    statuses = []
    for node in ("node-a", "node-b"):
        token = client.associate_node(ServerName="nodes-1", NodeName=node,
                                      EngineAttributes=chef_attributes())[
            "NodeAssociationStatusToken"]
        settle(cm)
        statuses.append(client.describe_node_association_status(
            ServerName="nodes-1", NodeAssociationStatusToken=token)["NodeAssociationStatus"])
    assert statuses == ["FAILED", "SUCCESS"]
    assert "Node node-a: associate failed: the node was unreachable" in events(client,
                                                                               "nodes-1")


# --- server_status ----------------------------------------------------------------------


@pytest.mark.parametrize("status", ["UNHEALTHY", "CONNECTION_LOST"])
def test_a_server_is_held_in_a_status_for_the_duration(cm: Cmhost, client: Any,
                                                       status: str) -> None:
    name = f"held-{status.lower().replace('_', '-')}"
    healthy_server(cm, client, name)
    fault = arm(cm, kind="server_status", status=status, duration=600, server_name=name,
                status_reason="no answer on 443")
    assert [h["server_name"] for h in fault["holds"]] == [name]
    held = server(client, name)
    assert (held["Status"], held["StatusReason"]) == (status, "no answer on 443")
    time.sleep(1.0)  # five health checks of the engine, which is fine: the hold wins
    cm.advance(590)
    assert server(client, name)["Status"] == status
    assert listed(cm)[fault["id"]]["holds"][0]["status"] == status
    cm.advance(11)
    back = server(client, name)
    assert back["Status"] == "HEALTHY" and "StatusReason" not in back
    said = events(client, name)
    assert said[:2] == ["Health check: the server is HEALTHY.",
                        f"Health check: the server is {status}: no answer on 443"]
    assert fault["id"] not in listed(cm)  # used up, and holds nothing now


def test_a_server_created_after_the_fault_is_held_once_it_is_up(cm: Cmhost,
                                                                 client: Any) -> None:
    fault = arm(cm, kind="server_status", status="CONNECTION_LOST", duration=120,
                server_name="later-*", count=None)
    create_server(client, "later-1", **quiet_windows(cm))
    assert server(client, "later-1")["Status"] == "CREATING"
    cm.advance(CREATING_SECONDS + 1)
    assert server(client, "later-1")["Status"] == "CONNECTION_LOST"
    cm.advance(121)
    assert server(client, "later-1")["Status"] == "HEALTHY"
    cm.advance(30)  # a fault holds a server once, though it has no count
    assert server(client, "later-1")["Status"] == "HEALTHY"
    assert listed(cm)[fault["id"]]["fired"] == 1


def test_clearing_the_faults_ends_the_holds(cm: Cmhost, client: Any) -> None:
    healthy_server(cm, client, "cleared-1")
    arm(cm, kind="server_status", status="FAILED", duration=3600, server_name="cleared-1")
    assert server(client, "cleared-1")["Status"] == "FAILED"
    status, answer = call(cm, "DELETE", "/_cmhost/faults")
    assert (status, answer) == (200, {"cleared": 1})
    assert server(client, "cleared-1")["Status"] == "HEALTHY"


# --- error and latency ------------------------------------------------------------------


@pytest.mark.parametrize("code,status", [("ThrottlingException", 400),
                                         ("InternalFailure", 500),
                                         ("ServiceUnavailable", 503)])
def test_an_operation_answers_the_armed_error(cm: Cmhost, client: Any, code: str,
                                              status: int) -> None:
    fault = arm(cm, kind="error", operation="DescribeServers", code=code,
                message="injected for the test", http_status=status)
    assert error_of(client.describe_servers) == (code, "injected for the test", status)
    client.describe_servers()  # its one use is spent
    client.describe_backups()
    assert fault["id"] not in listed(cm)


def test_an_sdk_that_retries_gets_through_throttling(cm: Cmhost) -> None:
    fault = arm(cm, kind="error", operation="DescribeBackups", code="ThrottlingException",
                message="Rate exceeded", count=2)
    retrying = cm.client(retries=2)  # standard mode: three attempts
    assert "Backups" in retrying.describe_backups()
    assert fault["id"] not in listed(cm)  # both uses spent by the SDK's first two attempts


def test_an_error_fault_covers_only_its_account_server_and_operation(cm: Cmhost,
                                                                     client: Any) -> None:
    healthy_server(cm, client, "scoped-1")
    status, key = call(cm, "POST", "/_cmhost/keys", {"account": "222233334444"})
    assert status == 201 and key["Account"] == "222233334444"
    other = cm.client(key=key["AccessKeyId"], secret=key["SecretAccessKey"])
    fault = arm(cm, kind="error", code="AccessDeniedException", server_name="scoped-*",
                account="000000000000", count=None)
    for _ in range(2):
        assert error_of(client.describe_servers, ServerName="scoped-1")[0] == \
            "AccessDeniedException"
        assert error_of(client.describe_events, ServerName="scoped-1")[0] == \
            "AccessDeniedException"
    client.describe_servers()  # names no server
    assert other.describe_servers()["Servers"] == []  # another account: no fault
    assert listed(cm)[fault["id"]]["fired"] == 4
    assert listed(cm)[fault["id"]]["remaining"] is None


def test_a_fault_of_probability_zero_never_fires(cm: Cmhost, client: Any) -> None:
    fault = arm(cm, kind="error", operation="DescribeServers", code="InternalFailure",
                http_status=500, probability=0)
    for _ in range(5):
        client.describe_servers()
    assert listed(cm)[fault["id"]]["fired"] == 0


def test_latency_delays_the_operation(cm: Cmhost, client: Any) -> None:
    fault = arm(cm, kind="latency", operation="DescribeBackups", latency=0.6, count=2)
    started = time.monotonic()
    client.describe_backups()
    assert time.monotonic() - started >= 0.6
    assert listed(cm)[fault["id"]]["remaining"] == 1


# --- lifecycle --------------------------------------------------------------------------


def test_a_fault_expires_on_the_clock(cm: Cmhost, client: Any) -> None:
    fault = arm(cm, kind="error", operation="DescribeServers", code="InternalFailure",
                http_status=500, expires_in=60)
    assert fault["expires_at"] - fault["created_at"] == pytest.approx(60, abs=0.01)
    cm.advance(61)
    assert fault["id"] not in listed(cm)
    client.describe_servers()


def test_one_fault_is_removed_by_its_id(cm: Cmhost) -> None:
    first = arm(cm, kind="latency", latency=1)
    second = arm(cm, kind="latency", latency=2)
    assert call(cm, "DELETE", f"/_cmhost/faults/{first['id']}") == (
        200, {"removed": first["id"]})
    assert list(listed(cm)) == [second["id"]]
    status, answer = call(cm, "DELETE", f"/_cmhost/faults/{first['id']}")
    assert status == 404 and answer["__type"] == "ResourceNotFoundException"


BAD = [
    (b"not json", "JSON object"),
    (b"[1, 2]", "JSON object"),
    ({}, "'kind' must be one of error, fail_job, latency, server_status; it is missing"),
    ({"kind": "explode"}, "'kind' must be one of"),
    ({"kind": "latency", "latency": 1, "job": "backup"}, "A latency fault takes no 'job'"),
    ({"kind": "latency"}, "'latency' is required"),
    ({"kind": "latency", "latency": 0}, "'latency' must be a number of more than 0"),
    ({"kind": "latency", "latency": 1, "count": 0}, "'count' must be an integer"),
    ({"kind": "latency", "latency": 1, "count": 1.5}, "'count' must be an integer"),
    ({"kind": "latency", "latency": 1, "probability": 2}, "'probability' must be a number"),
    ({"kind": "latency", "latency": 1, "expires_in": -5}, "'expires_in' must be a number"),
    ({"kind": "latency", "latency": 1, "account": "123"}, "'account' must be a 12-digit"),
    ({"kind": "latency", "latency": 1, "operation": "DescribeEverything"},
     "'operation' must name an OpsWorks CM operation"),
    ({"kind": "error"}, "'code' must be an AWS error code"),
    ({"kind": "error", "code": "Throttling Exception"}, "'code' must be an AWS error code"),
    ({"kind": "error", "code": "Oops", "http_status": 200}, "'http_status' must be an integer"),
    ({"kind": "fail_job", "job": "backup"}, "'status_reason' is required"),
    ({"kind": "fail_job", "job": "reboot", "status_reason": "x"}, "'job' must be one of"),
    ({"kind": "server_status", "status": "HEALTHY", "duration": 5}, "'status' must be one of"),
    ({"kind": "server_status", "status": "UNHEALTHY"}, "'duration' is required"),
]


@pytest.mark.parametrize("body,message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_faults_are_refused_with_a_clear_message(cm: Cmhost, body: Any,
                                                     message: str) -> None:
    raw = body if isinstance(body, bytes) else None
    status, answer = call(cm, "POST", "/_cmhost/faults", body, raw=raw)
    assert status == 400, answer
    assert answer["__type"] == "ValidationException"
    assert message in answer["message"], answer["message"]
    assert listed(cm) == {}


def test_other_methods_on_faults_are_refused(cm: Cmhost) -> None:
    status, answer = call(cm, "PUT", "/_cmhost/faults", {"kind": "latency"})
    assert status == 405 and answer["__type"] == "MethodNotAllowed"


def test_faults_and_holds_survive_a_restart(tmp_path: Path) -> None:
    restarted = Cmhost(tmp_path).start()
    try:
        client = restarted.client()
        healthy_server(restarted, client, "kept-1")
        armed = [arm(restarted, kind="fail_job", job="backup", status_reason="after restart"),
                 arm(restarted, kind="error", operation="DescribeEvents", code="Boom",
                     http_status=500),
                 arm(restarted, kind="server_status", status="UNHEALTHY", duration=300)]
        assert server(client, "kept-1")["Status"] == "UNHEALTHY"
        restarted.restart()
        client = restarted.client()
        assert sorted(listed(restarted)) == sorted(f["id"] for f in armed)
        assert server(client, "kept-1")["Status"] == "UNHEALTHY"
        assert error_of(client.describe_events, ServerName="kept-1")[0] == "Boom"
        restarted.advance(301)
        assert server(client, "kept-1")["Status"] == "HEALTHY"
        backup = client.create_backup(ServerName="kept-1")["Backup"]
        settle(restarted)
        failed = client.describe_backups(BackupId=backup["BackupId"])["Backups"][0]
        assert (failed["Status"], failed["StatusDescription"]) == ("FAILED", "after restart")
        assert listed(restarted) == {}
    finally:
        restarted.stop()


# --- the command ------------------------------------------------------------------------


def test_the_faults_command_arms_lists_and_clears(cm: Cmhost, client: Any) -> None:
    url = ["--url", cm.url]
    added = cm.cli("faults", "add", "error", "--operation", "ListTagsForResource",
                   "--code", "ThrottlingException", "--message", "Rate exceeded",
                   "--count", "3", *url)
    fault = json.loads(added.stdout)
    assert (fault["kind"], fault["code"], fault["remaining"]) == (
        "error", "ThrottlingException", 3)
    held = json.loads(cm.cli("faults", "add", "latency", "--json",
                             '{"latency": 0.1, "count": 5}', "--no-count", *url).stdout)
    assert held["remaining"] is None
    shown = json.loads(cm.cli("faults", "list", *url).stdout)["faults"]
    assert [f["id"] for f in shown] == [fault["id"], held["id"]]
    assert json.loads(cm.cli("faults", "clear", fault["id"], *url).stdout) == {
        "removed": fault["id"]}
    assert json.loads(cm.cli("faults", "clear", *url).stdout) == {"cleared": 1}
    refused = cm.cli("faults", "add", "error", *url, check=False)
    assert refused.returncode == 2
    assert refused.stderr.startswith("cmhost: error: ValidationException: 'code' must be")
    nobody = cm.cli("faults", "list", "--port", "9", check=False)
    assert nobody.returncode == 2 and "no cmhost answers at http://127.0.0.1:9" in nobody.stderr
