"""The audit trail through a run that calls every operation (tests/test_json_logs.py's run): a
CloudTrail record for each request the client made, with the request id it saw and no secret
in it; the delivered files; `aws cloudtrail lookup-events` paging through an account's own
records; the console's calls and the CLI's changes recorded too; retention."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cmhost.api.model import SERVICE
from tests.access.helpers import client_of, eventually, make_user, refused, user_key
from tests.console.conftest import Browser
from tests.ops.helpers import csr_pem
from tests.support import Cmhost, create_server, error_code
from tests.test_json_logs import ACCOUNT, Run, _every_operation

AWS = str(Path(sys.executable).with_name("aws"))
HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"
COMMON = ("eventVersion", "userIdentity", "eventTime", "eventSource", "eventName",
          "awsRegion", "sourceIPAddress", "userAgent", "requestParameters", "responseElements",
          "requestID", "eventID", "readOnly", "eventType", "recipientAccountId")


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cmhost, Run]]:
    host = Cmhost(Path(tmp_path_factory.mktemp("audit"))).start()
    try:
        key = json.loads(host.cli("keys", "create", "--account", ACCOUNT,
                                  *host.storage_args()).stdout)
        run = Run(host, host.client(key=key["AccessKeyId"], secret=key["SecretAccessKey"]),
                  key["SecretAccessKey"])
        run.key = key  # type: ignore[attr-defined]
        _every_operation(run)
        run.secrets += [line for line in csr_pem("js-node").splitlines()
                        if line and not line.startswith("-----")][1:3]
        _written(host, key)
        host.advance(301)  # the last records delivered
        yield host, run
    finally:
        host.stop()


def _written(host: Cmhost, key: dict[str, str]) -> None:
    """Wait until the records of every call so far are written: those of calls that changed
    nothing, and the outcome of changes, follow within a second or so, in call order (when
    a last call's record is there, so is every earlier one)."""
    marker = host.client(key=key["AccessKeyId"], secret=key["SecretAccessKey"]
                         ).describe_account_attributes()["ResponseMetadata"]["RequestId"]
    lookup = client_of(host, key, "cloudtrail")

    def found() -> bool:
        events = lookup.lookup_events(LookupAttributes=[
            {"AttributeKey": "EventName", "AttributeValue": "DescribeAccountAttributes"}])
        return any(json.loads(e["CloudTrailEvent"])["requestID"] == marker
                   for e in events["Events"])

    eventually(found, seconds=30)


def _records(host: Cmhost, *args: str) -> list[dict[str, Any]]:
    out = host.cli("audit", "--format", "json", "--limit", "100000", *args,
                   *host.storage_args()).stdout
    return [json.loads(line) for line in out.splitlines()]


def _delivered(host: Cmhost) -> dict[str, list[dict[str, Any]]]:
    root = host.data_dir / "blobs"
    return {str(path.relative_to(root)): json.loads(gzip.decompress(path.read_bytes()))[
        "Records"] for path in sorted(root.glob("AWSLogs/**/*.json.gz"))}


def test_every_call_has_its_record_with_the_request_id_the_client_saw(
        trail: tuple[Cmhost, Run]) -> None:
    host, run = trail
    records = {r["requestID"]: r for r in _records(host, "--account", ACCOUNT)}
    assert set(run.requests) <= set(records), set(run.requests) - set(records)
    assert {name for name, _ in run.requests.values()} == set(SERVICE.operations)
    key_id = run.key["AccessKeyId"]  # type: ignore[attr-defined]
    for request_id, (operation, status) in run.requests.items():
        record = records[request_id]
        assert all(field in record for field in COMMON), (operation, record)
        assert record["eventName"] == operation
        assert record["eventSource"] == "opsworks-cm.amazonaws.com"
        assert record["eventVersion"] == "1.09" and record["eventType"] == "AwsApiCall"
        assert record["awsRegion"] == "us-east-1" and record["recipientAccountId"] == ACCOUNT
        assert record["sourceIPAddress"] == "127.0.0.1"
        assert record["userAgent"].startswith("Boto3/")
        assert record["userIdentity"] == {"type": "Root", "principalId": ACCOUNT,
                                          "arn": f"arn:aws:iam::{ACCOUNT}:root",
                                          "accountId": ACCOUNT, "accessKeyId": key_id}
        assert record["readOnly"] == operation.startswith(("Describe", "List"))
        assert record["eventTime"].endswith("Z")
        if status == 200:
            assert "errorCode" not in record
        else:
            assert record["errorCode"] and record["errorMessage"]
    created = next(r for r in records.values() if r["eventName"] == "CreateServer"
                   and r["requestParameters"]["serverName"] == "js-chef")
    assert created["responseElements"]["server"]["serverName"] == "js-chef"
    assert {a["value"] for a in created["responseElements"]["server"]["engineAttributes"]} \
        == {HIDDEN}
    assert created["resources"][0]["ARN"] == created["responseElements"]["server"]["serverArn"]
    associate = next(r for r in records.values() if r["eventName"] == "AssociateNode")
    assert associate["requestParameters"]["engineAttributes"] == [
        {"name": "PUPPET_NODE_CSR", "value": HIDDEN}]
    assert len({r["eventID"] for r in records.values()}) == len(records)


def test_no_secret_in_the_records_nor_in_the_delivered_files(
        trail: tuple[Cmhost, Run]) -> None:
    host, run = trail
    stored = host.cli("audit", "--format", "json", "--limit", "100000",
                      *host.storage_args()).stdout
    delivered = json.dumps(_delivered(host))
    assert len(run.secrets) >= 6
    for secret in run.secrets:
        assert secret not in stored and secret not in delivered, secret[:12]


def test_records_are_delivered_as_cloudtrail_files(trail: tuple[Cmhost, Run]) -> None:
    host, run = trail
    files = _delivered(host)
    assert files
    for path, records in files.items():
        parts = path.split("/")
        assert parts[:4] == ["AWSLogs", parts[1], "CloudTrail", parts[3]], path
        assert len(parts) == 8 and parts[7].startswith(f"{parts[1]}_CloudTrail_{parts[3]}_")
        assert all(r["recipientAccountId"] == parts[1] and r["awsRegion"] == parts[3]
                   for r in records)
    ids = [r["eventID"] for records in files.values() for r in records]
    assert len(ids) == len(set(ids))  # each record in one file
    mine = {r["requestID"] for records in files.values() for r in records}
    assert set(run.requests) <= mine


def _lookup(host: Cmhost, key: dict[str, str], *args: str) -> list[dict[str, Any]]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
           "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"], "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_PAGER": ""}
    proc = subprocess.run([AWS, "cloudtrail", "lookup-events", "--endpoint-url", host.url,
                           "--output", "json", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    events: list[dict[str, Any]] = json.loads(proc.stdout)["Events"]
    return events


@pytest.mark.skipif(not Path(AWS).exists(), reason="awscli is installed by `make test`")
def test_aws_cloudtrail_lookup_events_pages_through_an_accounts_own_records(
        trail: tuple[Cmhost, Run]) -> None:
    host, run = trail
    key = run.key  # type: ignore[attr-defined]
    end = str(host.get("/_cmhost/clock")["now"])
    everything = _lookup(host, key, "--end-time", end, "--page-size", "7")
    stored = _records(host, "--account", ACCOUNT, "--region", "us-east-1")
    ids = [e["EventId"] for e in everything]
    assert len(ids) == len(set(ids)) and len(ids) >= len(run.requests)
    assert set(ids) <= {r["eventID"] for r in stored}
    times = [e["EventTime"] for e in everything]
    assert times == sorted(times, reverse=True)
    first = everything[0]
    assert set(first) >= {"EventId", "EventName", "ReadOnly", "EventTime", "EventSource",
                          "Username", "Resources", "CloudTrailEvent"}
    assert json.loads(first["CloudTrailEvent"])["eventID"] == first["EventId"]
    deletes = _lookup(host, key, "--end-time", end, "--page-size", "1", "--lookup-attributes",
                      "AttributeKey=EventName,AttributeValue=DeleteServer")
    assert len(deletes) >= 2 and {e["EventName"] for e in deletes} == {"DeleteServer"}
    named = _lookup(host, key, "--lookup-attributes",
                    "AttributeKey=ResourceName,AttributeValue=js-puppet", "--max-items", "3")
    assert len(named) == 3
    assert all(e["Resources"][0]["ResourceName"] == "js-puppet" for e in named)
    # Another account sees none of them.
    other = user_key(host, "530000000009")
    assert not {e["EventId"] for e in _lookup(host, other)} & set(ids)


def test_lookup_events_with_boto3_time_range_and_errors(trail: tuple[Cmhost, Run]) -> None:
    host, run = trail
    trail_client = client_of(host, run.key, "cloudtrail")  # type: ignore[attr-defined]
    now = host.get("/_cmhost/clock")["now"]
    page = trail_client.lookup_events(StartTime=now - 10_000_000, EndTime=now, MaxResults=3)
    assert len(page["Events"]) == 3 and page["NextToken"]
    later = trail_client.lookup_events(StartTime=now + 3600, EndTime=now + 7200)
    assert later["Events"] == []
    for params, code in (({"MaxResults": 51}, "InvalidMaxResultsException"),
                         ({"StartTime": now, "EndTime": now - 60}, "InvalidTimeRangeException"),
                         ({"NextToken": "forged"}, "InvalidNextTokenException"),
                         ({"LookupAttributes": [
                             {"AttributeKey": "EventName", "AttributeValue": "A"},
                             {"AttributeKey": "Username", "AttributeValue": "B"}]},
                          "InvalidLookupAttributesException")):
        assert error_code(refused(trail_client.lookup_events, **params)) == code, params


def test_the_consoles_calls_and_the_clis_changes_are_recorded(
        trail: tuple[Cmhost, Run]) -> None:
    host, _ = trail
    account = "530000000001"
    root = client_of(host, user_key(host, account))
    create_server(root, "console-kept", InstanceProfileArn=f"arn:aws:iam::{account}:"
                  "instance-profile/x", ServiceRoleArn=f"arn:aws:iam::{account}:role/x")
    make_user(host, account, "viewer", managed=("AWSOpsWorksCMReadOnlyAccess",))
    key = user_key(host, account, "viewer")
    browser = Browser(host)
    assert browser.sign_in(key["AccessKeyId"], key["SecretAccessKey"]).status_code == 303
    browser.get("/console/")
    browser.get("/console/servers/console-kept/")
    answer = browser.post("/console/servers/console-kept/delete", {"confirm": "console-kept"})
    assert "AccessDeniedException" in answer.text or "not authorized" in answer.text
    assert root.describe_servers(ServerName="console-kept")["Servers"]
    records = _records(host, "--account", account)
    console = [r for r in records if r.get("sessionCredentialFromConsole") == "true"]
    denied = [r for r in console if r["eventName"] == "DeleteServer"]
    assert denied and denied[0]["errorCode"] == "AccessDeniedException"
    assert denied[0]["userIdentity"]["arn"] == f"arn:aws:iam::{account}:user/viewer"
    # The browser's request: its address and user agent, the signed-in key.
    assert denied[0]["sourceIPAddress"] == "127.0.0.1", denied[0]
    assert denied[0]["userAgent"] not in ("", "cmhost-console"), denied[0]
    assert denied[0]["userIdentity"]["accessKeyId"], denied[0]
    assert any(r["eventName"] == "DescribeServers" and "errorCode" not in r for r in console)
    changes = [r["eventName"] for r in records if r["eventSource"] == "iam.amazonaws.com"]
    assert changes.count("CreateAccessKey") == 2
    assert {"CreateUser", "AttachUserPolicy"} <= set(changes)
    cli = next(r for r in records if r["eventName"] == "CreateUser")
    assert cli["userIdentity"]["invokedBy"] == "cmhost-cli"
    assert cli["requestParameters"] == {"userName": "viewer"}
    table = host.cli("audit", "--account", account, "--user", "viewer", "--event-name",
                     "DeleteServer", *host.storage_args()).stdout.splitlines()
    assert table[0].split()[:4] == ["Time", "Account", "Region", "Event"]
    assert len(table) >= 2 and all("DeleteServer" in line for line in table[1:])


def test_records_older_than_the_retention_go(tmp_path: Path) -> None:
    host = Cmhost(tmp_path, extra_args=["--audit-retention-days", "1"]).start()
    try:
        host.client().describe_servers()
        time.sleep(1.0)  # a read's record is written within half a second, before the pass
        host.advance(2 * 86400 + 3700)
        host.client().describe_account_attributes()
        time.sleep(1.0)
        host.advance(3700)  # the pruner's next pass
        names = [r["eventName"] for r in _records(host, "--account", "000000000000")]
        assert "DescribeAccountAttributes" in names and "DescribeServers" not in names
    finally:
        host.stop()
