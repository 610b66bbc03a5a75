"""Hostile callers, SigV4: every way a request can be signed wrongly, against every operation.

Each case of the matrix is sent for each of the 19 operations, with a body that names real
resources of account A (a request that got through would change them); each must be refused
with the AWS error of its kind (a 400 of the JSON protocol family: code and message, see
tests/authn.py), before the operation runs: A's and B's accounts are unchanged
afterwards. Then: a request A signed for B's resources finds nothing, however often it is
replayed; and a non-loopback cmhost refuses the development key everywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from cmhost.api.model import SERVICE
from tests import authn
from tests.security.estate import Estate, build_estate, snapshot, valid_bodies
from tests.security.hosts import issue_caller, quiet_host, settle
from tests.security.wire import (
    DEV_KEY,
    Caller,
    Headers,
    Key,
    check_aws_error,
    presign,
    send,
    sign,
    target_of,
)
from tests.support import Cmhost

OPERATIONS = sorted(SERVICE.operations)
A_ACCOUNT, B_ACCOUNT = "310000000001", "310000000002"
Request = tuple[str, Headers, bytes]  # path (with query), headers, body


@dataclass
class World:
    host: Cmhost
    a: Estate
    b: Estate
    bodies: dict[str, dict[str, Any]]  # a valid body of each operation, naming A's resources

    @property
    def key(self) -> Key:
        return self.a.caller.key

    def body(self, operation: str) -> bytes:
        return json.dumps(self.bodies[operation]).encode()


def make_world(host: Cmhost) -> World:
    """Accounts A and B with resources of every kind, on `host` (test_sigv4_clients.py too)."""
    a = build_estate(host, issue_caller(host, A_ACCOUNT), "sa")
    b = build_estate(host, issue_caller(host, B_ACCOUNT), "sb")
    return World(host, a, b, valid_bodies(host, a))


@pytest.fixture(scope="module")
def world(host: Cmhost) -> World:
    return make_world(host)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _set(headers: Headers, name: str, value: str | None) -> Headers:
    """`headers` with `name` replaced by `value` (dropped when None)."""
    out = [(k, v) for k, v in headers if k.lower() != name.lower()]
    return out if value is None else [*out, (name, value)]


def _get(headers: Headers, name: str) -> str:
    return next(v for k, v in headers if k.lower() == name.lower())


def _auth(headers: Headers, edit: Callable[[str], str]) -> Headers:
    return _set(headers, "Authorization", edit(_get(headers, "Authorization")))


def _part(name: str, edit: Callable[[str], str]) -> Callable[[str], str]:
    """An edit of one `Name=value` part of the Authorization header."""
    return lambda auth: re.sub(rf"{name}=([^,]*)", lambda m: f"{name}={edit(m[1])}", auth)


def _drop_part(name: str) -> Callable[[str], str]:
    return lambda auth: re.sub(rf",?\s*{name}=[^,]*", "", auth)


def _other_target(target: str) -> str:
    """Another operation's target: a read-only one, as a swap that could go unnoticed."""
    other = target_of("DescribeAccountAttributes")
    return other if target != other else target_of("DescribeServers")


def _flip(signature: str) -> str:
    return signature[:-1] + ("0" if signature[-1] != "0" else "1")


def _header_case(edit: Callable[[World, str, bytes], Headers]
                 ) -> Callable[[World, str], Request]:
    def build(w: World, op: str) -> Request:
        body = w.body(op)
        return "/", edit(w, op, body), body
    return build


def _signed(**kwargs: Any) -> Callable[[World, str, bytes], Headers]:
    def edit(w: World, op: str, body: bytes) -> Headers:
        return sign(w.host, op, body, **{"key": w.key, **kwargs})
    return edit


def _then(edit: Callable[[Headers], Headers], **kwargs: Any
          ) -> Callable[[World, str, bytes], Headers]:
    def build(w: World, op: str, body: bytes) -> Headers:
        return edit(sign(w.host, op, body, **{"key": w.key, **kwargs}))
    return build


