"""Raw HTTP for the security tests: SigV4-signed requests, byte-level sockets, AWS envelopes.

Signing is botocore's own (`SigV4Auth`, `SigV4QueryAuth`): a test that hand-rolled SigV4 could
agree with a wrong server. Sending is `http.client` with every header put explicitly (so a
header can be sent twice), or a bare socket when the request must not be valid HTTP.
"""

from __future__ import annotations

import datetime as dt
import functools
import http.client
import json
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import boto3
from botocore import xform_name
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from cmhost.api import errors as api_errors
from cmhost.api.model import SERVICE
from tests.support import Cmhost

TARGET_PREFIX = SERVICE.metadata.target_prefix + "."
JSON_11 = "application/x-amz-json-1.1"
# Every hang shows up as a socket timeout well before pytest's patience runs out.
TIMEOUT = 30.0

# The errors any operation may answer besides those its model declares: the protocol's own
# (`cmhost/api/errors.py`) and ValidationException. InternalFailure is never acceptable here.
PROTOCOL_ERRORS = frozenset(
    cls.code for cls in vars(api_errors).values()
    if isinstance(cls, type) and issubclass(cls, api_errors.ApiError)
) - {"InternalFailure", "ServiceUnavailable"}


Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class Key:
    """An access key and the account it belongs to."""

    key: str
    secret: str
    account: str

    @classmethod
    def issue(cls, host: Cmhost, account: str) -> Key:
        """A new key of `account`, issued with `cmhost keys create` against `host`'s storage."""
        out = host.cli("keys", "create", "--account", account, *host.storage_args())
        issued = json.loads(out.stdout)
        assert issued["Account"] == account
        return cls(issued["AccessKeyId"], issued["SecretAccessKey"], account)


DEV_KEY = Key("test", "test", "000000000000")


@dataclass(frozen=True)
class Reply:
    """One HTTP response: status, headers as sent (duplicates kept), raw body."""

    status: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        """The AWS error code, or None for a success."""
        if self.status < 300:
            return None
        return str(self.json().get("__type"))

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.body[:300]!r}"


@contextmanager
def client_clock(when: dt.datetime | None) -> Iterator[None]:
    """Sign as a client whose clock reads `when` (None: the real time)."""
    if when is None:
        yield
        return
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        yield


def target_of(operation: str) -> str:
    return TARGET_PREFIX + operation


def sign(host: Cmhost, operation: str | None, body: bytes, *, key: Key = DEV_KEY,
         region: str = "us-east-1", service: str = "opsworks-cm",
         headers: Sequence[tuple[str, str]] = (), query: str = "",
         when: dt.datetime | None = None, content_type: str | None = JSON_11) -> Headers:
    """The headers of a request as botocore signs it; `headers` may name one header twice."""
    request = AWSRequest(method="POST", url=f"{host.url}/" + (f"?{query}" if query else ""),
                         data=body)
    if content_type is not None:
        request.headers["Content-Type"] = content_type
    if operation is not None:
        request.headers["X-Amz-Target"] = target_of(operation)
    for name, value in headers:
        request.headers.add_header(name, value)
    with client_clock(when):
        SigV4Auth(Credentials(key.key, key.secret), service, region).add_auth(request)
    return list(request.headers.items())


@functools.cache
def _presigner(url: str, key: str, secret: str, region: str) -> Any:
    # No client-side validation: a test may presign input only the server should judge.
    return boto3.client("opsworkscm", endpoint_url=url, region_name=region,
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(parameter_validation=False))


def presign(host: Cmhost, operation: str, params: Mapping[str, Any] | None = None, *,
            key: Key = DEV_KEY, region: str = "us-east-1", expires: int = 300,
            when: dt.datetime | None = None) -> tuple[str, Headers]:
    """(path with the presigned query, the headers the signature covers) of `operation`, as
    botocore's `generate_presigned_url` makes it: the input in the query string, Content-Type
    and X-Amz-Target signed, to be sent with an empty body."""
    client = _presigner(host.url, key.key, key.secret, region)
    with client_clock(when):
        url = client.generate_presigned_url(xform_name(operation), Params=dict(params or {}),
                                            ExpiresIn=expires)
    path = url[url.index("/", len("http://")):]
    return path, [("Content-Type", JSON_11), ("X-Amz-Target", target_of(operation))]


def send(host: Cmhost, headers: Sequence[tuple[str, str]], body: bytes = b"", *,
         method: str = "POST", path: str = "/", timeout: float = TIMEOUT,
         content_length: bool = True) -> Reply:
    """Send one request with exactly these headers (plus Host and, unless told not to,
    Content-Length) on a fresh connection; a hang raises socket.timeout."""
    conn = http.client.HTTPConnection(host.host, host.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        names = {name.lower() for name, _ in headers}
        if "host" not in names:
            conn.putheader("Host", f"{host.host}:{host.port}")
        for name, value in headers:
            conn.putheader(name, value)
        if content_length and "content-length" not in names and "transfer-encoding" not in names:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body if body else None)
        resp = conn.getresponse()
        return Reply(resp.status, list(resp.getheaders()), resp.read())
    finally:
        conn.close()


