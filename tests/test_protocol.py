"""The AWS JSON 1.1 protocol over real HTTP: envelopes, headers and every protocol error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import Cmhost, raw_call


def test_success_has_request_id_and_json_content_type(cmhost: Cmhost) -> None:
    status, headers, body = raw_call(cmhost, "DescribeAccountAttributes", b"{}")
    assert status == 200
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert len(headers["x-amzn-requestid"]) == 36
    assert {a["Name"] for a in body["Attributes"]} == {"ServerLimit", "ManualBackupLimit"}


CASES: list[tuple[str, str | None, bytes, int, str]] = [
    ("missing target", None, b"{}", 400, "MissingAction"),
    ("unknown operation", "LaunchRockets", b"{}", 400, "InvalidAction"),
    ("other service's target", None, b"{}", 400, "InvalidAction"),
    ("not JSON", "DescribeServers", b"{not json", 400, "SerializationException"),
    ("JSON array body", "DescribeServers", b"[1, 2]", 400, "SerializationException"),
    ("invalid UTF-8", "DescribeServers", b'{"ServerName": "\xff\xfe"}', 400,
     "SerializationException"),
    ("NaN literal", "DescribeServers", b'{"MaxResults": NaN}', 400, "SerializationException"),
    ("deep nesting", "DescribeServers", b'{"a":' * 100000 + b"1" + b"}" * 100000, 400,
     "SerializationException"),
    ("wrong JSON type", "DescribeServers", b'{"MaxResults": "ten"}', 400,
     "ValidationException"),
    ("oversized body", "DescribeServers", b'{"x": "' + b"a" * (1024 * 1024) + b'"}', 413,
     "RequestEntityTooLargeException"),
]


@pytest.mark.parametrize(("target", "body", "status", "code"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_protocol_errors(cmhost: Cmhost, target: str | None, body: bytes, status: int,
                         code: str) -> None:
    headers = {"X-Amz-Target": "DynamoDB_20120810.ListTables"} if target is None and \
        code == "InvalidAction" else None
    got_status, got_headers, got = raw_call(cmhost, target, body, headers=headers)
    assert (got_status, got["__type"]) == (status, code), got
    assert got_headers["x-amzn-errortype"] == code
    assert got["message"]
    assert len(got_headers["x-amzn-requestid"]) == 36


def test_wrong_types_message(cmhost: Cmhost) -> None:
    _, _, body = raw_call(cmhost, "DescribeServers", b'{"MaxResults": "ten"}')
    assert body["message"] == ("1 validation error detected: Value 'ten' at 'maxResults' failed "
                               "to satisfy constraint: Member must be of type integer")


def test_missing_member_message(cmhost: Cmhost) -> None:
    _, _, body = raw_call(cmhost, "DeleteServer", b"{}")
    assert body == {"__type": "ValidationException", "message":
                    "1 validation error detected: Value null at 'serverName' failed to satisfy "
                    "constraint: Member must not be null"}


def test_two_violations_joined(cmhost: Cmhost) -> None:
    payload = {"ServerName": "1bad", "MaxResults": 0}
    _, _, body = raw_call(cmhost, "DescribeServers", json.dumps(payload).encode())
    assert body["message"].startswith("2 validation errors detected: ")
    assert "; " in body["message"]


def test_get_is_refused_cleanly(cmhost: Cmhost) -> None:
    status, _, body = raw_call(cmhost, "DescribeServers", b"", method="GET")
    assert status == 405 and body["__type"] == "MethodNotAllowedException"


def test_wrong_content_type(cmhost: Cmhost) -> None:
    status, _, body = raw_call(cmhost, "DescribeServers", b"{}",
                               headers={"Content-Type": "text/html"})
    assert status == 415 and body["__type"] == "UnsupportedMediaTypeException"


def test_unknown_members_are_ignored(cmhost: Cmhost) -> None:
    status, _, body = raw_call(cmhost, "DescribeServers", b'{"Bogus": 1}')
    assert status == 200 and "Servers" in body


def test_health_and_clock(cmhost: Cmhost) -> None:
    health: dict[str, Any] = cmhost.get("/_cmhost/health")
    assert health["status"] == "ok" and health["database"] == "ok"
    before = cmhost.get("/_cmhost/clock")
    assert before["mode"] == "virtual"
    after = cmhost.advance(3600)
    assert after["now"] >= before["now"] + 3600


def test_presigned_url_calls_the_operation(cmhost: Cmhost) -> None:
    import http.client
    from urllib.parse import urlsplit

    client = cmhost.client()
    url = client.generate_presigned_url("describe_account_attributes")
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(cmhost.host, cmhost.port, timeout=10)
    conn.request("POST", f"{parts.path}?{parts.query}", body=b"", headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "OpsWorksCM_V2016_11_01.DescribeAccountAttributes"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 200, body
    assert body["Attributes"][0]["Name"] == "ServerLimit"

    # Parameters travel in the query string of a presigned URL, and are validated.
    url = client.generate_presigned_url("describe_servers", Params={"ServerName": "1nope"})
    parts = urlsplit(url)
    conn.request("POST", f"{parts.path}?{parts.query}", body=b"", headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "OpsWorksCM_V2016_11_01.DescribeServers"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 400 and body["__type"] == "ValidationException"
    assert "'serverName'" in body["message"]
    # A presigned URL whose query was altered no longer verifies.
    conn.request("POST", f"{parts.path}?{parts.query.replace('1nope', '1nopf')}", body=b"",
                 headers={"Content-Type": "application/x-amz-json-1.1",
                          "X-Amz-Target": "OpsWorksCM_V2016_11_01.DescribeServers"})
    resp = conn.getresponse()
    assert (resp.status, json.loads(resp.read())["__type"]) == (400, "InvalidSignatureException")
    conn.close()