def _presigned(*, mangle: Callable[[list[tuple[str, str]]], list[tuple[str, str]]] = list,
               headers: Callable[[Headers], Headers] = list, body: bytes = b"",
               skew: dt.timedelta | None = None, **kwargs: Any) -> Callable[[World, str], Request]:
    """A presigned request (signed `skew` away from now, if given), then altered."""
    def build(w: World, op: str) -> Request:
        when = None if skew is None else _now() + skew
        path, signed = presign(w.host, op, w.bodies[op], **{"key": w.key, "when": when,
                                                            **kwargs})
        base, _, query = path.partition("?")
        pairs = mangle(parse_qsl(query, keep_blank_values=True))
        return f"{base}?{urlencode(pairs)}", headers(signed), body
    return build


def _edit_param(name: str, edit: Callable[[str], str]
                ) -> Callable[[list[tuple[str, str]]], list[tuple[str, str]]]:
    return lambda pairs: [(k, edit(v) if k == name else v) for k, v in pairs]


def _both(w: World, op: str) -> Request:
    """An Authorization header and a presigned query on one request."""
    path, _, _ = _presigned()(w, op)
    body = w.body(op)
    return path, sign(w.host, op, body, key=w.key), body


# What each case must be answered: always HTTP 400, with (code, message as a regex), as AWS's
# JSON protocol services answer (tests/authn.py).
Expected = tuple[str, str]
MISSING = (authn.MISSING, authn.MISSING_MESSAGE)
INCOMPLETE = (authn.INCOMPLETE, authn.ANY_MESSAGE)
UNKNOWN = (authn.UNKNOWN_KEY, authn.UNKNOWN_KEY_MESSAGE)
MISMATCH = (authn.INVALID, authn.MISMATCH_MESSAGE)
EXPIRED = (authn.INVALID, authn.EXPIRED_MESSAGE)
NOT_YET = (authn.INVALID, authn.NOT_YET_MESSAGE)
UNKNOWN_KEY = Key("AKIAQ7NOBODYKNOWSME2", "x" * 40, "999999999999")

