"""Hostile input below the JSON: raw HTTP abuse against a running cmhost.

Malformed and truncated JSON, wrong types, deep nesting, huge strings and bodies, invalid
UTF-8, NUL bytes and lone surrogates, unknown members, wrong or missing content types,
duplicate headers, chunked bodies, Content-Length that lies, very long and very many headers,
query strings. Whatever the application sees must end in a well-formed AWS error (or a
success); what the HTTP parser refuses before the application may end in its plain 400; never
a 5xx, never a hang, never a change from a request that did not fully arrive.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections import Counter
from typing import Any

import pytest

from cmhost.api.model import SERVICE, Shape
from tests.security.estate import (
    Estate,
    build_estate,
    busy_servers,
    snapshot,
    valid_bodies,
)
from tests.security.hosts import issue_caller, settle
from tests.security.strategies import ANY_TEXT
from tests.security.wire import (
    Caller,
    Reply,
    check_answer,
    check_aws_error,
    exchange,
    healthy,
    parse_response,
    raw_request,
    send,
    sign,
)
from tests.support import Cmhost

MIB = 1024 * 1024
ACCOUNT = "210000000001"


@pytest.fixture(scope="module")
def estate(host: Cmhost) -> Estate:
    # Room for the servers the sweeps below create.
    host.cli("accounts", "set-limits", "--account", ACCOUNT, "--server-limit", "200",
             *host.storage_args())
    return build_estate(host, issue_caller(host, ACCOUNT), "ab", victims=1)


@pytest.fixture(scope="module")
def caller(estate: Estate) -> Caller:
    return estate.caller


def _text_members(shape: Shape, path: tuple[str | int, ...] = ()
                  ) -> list[tuple[tuple[str | int, ...], Shape]]:
    """Every string member reachable in `shape` (list members at index 0), with its path."""
    found: list[tuple[tuple[str | int, ...], Shape]] = []
    for member in shape.members:
        sub = member.shape
        if sub.type == "string":
            found.append(((*path, member.name), sub))
        elif sub.type == "list" and sub.member is not None:
            if sub.member.type == "string":
                found.append(((*path, member.name, 0), sub.member))
            elif sub.member.type == "structure":
                found += _text_members(sub.member, (*path, member.name, 0))
        elif sub.type == "structure":
            found += _text_members(sub, (*path, member.name))
    return found


def _with(body: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """A deep copy of `body` with the member at `path` set to `value` (lists made as needed)."""
    copy = json.loads(json.dumps(body))
    node: Any = copy
    for step, following in itertools.pairwise(path):
        if isinstance(step, int):
            while len(node) <= step:
                node.append({} if isinstance(following, str) else [])
            node = node[step]
        else:
            node = node.setdefault(step, [] if isinstance(following, int) else {})
    last = path[-1]
    if isinstance(last, int):
        while len(node) <= last:
            node.append(None)
    node[last] = value
    return copy


def _free_text_members() -> list[tuple[str, tuple[str | int, ...]]]:
    """(operation, path) of every string member whose pattern accepts any text: the values
    that travel furthest (to the database, to engines) unchanged."""
    out = []
    for name, op in sorted(SERVICE.operations.items()):
        for path, shape in _text_members(op.input):
            if shape.pattern in ANY_TEXT or shape.pattern == ".*":
                out.append((name, path))
    return out


def _settle_and_check(host: Cmhost, caller: Caller, before: dict[str, Any],
                      reply: Reply, what: str) -> None:
    if reply.status != 200:
        assert snapshot(caller) == before, f"{what} was refused but changed the account"


# --- the text a JSON string can carry ------------------------------------------------------

ODD_TEXT = {
    "lone high surrogate": "a\ud800b",
    "lone low surrogate": "\udfffz",
    "NUL character": "a\u0000b",
}


@pytest.mark.parametrize("text", list(ODD_TEXT.values()), ids=list(ODD_TEXT))
def test_odd_text_in_every_free_text_member(host: Cmhost, estate: Estate, caller: Caller,
                                            figures: Counter[str], text: str) -> None:
    """JSON can carry lone surrogates (\\ud800) and NUL (\\u0000) in a string; a member whose
    model pattern accepts any text must still never end in a 5xx (the database cannot store
    them), and a refused request must change nothing."""
    bases = valid_bodies(host, estate)
    # Restores go to a spare server: one that never finishes must not block the others.
    bases["RestoreServer"] = {"ServerName": estate.name("victim0"),
                              "BackupId": estate.backup_id("victim0")}
    failures = []
    before = snapshot(caller)
    already = busy_servers(before)
    for index, (name, path) in enumerate(_free_text_members()):
        body = _with(bases[name], path, text)
        if name == "CreateServer":
            body["ServerName"] = f"ab-odd-{len(text)}-{index}"
        reply = caller.call(name, json.dumps(body).encode())
        figures["raw HTTP abuse requests"] += 1
        where = f"{name} {'.'.join(map(str, path))}"
        try:  # which errors an operation declares is test_fuzz.py's business
            if reply.status != 200:
                check_aws_error(reply)
        except AssertionError as exc:
            failures.append(f"{where}: {str(exc).splitlines()[0]}")
            continue
        if reply.status == 200:
            settle(host)
            before = snapshot(caller)
            stuck = {k: v for k, v in busy_servers(before).items() if k not in already}
            if stuck:
                failures.append(f"{where}: accepted, but its job never finished: {stuck}")
                already.update(stuck)
        elif snapshot(caller) != before:
            failures.append(f"{where}: refused ({reply.code}) but changed the account")
    assert not failures, f"{len(failures)} members mishandle {text!r}:\n" + "\n".join(failures)


# --- malformed JSON ------------------------------------------------------------------------

MALFORMED = [
    b"{", b"}", b"{]", b'{"a":}', b'{"a" 1}', b'{"a":1,}', b'{,}', b"[", b"[]", b'"text"',
    b"123", b"-0", b"1e999", b"null", b"true", b"{'a': 1}", b'{"a":tru}', b'{"a":01}',
    b'{"a":"\\x41"}', b'{"a":"\\ud800"', b'{"a":"unterminated}', b"\x00", b"{\x00}",
    b'{"a":1}{"b":2}', b'{"a":1} trailing', b"\xef\xbb\xbf{}", b"\t\n ", b'{"a":Infinity}',
    b'{"a":-NaN}', b'{"a":' + b"9" * 5000 + b"}",
]


@pytest.mark.parametrize("body", MALFORMED, ids=[repr(b[:24]) for b in MALFORMED])
def test_malformed_json(host: Cmhost, caller: Caller, estate: Estate, figures: Counter[str],
                        body: bytes) -> None:
    before = snapshot(caller)
    for name in ("TagResource", "CreateServer", "DescribeServers"):
        reply = caller.call(name, body)
        figures["raw HTTP abuse requests"] += 1
        answer = check_answer(name, reply)
        if body.strip() in (b"", b"{}"):
            continue  # an empty body is the empty input, as SDKs send it
        if reply.status != 200:
            assert answer["__type"] in ("SerializationException", "ValidationException"), answer
    assert snapshot(caller) == before


def test_truncated_json_at_every_cut(host: Cmhost, caller: Caller, estate: Estate,
                                     figures: Counter[str]) -> None:
    """A valid TagResource body cut short anywhere is refused, and tags nothing."""
    body = json.dumps({"ResourceArn": estate.arn("chef"),
                       "Tags": [{"Key": "cut", "Value": "short"}]}).encode()
    before = snapshot(caller)
    for cut in range(1, len(body)):
        reply = caller.call("TagResource", body[:cut])
        figures["raw HTTP abuse requests"] += 1
        assert check_aws_error(reply)["__type"] == "SerializationException", (cut, reply)
    assert snapshot(caller) == before


WRONG_TOP = [b"[]", b'["ServerName"]', b'"fz-chef"', b"42", b"null", b"false"]


@pytest.mark.parametrize("body", WRONG_TOP)
def test_body_that_is_not_an_object(caller: Caller, figures: Counter[str], body: bytes) -> None:
    for name in sorted(SERVICE.operations):
        reply = caller.call(name, body)
        figures["raw HTTP abuse requests"] += 1
        assert check_aws_error(reply)["__type"] == "SerializationException", (name, reply)


@pytest.mark.parametrize("depth", [64, 900, 1100, 5000, 200_000])
@pytest.mark.parametrize("kind", ["arrays", "objects", "in a member"])
def test_deep_nesting(caller: Caller, estate: Estate, figures: Counter[str], depth: int,
                      kind: str) -> None:
    if kind == "arrays":
        body = b"[" * depth + b"]" * depth
    elif kind == "objects":
        body = b'{"a":' * depth + b"1" + b"}" * depth
    else:
        body = (b'{"ResourceArn":"' + estate.arn("chef").encode() + b'","Tags":'
                + b"[" * depth + b"]" * depth + b"}")
    reply = caller.call("TagResource", body)
    figures["raw HTTP abuse requests"] += 1
    answer = check_aws_error(reply)
    expected = {"SerializationException", "ValidationException"}
    if len(body) > MIB:
        expected = {"RequestEntityTooLargeException"}
    assert answer["__type"] in expected, answer


# --- size ----------------------------------------------------------------------------------


def test_huge_value_in_every_text_member(host: Cmhost, estate: Estate, caller: Caller,
                                         figures: Counter[str]) -> None:
    """A string just under the 1 MiB body limit, in each string member of each operation:
    checked against its length and pattern (the regular expressions must not take long on
    it), refused with a ValidationException where it is too long, never a 5xx or a hang."""
    bases = valid_bodies(host, estate)
    before = snapshot(caller)
    slowest = (0.0, "")
    for name, op in sorted(SERVICE.operations.items()):
        if name in ("DeleteServer", "DeleteBackup"):
            continue
        for path, shape in _text_members(op.input):
            room = MIB - len(json.dumps(bases[name])) - 200
            value = ("-----BEGIN CERTIFICATE-----\n" if "CERTIFICATE" in (shape.pattern or "")
                     else "-----BEGIN PRIVATE KEY-----\n" if "PRIVATE" in (shape.pattern or "")
                     else "a") + "A" * room
            body = json.dumps(_with(bases[name], path, value[:room])).encode()
            assert len(body) < MIB
            started = time.monotonic()
            reply = caller.call(name, body)
            slowest = max(slowest, (time.monotonic() - started, f"{name}.{path}"))
            figures["raw HTTP abuse requests"] += 1
            answer = check_answer(name, reply)
            if shape.max is not None and room > shape.max:
                assert answer.get("__type") == "ValidationException", (name, path, reply)
    assert snapshot(caller) == before
    # Not a timing assertion: a pattern that backtracks on 1 MiB takes minutes, not seconds.
    assert slowest[0] < 20, slowest


@pytest.mark.parametrize(("size", "status"), [(MIB - 1, 200), (MIB, 200), (MIB + 1, 413)])
def test_body_size_limit(caller: Caller, figures: Counter[str], size: int, status: int) -> None:
    """Up to 1 MiB is read (an unknown member is ignored); one byte more is refused."""
    head = b'{"Padding":"'
    body = head + b"x" * (size - len(head) - 2) + b'"}'
    assert len(body) == size
    reply = caller.call("DescribeServers", body)
    figures["raw HTTP abuse requests"] += 1
    assert reply.status == status, reply
    if status == 413:
        assert check_aws_error(reply)["__type"] == "RequestEntityTooLargeException"


def test_announced_huge_body_is_refused_before_it_is_sent(host: Cmhost, caller: Caller) -> None:
    """Content-Length of 2 GiB with no body: refused at once, not awaited."""
    headers = sign(host, "DescribeServers", b"{}", key=caller.key)
    raw = exchange(host, raw_request(host, headers, b"", content_length=2 * 1024 * MIB),
                   timeout=10)
    reply = parse_response(raw)
    assert check_aws_error(reply)["__type"] == "RequestEntityTooLargeException"


def test_chunked_body_over_the_limit(host: Cmhost, caller: Caller) -> None:
    body = b'{"Padding":"' + b"x" * MIB + b'"}'
    headers = sign(host, "DescribeServers", body, key=caller.key)
    chunks = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    reply = parse_response(exchange(host, raw_request(host, headers, b"", chunks=chunks)))
    assert check_aws_error(reply)["__type"] == "RequestEntityTooLargeException"


# --- bytes that are not UTF-8 --------------------------------------------------------------

INVALID_UTF8 = {
    "latin-1": b"caf\xe9",
    "lone continuation": b"a\x80b",
    "overlong slash": b"\xc0\xaf",
    "encoded surrogate": b"\xed\xa0\x80",
    "truncated sequence": b"\xe2\x82",
    "beyond U+10FFFF": b"\xf4\x90\x80\x80",
    "0xFF": b"\xff\xfe",
}


@pytest.mark.parametrize("raw", list(INVALID_UTF8.values()), ids=list(INVALID_UTF8))
def test_invalid_utf8(host: Cmhost, caller: Caller, estate: Estate, figures: Counter[str],
                      raw: bytes) -> None:
    before = snapshot(caller)
    for name, body in (
        ("TagResource", b'{"ResourceArn":"' + estate.arn("chef").encode()
         + b'","Tags":[{"Key":"k","Value":"' + raw + b'"}]}'),
        ("CreateBackup", b'{"ServerName":"ab-chef","Description":"' + raw + b'"}'),
        ("DescribeServers", b'{"' + raw + b'":1}'),
    ):
        reply = caller.call(name, body)
        figures["raw HTTP abuse requests"] += 1
        assert check_aws_error(reply)["__type"] == "SerializationException", (name, reply)
    assert snapshot(caller) == before


def test_raw_nul_byte_outside_strings(caller: Caller) -> None:
    reply = caller.call("DescribeServers", b'{"MaxResults":\x001}')
    assert check_aws_error(reply)["__type"] == "SerializationException"


def test_unknown_members_are_ignored_everywhere(caller: Caller, estate: Estate) -> None:
    """Unknown members, at the top and inside list members, change nothing (as on AWS)."""
    plain = caller.ok("DescribeServers", {"ServerName": estate.name("chef")})
    odd = caller.ok("DescribeServers", {"ServerName": estate.name("chef"), "serverName": "x",
                                        "Servers": [], "__type": "X", "NextTokens": 5})
    assert plain == odd
    reply = caller.call("TagResource", {
        "ResourceArn": estate.arn("chef"),
        "Tags": [{"Key": "extra", "Value": "v", "Unknown": [1, {"deep": None}]}]})
    assert reply.status == 200, reply
    tags = caller.ok("ListTagsForResource", {"ResourceArn": estate.arn("chef")})["Tags"]
    assert {"Key": "extra", "Value": "v"} in tags
    caller.ok("UntagResource", {"ResourceArn": estate.arn("chef"), "TagKeys": ["extra"]})


# --- headers -------------------------------------------------------------------------------

CONTENT_TYPES = {
    "missing": (None, 200),
    "x-amz-json-1.1": ("application/x-amz-json-1.1", 200),
    "x-amz-json-1.0": ("application/x-amz-json-1.0", 200),
    "application/json": ("application/json", 200),
    "with charset": ("application/x-amz-json-1.1; charset=utf-8", 200),
    "upper case": ("APPLICATION/X-AMZ-JSON-1.1", 200),
    "text/html": ("text/html", 415),
    "form": ("application/x-www-form-urlencoded", 415),
    "xml": ("application/xml", 415),
    "multipart": ("multipart/form-data; boundary=x", 415),
    "garbage": ("a/b;;;===,,,", 415),
    "very long": ("application/" + "x" * 8000, 415),
}


@pytest.mark.parametrize(("content_type", "status"), list(CONTENT_TYPES.values()),
                         ids=list(CONTENT_TYPES))
def test_content_types(host: Cmhost, caller: Caller, figures: Counter[str],
                       content_type: str | None, status: int) -> None:
    headers = sign(host, "DescribeServers", b"{}", key=caller.key, content_type=content_type)
    reply = send(host, headers, b"{}")
    figures["raw HTTP abuse requests"] += 1
    assert reply.status == status, reply
    if status != 200:
        assert check_aws_error(reply)["__type"] == "UnsupportedMediaTypeException"


def test_duplicate_target_header_is_refused(host: Cmhost, caller: Caller,
                                            estate: Estate) -> None:
    """Two X-Amz-Target headers (both signed: SigV4 joins them "A,B") name no operation.
    Executing one of them (the last) lets a proxy that reads the first see a different
    operation than the one that runs."""
    body = json.dumps({"ServerName": estate.name("chef")}).encode()
    headers = sign(host, "DescribeServers", body, key=caller.key,
                   headers=[("X-Amz-Target", "OpsWorksCM_V2016_11_01.DescribeEvents")])
    assert [v for k, v in headers if k.lower() == "x-amz-target"] == [
        "OpsWorksCM_V2016_11_01.DescribeServers", "OpsWorksCM_V2016_11_01.DescribeEvents"]
    reply = send(host, headers, body)
    assert reply.status != 200, f"one of two X-Amz-Target headers was executed: {reply}"
    assert check_aws_error(reply)["__type"] in ("InvalidAction", "SerializationException",
                                                "IncompleteSignatureException")


@pytest.mark.parametrize("second", ["application/x-amz-json-1.1", "text/html"])
def test_duplicate_content_type(host: Cmhost, caller: Caller, second: str) -> None:
    """Two content types: served or refused (415), never a 5xx."""
    first = "text/html" if second != "text/html" else "application/x-amz-json-1.1"
    headers = sign(host, "DescribeServers", b"{}", key=caller.key, content_type=first,
                   headers=[("Content-Type", second)])
    reply = send(host, headers, b"{}")
    check_answer("DescribeServers", reply)


@pytest.mark.parametrize("name", ["X-Amz-Date", "Authorization", "X-Amz-Content-Sha256"])
def test_duplicate_auth_headers(host: Cmhost, caller: Caller, name: str) -> None:
    headers = sign(host, "DescribeServers", b"{}", key=caller.key)
    body_hash = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"  # of {}
    present = [v for k, v in headers if k.lower() == name.lower()]
    extra = [(name, present[0])] if present else [(name, body_hash), (name, body_hash)]
    reply = send(host, [*headers, *extra], b"{}")
    assert (reply.status, check_aws_error(reply)["__type"]) == (400,
                                                               "IncompleteSignatureException")


def test_duplicate_content_length_is_refused_by_the_http_parser(host: Cmhost,
                                                                caller: Caller) -> None:
    headers = sign(host, "DescribeServers", b"{}", key=caller.key)
    raw = exchange(host, raw_request(host, headers, b"{}", extra=b"Content-Length: 5\r\n"))
    reply = parse_response(raw)
    assert reply.status == 400, reply


@pytest.mark.parametrize("size", [8 * 1024, 64 * 1024, MIB])
def test_very_long_header_value(host: Cmhost, caller: Caller, size: int) -> None:
    headers = sign(host, "DescribeAccountAttributes", b"{}", key=caller.key)
    raw = exchange(host, raw_request(host, [*headers, ("X-Padding", "a" * size)], b"{}"))
    reply = parse_response(raw)
    assert reply.status < 500, reply
    if reply.status == 200:
        assert reply.json()["Attributes"]


@pytest.mark.parametrize("count", [100, 5000])
def test_many_headers(host: Cmhost, caller: Caller, count: int) -> None:
    headers = sign(host, "DescribeAccountAttributes", b"{}", key=caller.key)
    padding = [(f"X-H{i}", "v") for i in range(count)]
    raw = exchange(host, raw_request(host, [*headers, *padding], b"{}"))
    reply = parse_response(raw)
    assert reply.status < 500, reply


def test_long_signed_header_value_in_signature(host: Cmhost, caller: Caller) -> None:
    """A 64 KiB header that is part of the signature still verifies (no truncation)."""
    headers = sign(host, "DescribeAccountAttributes", b"{}", key=caller.key,
                   headers=[("X-Amz-Meta-Long", "b" * 65536)])
    assert send(host, headers, b"{}").status == 200


# --- framing -------------------------------------------------------------------------------


def test_chunked_body(host: Cmhost, caller: Caller, estate: Estate) -> None:
    body = json.dumps({"ServerName": estate.name("chef")}).encode()
    headers = sign(host, "DescribeServers", body, key=caller.key)
    chunks = [body[i:i + 5] for i in range(0, len(body), 5)]
    reply = parse_response(exchange(host, raw_request(host, headers, b"", chunks=chunks)))
    assert reply.status == 200, reply
    assert reply.json()["Servers"][0]["ServerName"] == estate.name("chef")


@pytest.mark.parametrize("framing", [
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
])
def test_broken_chunked_framing(host: Cmhost, caller: Caller, framing: bytes) -> None:
    headers = sign(host, "DescribeServers", b"{}", key=caller.key)
    head = b"POST / HTTP/1.1\r\n" + b"".join(
        f"{k}: {v}\r\n".encode("latin-1") for k, v in headers) + \
        f"Host: {host.host}:{host.port}\r\n".encode()
    raw = exchange(host, head + framing, half_close=True)
    if raw:
        assert parse_response(raw).status < 500
    assert healthy(host)


def test_content_length_shorter_than_the_body(host: Cmhost, caller: Caller) -> None:
    """The body is cut at Content-Length; what follows is a second, malformed request."""
    body = b"{}"
    headers = sign(host, "DescribeAccountAttributes", body, key=caller.key)
    raw = exchange(host, raw_request(host, headers, body + b"GARBAGE", content_length=2))
    assert parse_response(raw).status in (200, 400)
    assert healthy(host)


@pytest.mark.parametrize("close", ["half-close", "client gives up"])
def test_body_shorter_than_content_length_is_not_executed(
        host: Cmhost, caller: Caller, estate: Estate, close: str) -> None:
    """A request whose body never fully arrives must not run. The client signs the bytes it
    sends, announces more, then either shuts its side or gives up and closes: the server must
    not hang, and must not execute the incomplete request."""
    key = f"partial-{close.split()[0]}"
    body = json.dumps({"ResourceArn": estate.arn("chef"),
                       "Tags": [{"Key": key, "Value": "x"}]}).encode()
    headers = sign(host, "TagResource", body, key=caller.key)
    request = raw_request(host, headers, body, content_length=len(body) + 50)
    started = time.monotonic()
    exchange(host, request, half_close=close == "half-close", hold=2.0)
    assert time.monotonic() - started < 15
    time.sleep(0.5)  # whatever the server does with it, it has done by now
    assert healthy(host)
    tags = caller.ok("ListTagsForResource", {"ResourceArn": estate.arn("chef")})["Tags"]
    assert key not in {t["Key"] for t in tags}, (
        "a request whose body was cut short (Content-Length not reached) was executed")


def test_idle_and_slow_connections_do_not_block_others(host: Cmhost, caller: Caller) -> None:
    """100 connections that send half a request line and wait: others are still served."""
    idle = []
    try:
        for _ in range(100):
            sock = socket.create_connection((host.host, host.port), timeout=5)
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le")
            idle.append(sock)
        started = time.monotonic()
        assert caller.call("DescribeAccountAttributes").status == 200
        assert time.monotonic() - started < 10
    finally:
        for sock in idle:
            sock.close()


# --- methods, paths and query strings ------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_other_methods(host: Cmhost, caller: Caller, method: str) -> None:
    headers = sign(host, "DescribeServers", b"", key=caller.key)
    reply = send(host, headers, b"", method=method)
    assert reply.status == 405 and check_aws_error(reply)["__type"] == \
        "MethodNotAllowedException", reply


QUERY_VALUES = ["--5", "%C2%B2", "%D9%A3", "1_000", "%2B5", "-", "9" * 30, "%00", "%FF", "5%205"]


@pytest.mark.parametrize("value", QUERY_VALUES)
def test_query_string_integers(host: Cmhost, caller: Caller, figures: Counter[str],
                               value: str) -> None:
    """Input may come in the query string (as a presigned URL carries it): an integer member
    given as text that only looks numeric must be refused, not crash the parser."""
    for name in ("DescribeServers", "DescribeBackups"):
        query = f"MaxResults={value}"
        headers = sign(host, name, b"{}", key=caller.key, query=query)
        reply = send(host, headers, b"{}", path=f"/?{query}")
        figures["raw HTTP abuse requests"] += 1
        answer = check_answer(name, reply)
        if reply.status != 200:
            assert answer["__type"] in ("ValidationException", "SerializationException"), reply


@pytest.mark.parametrize("query", ["Tags=x", "ServerName=%00", "ServerName=%ED%A0%80",
                                   "a=b&a=c&&&=", "%zz=1", "X-Amz-Target=foo"])
def test_odd_query_strings(host: Cmhost, caller: Caller, query: str) -> None:
    name = "CreateBackup"
    headers = sign(host, name, b"{}", key=caller.key, query=query)
    reply = send(host, headers, b"{}", path=f"/?{query}")
    check_answer(name, reply)


# --- cmhost's own endpoints ----------------------------------------------------------------

ADMIN_BODIES = [b"", b"{", b"[]", b'{"advance": -1}', b'{"advance": "1"}', b'{"advance": 1e400}',
                b'{"advance": NaN}', b'{"advance": true}', b'{"advance": 1e12}',
                b'{"advance":' + b"[" * 50000 + b"]" * 50000 + b"}",
                b'{"x":"' + b"a" * (128 * 1024) + b'"}']


@pytest.mark.parametrize("body", ADMIN_BODIES, ids=[repr(b[:20]) for b in ADMIN_BODIES])
def test_clock_endpoint_input(host: Cmhost, body: bytes) -> None:
    before = host.get("/_cmhost/clock")["now"]
    reply = send(host, [("Content-Type", "application/json")], body, path="/_cmhost/clock")
    assert 400 <= reply.status < 500, reply
    check_aws_error(reply)
    assert host.get("/_cmhost/clock")["now"] < before + 60


@pytest.mark.parametrize("path", ["/_cmhost/logs/../../cmhost.db?sig=x",
                                  "/_cmhost/logs/%2e%2e%2fcmhost.db?sig=",
                                  "/_cmhost/logs/backups/x?sig=" + "0" * 32,
                                  "/_cmhost/logs/" + "a" * 5000])
def test_log_endpoint_refuses_unsigned_paths(host: Cmhost, path: str) -> None:
    reply = send(host, [], b"", method="GET", path=path)
    assert reply.status == 404, reply
    check_aws_error(reply)