@dataclass
class Caller:
    """Calls operations of one account in one region over real, signed HTTP."""

    host: Cmhost
    key: Key = DEV_KEY
    region: str = "us-east-1"
    sent: list[int] = field(default_factory=lambda: [0])  # requests made, shared by copies

    def in_region(self, region: str) -> Caller:
        return Caller(self.host, self.key, region, self.sent)

    def call(self, operation: str, params: Mapping[str, Any] | bytes | None = None, *,
             headers: Sequence[tuple[str, str]] = ()) -> Reply:
        body = params if isinstance(params, bytes) else json.dumps(params or {}).encode()
        signed = sign(self.host, operation, body, key=self.key, region=self.region,
                      headers=headers)
        self.sent[0] += 1
        return send(self.host, signed, body)

    def ok(self, operation: str, params: Mapping[str, Any] | None = None) -> Any:
        """The parsed answer of a call that must succeed."""
        reply = self.call(operation, params)
        assert reply.status == 200, f"{operation} {params}: {reply}"
        return reply.json()

    def error(self, operation: str, params: Mapping[str, Any] | None = None) -> str:
        """The error code of a call that must fail (with a well-formed AWS error)."""
        reply = self.call(operation, params)
        return check_aws_error(reply)["__type"]


def check_aws_error(reply: Reply) -> dict[str, Any]:
    """`reply` must be a well-formed AWS JSON error; returns its body."""
    assert 400 <= reply.status < 500, str(reply)
    body = reply.json()
    assert isinstance(body, dict), str(reply)
    assert isinstance(body.get("__type"), str) and body["__type"], str(reply)
    assert isinstance(body.get("message"), str) and body["message"], str(reply)
    assert reply.header("x-amzn-ErrorType") == body["__type"], str(reply)
    assert len(reply.header("x-amzn-RequestId") or "") == 36, str(reply)
    return body


def check_answer(operation: str, reply: Reply) -> dict[str, Any]:
    """Never a 5xx; a success whose body parses, or a well-formed error the model or the
    protocol declares for `operation`. Returns the parsed body."""
    assert reply.status < 500, f"{operation}: {reply}"
    assert len(reply.header("x-amzn-RequestId") or "") == 36, f"{operation}: {reply}"
    if reply.status == 200:
        body = reply.json()
        assert isinstance(body, dict), f"{operation}: {reply}"
        assert reply.header("Content-Type") == JSON_11
        return body
    body = check_aws_error(reply)
    allowed = set(SERVICE.operations[operation].errors) | PROTOCOL_ERRORS | {
        "ValidationException"}
    assert body["__type"] in allowed, (
        f"{operation} answered {body['__type']}, which neither its model nor the protocol "
        f"declares: {body['message'][:200]}")
    return body


# --- bare sockets ----------------------------------------------------------------------------


def exchange(host: Cmhost, data: bytes, *, timeout: float = 10.0, half_close: bool = False,
             hold: float | None = None) -> bytes:
    """Write `data` on a fresh socket and read until the server closes or one complete
    response has arrived. `half_close` shuts the write side after sending; `hold` waits that
    long for an answer and then gives up (the client closes), returning what came."""
    sock = socket.create_connection((host.host, host.port), timeout=timeout)
    try:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        if hold is not None:
            sock.settimeout(hold)
        received = b""
        while True:
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                if hold is not None:
                    return received
                raise
            if not chunk:
                return received
            received += chunk
            if complete_response(received):
                return received
    finally:
        sock.close()


def complete_response(raw: bytes) -> bool:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(rest) >= int(value.strip())
    return False


def parse_response(raw: bytes) -> Reply:
    """The first response in `raw` (as `exchange` returns it)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = [(k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:])]
    length = next((int(v) for k, v in headers if k.lower() == "content-length"), len(rest))
    return Reply(status, headers, rest[:length])


def raw_request(host: Cmhost, headers: Sequence[tuple[str, str]], body: bytes, *,
                content_length: int | None = None, extra: bytes = b"",
                chunks: Sequence[bytes] | None = None) -> bytes:
    """The bytes of `POST /` with these headers: Content-Length as given (default: the body's
    length), or a chunked body when `chunks` is given. `extra` is raw header lines."""
    lines = ["POST / HTTP/1.1", f"Host: {host.host}:{host.port}"]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() != "host"]
    head = "\r\n".join(lines).encode("latin-1") + b"\r\n" + extra
    if chunks is not None:
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n\r\n"
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + payload
    length = len(body) if content_length is None else content_length
    return head + b"Content-Length: %d\r\n\r\n" % length + body


def healthy(host: Cmhost) -> bool:
    """The server still answers, promptly."""
    return bool(host.get("/_cmhost/health")["status"] == "ok")