CASES: dict[str, tuple[Callable[[World, str], Request], Expected]] = {
    # -- no or unreadable authentication
    "no authentication": (_header_case(_then(lambda h: _set(_set(
        h, "Authorization", None), "X-Amz-Date", None))), MISSING),
    "date but no Authorization": (_header_case(_then(lambda h: _set(h, "Authorization", None))),
                                  MISSING),
    "empty Authorization": (_header_case(_then(lambda h: _set(h, "Authorization", ""))),
                            INCOMPLETE),
    "garbage Authorization": (_header_case(_then(lambda h: _set(
        h, "Authorization", "AWS4-HMAC-SHA256 nonsense"))), INCOMPLETE),
    "Basic authentication": (_header_case(_then(lambda h: _set(
        h, "Authorization", "Basic dGVzdDp0ZXN0"))), INCOMPLETE),
    "SigV2-style header": (_header_case(_then(lambda h: _set(
        h, "Authorization", "AWS AKIAQ7NOBODYKNOWSME2:c2lnbmF0dXJl"))), INCOMPLETE),
    "other algorithm": (_header_case(_then(lambda h: _auth(
        h, lambda a: a.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512")))), INCOMPLETE),
    "no Signature part": (_header_case(_then(lambda h: _auth(h, _drop_part("Signature")))),
                          INCOMPLETE),
    "no SignedHeaders part": (_header_case(_then(lambda h: _auth(
        h, _drop_part("SignedHeaders")))), INCOMPLETE),
    "no Credential part": (_header_case(_then(lambda h: _auth(
        h, lambda a: "AWS4-HMAC-SHA256 " + _drop_part("Credential")(a).split(" ", 1)[1]
        .lstrip(", ")))), INCOMPLETE),
    "unknown Authorization part": (_header_case(_then(lambda h: _auth(
        h, lambda a: a + ", Token=abc"))), INCOMPLETE),
    "Authorization twice": (_header_case(_then(lambda h: [
        *h, ("Authorization", _get(h, "Authorization"))])), INCOMPLETE),
    "credential of four parts": (_header_case(_then(lambda h: _auth(h, _part(
        "Credential", lambda c: c.replace("/aws4_request", ""))))), INCOMPLETE),
    "credential without key": (_header_case(_then(lambda h: _auth(h, _part(
        "Credential", lambda c: "/" + c.split("/", 1)[1])))), INCOMPLETE),
    "no X-Amz-Date": (_header_case(_then(lambda h: _set(h, "X-Amz-Date", None))), INCOMPLETE),
    "X-Amz-Date not ISO 8601 basic": (_header_case(_then(lambda h: _set(
        h, "X-Amz-Date", _get(h, "X-Amz-Date")[:8] + "T25:99:99Z"))), INCOMPLETE),
    # -- who signed
    "unknown access key": (_header_case(_signed(key=UNKNOWN_KEY)), UNKNOWN),
    "wrong secret": (_header_case(lambda w, op, body: sign(
        w.host, op, body, key=Key(w.key.key, "wrong" + w.key.secret[5:], w.key.account))),
        MISMATCH),
    "other account's secret": (_header_case(lambda w, op, body: sign(
        w.host, op, body, key=Key(w.key.key, w.b.caller.key.secret, w.key.account))), MISMATCH),
    "development secret for an issued key": (_header_case(lambda w, op, body: sign(
        w.host, op, body, key=Key(w.key.key, "test", w.key.account))), MISMATCH),
    "development key, wrong secret": (_header_case(lambda w, op, body: sign(
        w.host, op, body, key=Key("test", "not-test", DEV_KEY.account))), MISMATCH),
    # -- the credential scope
    "wrong service": (_header_case(_signed(service="ec2")), INCOMPLETE),
    "near service": (_header_case(_signed(service="opsworks")), INCOMPLETE),
    "region in capitals": (_header_case(_signed(region="US-EAST-1")), INCOMPLETE),
    "region with underscores": (_header_case(_signed(region="us_east_1")), INCOMPLETE),
    "empty region": (_header_case(_signed(region="")), INCOMPLETE),
    "region of 64 characters": (_header_case(_signed(region="a" * 64)), INCOMPLETE),
    "region with a dot": (_header_case(_signed(region="us-east-1.evil")), INCOMPLETE),
    "scope date not the request date": (_header_case(_then(lambda h: _auth(h, _part(
        "Credential", lambda c: re.sub(r"/(\d{8})/", "/19991231/", c))))), INCOMPLETE),
    "wrong terminator": (_header_case(_then(lambda h: _auth(h, _part(
        "Credential", lambda c: c.replace("aws4_request", "aws4_request2"))))), INCOMPLETE),
    # -- time
    "signed 16 minutes ago": (_header_case(lambda w, op, body: sign(
        w.host, op, body, key=w.key, when=_now() - dt.timedelta(minutes=16))), EXPIRED),
    "signed 16 minutes ahead": (_header_case(lambda w, op, body: sign(
        w.host, op, body, key=w.key, when=_now() + dt.timedelta(minutes=16))), NOT_YET),
    "signed a day ago": (_header_case(lambda w, op, body: sign(
        w.host, op, body, key=w.key, when=_now() - dt.timedelta(days=1))), EXPIRED),
    "signed in 2000": (_header_case(lambda w, op, body: sign(
        w.host, op, body, key=w.key, when=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))), EXPIRED),
    "signed in 2999": (_header_case(lambda w, op, body: sign(
        w.host, op, body, key=w.key, when=dt.datetime(2999, 1, 1, tzinfo=dt.UTC))), NOT_YET),
    # -- what was signed
    "body altered after signing": (lambda w, op: (
        "/", sign(w.host, op, w.body(op), key=w.key), w.body(op).replace(b"}", b',"X":1}', 1)),
        MISMATCH),
    "body with a trailing space": (lambda w, op: (
        "/", sign(w.host, op, w.body(op), key=w.key), w.body(op) + b" "), MISMATCH),
    "body emptied": (lambda w, op: ("/", sign(w.host, op, w.body(op), key=w.key), b""),
                     MISMATCH),
    "X-Amz-Target altered": (_header_case(_then(lambda h: _set(
        h, "X-Amz-Target", _other_target(_get(h, "X-Amz-Target"))))), MISMATCH),
    "Content-Type altered": (_header_case(_then(lambda h: _set(
        h, "Content-Type", "application/x-amz-json-1.0"))), MISMATCH),
    "X-Amz-Date moved a second": (_header_case(_then(lambda h: _set(
        h, "X-Amz-Date", _get(h, "X-Amz-Date")[:-3] + (
            "01Z" if _get(h, "X-Amz-Date")[-3:] != "01Z" else "02Z")))), MISMATCH),
    "Host altered": (_header_case(_then(lambda h: _set(h, "Host", "evil.example:443"))),
                     MISMATCH),
    "SignedHeaders without host": (_header_case(_then(lambda h: _auth(h, _part(
        "SignedHeaders", lambda s: s.replace("host;", ""))))), INCOMPLETE),
    "SignedHeaders reordered": (_header_case(_then(lambda h: _auth(h, _part(
        "SignedHeaders", lambda s: ";".join(reversed(s.split(";"))))))), MISMATCH),
    "SignedHeaders in capitals": (_header_case(_then(lambda h: _auth(h, _part(
        "SignedHeaders", str.upper)))), INCOMPLETE),
    "SignedHeaders names a missing header": (_header_case(_then(lambda h: _auth(h, _part(
        "SignedHeaders", lambda s: s + ";x-amz-meta-absent")))), INCOMPLETE),
    "signature with one digit changed": (_header_case(_then(lambda h: _auth(h, _part(
        "Signature", _flip)))), MISMATCH),
    "signature one digit short": (_header_case(_then(lambda h: _auth(h, _part(
        "Signature", lambda s: s[:-1])))), INCOMPLETE),
    "signature not hexadecimal": (_header_case(_then(lambda h: _auth(h, _part(
        "Signature", lambda s: "z" * 64)))), INCOMPLETE),
    "payload hash header of another body": (_header_case(_then(lambda h: [
        *h, ("X-Amz-Content-Sha256", "0" * 64)])), (authn.INVALID, re.escape(
            "The provided 'x-amz-content-sha256' header does not match what was computed."))),
    "unsigned payload": (_header_case(_then(lambda h: [
        *h, ("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")])), INCOMPLETE),
    "header and presigned query at once": (_both, INCOMPLETE),
    # -- presigned URLs
    "presigned, expired": (_presigned(expires=60, skew=-dt.timedelta(minutes=2)),
                           (authn.INVALID, authn.expired_message("1 min."))),
    "presigned, expiry over a week": (_presigned(expires=604801), (authn.INCOMPLETE, re.escape(
        "X-Amz-Expires must be less than a week (in seconds) that is 604800, not 604801."))),
    "presigned, signed 20 minutes ahead": (_presigned(skew=dt.timedelta(minutes=20)),
                                           NOT_YET),
    "presigned, signature altered": (_presigned(mangle=_edit_param("X-Amz-Signature", _flip)),
                                     MISMATCH),
    "presigned, expiry lengthened": (_presigned(mangle=_edit_param(
        "X-Amz-Expires", lambda v: str(int(v) * 10))), MISMATCH),
    "presigned, date altered": (_presigned(mangle=_edit_param(
        "X-Amz-Date", lambda v: v[:-3] + ("01Z" if v[-3:] != "01Z" else "02Z"))), MISMATCH),
    "presigned, parameter added": (_presigned(mangle=lambda p: [*p, ("MaxResults", "1")]),
                                   MISMATCH),
    "presigned, input altered": (_presigned(mangle=lambda p: [
        (k, v + "x" if not k.startswith("X-Amz-") else v) for k, v in p] + [("Extra", "1")]),
        MISMATCH),
    "presigned, other key's credential": (lambda w, op: _presigned(mangle=_edit_param(
        "X-Amz-Credential", lambda v: v.replace(w.key.key, w.b.caller.key.key)))(w, op),
        MISMATCH),
    "presigned, no signature": (_presigned(mangle=lambda p: [
        (k, v) for k, v in p if k != "X-Amz-Signature"]), INCOMPLETE),
    "presigned, signature twice": (_presigned(mangle=lambda p: p + [
        (k, v) for k, v in p if k == "X-Amz-Signature"]), INCOMPLETE),
    "presigned, X-Amz-Target altered": (_presigned(headers=lambda h: _set(
        h, "X-Amz-Target", _other_target(_get(h, "X-Amz-Target")))), MISMATCH),
    "presigned, body added": (lambda w, op: _presigned(body=w.body(op))(w, op), MISMATCH),
    "presigned, wrong secret": (lambda w, op: _presigned(key=Key(
        w.key.key, "wrong" + w.key.secret[5:], w.key.account))(w, op), MISMATCH),
    "presigned, unknown key": (_presigned(key=UNKNOWN_KEY), UNKNOWN),
}


def test_the_matrix(world: World, figures: Counter[str]) -> None:
    """Every case for every operation: refused as expected, and nothing changed anywhere."""
    host = world.host
    before = (snapshot(world.a.caller), snapshot(world.b.caller))
    wrong = []
    for case, (build, (code, message)) in CASES.items():
        for op in OPERATIONS:
            path, headers, body = build(world, op)
            reply = send(host, headers, body, path=path)
            figures["SigV4 matrix requests"] += 1
            try:
                got = check_aws_error(reply)
            except AssertionError:
                wrong.append(f"{case} / {op}: {reply}")
                continue
            if (reply.status, got["__type"]) != (authn.STATUS, code) or not re.fullmatch(
                    message, got["message"]):
                wrong.append(f"{case} / {op}: expected {authn.STATUS} {code} {message!r}, "
                             f"got {reply}")
    settle(host)
    assert not wrong, f"{len(wrong)} of {len(CASES) * len(OPERATIONS)} refused wrongly:\n" + \
        "\n".join(wrong[:40])
    after = (snapshot(world.a.caller), snapshot(world.b.caller))
    assert after == before, "a request refused by SigV4 changed an account"


# --- the same requests, signed right, do take effect -----------------------------------------


def test_controls_signed_right_go_through(world: World) -> None:
    """The matrix's bodies are live: correctly signed, they reach the operation."""
    host, a = world.host, world.a
    for op in ("DescribeServers", "DescribeEvents", "ListTagsForResource",
               "DescribeNodeAssociationStatus", "DescribeBackups", "DescribeAccountAttributes"):
        body = world.body(op)
        assert send(host, sign(host, op, body, key=world.key), body).status == 200, op
    body = json.dumps({"ResourceArn": a.arn("chef"),
                       "Tags": [{"Key": "control", "Value": "1"}]}).encode()
    assert send(host, sign(host, "TagResource", body, key=world.key), body).status == 200
    tags = a.caller.ok("ListTagsForResource", {"ResourceArn": a.arn("chef")})["Tags"]
    assert {"Key": "control", "Value": "1"} in tags
    a.caller.ok("UntagResource", {"ResourceArn": a.arn("chef"), "TagKeys": ["control"]})


@pytest.mark.parametrize("minutes", [-14, 14])
def test_skew_inside_the_window_is_accepted(world: World, minutes: int) -> None:
    body = world.body("DescribeServers")
    headers = sign(world.host, "DescribeServers", body, key=world.key,
                   when=_now() + dt.timedelta(minutes=minutes))
    assert send(world.host, headers, body).status == 200


def test_presigned_control_changes_what_it_names(world: World) -> None:
    """A UpdateServer presigned by generate_presigned_url (input in the query) takes
    effect."""
    a = world.a
    path, headers = presign(world.host, "UpdateServer",
                            {"ServerName": a.name("puppet"), "BackupRetentionCount": 3},
                            key=world.key)
    reply = send(world.host, headers, b"", path=path)
    assert reply.status == 200, reply
    assert reply.json()["Server"]["BackupRetentionCount"] == 3
    a.caller.ok("UpdateServer", {"ServerName": a.name("puppet"), "BackupRetentionCount": 1})


# --- replay of A's request for B's resources --------------------------------------------------


def _foreign_bodies(world: World) -> dict[str, list[dict[str, Any]]]:
    """Bodies naming B's resources (by name, ARN, backup ID, node token) for each operation
    that names a resource."""
    b, a = world.b, world.a
    chef, backup, arn = b.name("chef"), b.backup_id("chef"), b.arn("chef")
    bodies = valid_bodies(world.host, b)
    out: dict[str, list[dict[str, Any]]] = {
        op: [body] for op, body in bodies.items()
        if op not in ("DescribeAccountAttributes", "CreateServer")}
    out["CreateServer"] = [{**bodies["CreateServer"], "ServerName": "sa-from-b",
                            "BackupId": backup}]
    out["RestoreServer"].append({"ServerName": a.name("chef"), "BackupId": backup})
    out["ListTagsForResource"].append({"ResourceArn": b.backup_arn("chef")})
    out["TagResource"].append({"ResourceArn": b.backup_arn("chef"),
                               "Tags": [{"Key": "k", "Value": "v"}]})
    out["UntagResource"].append({"ResourceArn": b.backup_arn("chef"), "TagKeys": ["kind"]})
    out["DescribeBackups"].append({"ServerName": chef})
    assert arn and chef
    return out


def test_replayed_request_for_another_accounts_resources(world: World,
                                                         figures: Counter[str]) -> None:
    """A request A signed naming B's server, backup, ARN or node token: ResourceNotFound,
    the first time and every time it is replayed, and B's account is untouched."""
    host = world.host
    before = snapshot(world.b.caller)
    captured: list[tuple[str, Headers, bytes]] = []
    for op, bodies in _foreign_bodies(world).items():
        for params in bodies:
            body = json.dumps(params).encode()
            captured.append((op, sign(host, op, body, key=world.key), body))
    wrong = []
    for _ in range(3):
        for op, headers, body in captured:
            reply = send(host, headers, body)
            figures["SigV4 replay requests"] += 1
            got = check_aws_error(reply)["__type"] if reply.status != 200 else "200 OK"
            if got != "ResourceNotFoundException":
                wrong.append(f"{op} {body[:120]!r}: {reply}")
    settle(host)
    assert not wrong, "\n".join(wrong)
    assert snapshot(world.b.caller) == before
    assert {s["ServerName"] for s in world.a.caller.ok("DescribeServers")["Servers"]} == set(
        world.a.server_names)


# --- the development key off loopback ---------------------------------------------------------


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = quiet_host(Path(tmp_path_factory.mktemp("exposed")), host="0.0.0.0").start()
    server.host = "127.0.0.1"  # bound to every address; reached through loopback
    yield server
    server.stop()


def test_development_key_refused_off_loopback(exposed: Cmhost, figures: Counter[str]) -> None:
    """Bound to 0.0.0.0, cmhost knows no `test` key: every operation, header-signed or
    presigned, is refused with UnrecognizedClientException; an issued key works."""
    wrong = []
    for op in OPERATIONS:
        reply = send(exposed, sign(exposed, op, b"{}", key=DEV_KEY), b"{}")
        path, headers = presign(exposed, op, key=DEV_KEY)
        presigned = send(exposed, headers, b"", path=path)
        figures["SigV4 matrix requests"] += 2
        for what, got in (("header", reply), ("presigned", presigned)):
            if (got.status, got.code) != (authn.STATUS, authn.UNKNOWN_KEY) or not re.fullmatch(
                    authn.UNKNOWN_KEY_MESSAGE, got.json()["message"]):
                wrong.append(f"{op} ({what}): {got}")
    assert not wrong, "\n".join(wrong)
    issued = issue_caller(exposed, "310000000009")
    assert issued.ok("DescribeServers")["Servers"] == []


def test_loopback_binds_accept_the_development_key(host: Cmhost) -> None:
    """The other side of the rule, so that the test above can fail."""
    assert Caller(host).call("DescribeAccountAttributes").status == 200

