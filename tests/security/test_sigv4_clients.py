"""What boto3 1.40.18 sees of every SigV4 refusal: each case of the SigV4 matrix, header and
presigned, reaches its caller as a `ClientError` whose `Error.Code`, `Error.Message` and HTTP
status are those of AWS's JSON protocol services (400, tests/authn.py), and is not retried.

The raw HTTP side of the same cases (status, code, message, x-amzn-ErrorType) is checked for
all 19 operations by test_sigv4_matrix.py. botocore only ever signs correctly, so most cases
cannot come out of a client by themselves: for those, a `before-send` handler puts the case's
own request on the wire (duplicate headers and all) and hands cmhost's answer back to botocore,
which parses it, asks its retry handler whether to send again and raises, as for an answer it
had fetched itself. The refusals a client does make by itself (an unknown key, a wrong secret,
no credentials, a slow or fast clock) go through botocore untouched.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED, xform_name
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError

from tests import authn
from tests.security.test_sigv4_matrix import (
    CASES,
    EXPIRED,
    MISMATCH,
    MISSING,
    NOT_YET,
    OPERATIONS,
    UNKNOWN,
    UNKNOWN_KEY,
    Expected,
    Request,
    World,
    make_world,
)
from tests.security.wire import Key, client_clock, send
from tests.support import Cmhost

# botocore's two retry policies: "legacy" (boto3's default) and "standard" ("adaptive" is
# standard's checks plus client-side rate limiting). Both would retry within these attempts.
RETRY_MODES = ("legacy", "standard")
MAX_ATTEMPTS = 4


@pytest.fixture(scope="module")
def world(host: Cmhost) -> World:
    return make_world(host)


class _Body:
    """The raw stream AWSResponse reads its body from."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


class _Wire:
    """A `before-send` handler: counts what botocore sends, and sends `swap` instead of
    botocore's request when one is set."""

    def __init__(self, host: Cmhost) -> None:
        self.host = host
        self.swap: Request | None = None
        self.sent = 0

    def __call__(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        self.sent += 1
        if self.swap is None:
            return None
        path, headers, body = self.swap
        reply = send(self.host, headers, body, path=path)
        return AWSResponse(self.host.url + path, reply.status, reply.headers, _Body(reply.body))


def _client(host: Cmhost, key: Key | None, mode: str) -> tuple[Any, _Wire]:
    """An opsworkscm client of `key` (None: sends no credentials at all), and its wire."""
    config = Config(retries={"mode": mode, "max_attempts": MAX_ATTEMPTS},
                    parameter_validation=False,
                    **({"signature_version": UNSIGNED} if key is None else {}))
    credentials = {} if key is None else {"aws_access_key_id": key.key,
                                          "aws_secret_access_key": key.secret}
    client = boto3.client("opsworkscm", endpoint_url=host.url, region_name="us-east-1",
                          config=config, **credentials)
    wire = _Wire(host)
    client.meta.events.register("before-send.opsworkscm", wire)
    return client, wire


def _seen(call: Callable[[], Any], wire: _Wire, expected: Expected) -> str | None:
    """What is wrong with what the caller of `call` sees, or None if it is `expected`."""
    code, message = expected
    wire.sent = 0
    try:
        call()
    except ClientError as exc:
        error, meta = exc.response["Error"], exc.response["ResponseMetadata"]
        got = (meta["HTTPStatusCode"], error["Code"], meta["RetryAttempts"], wire.sent)
        if got != (authn.STATUS, code, 0, 1) or not re.fullmatch(message, error["Message"]):
            return (f"expected {authn.STATUS} {code} {message!r}, sent once; got HTTP "
                    f"{got[0]} {got[1]} {error['Message']!r}, sent {wire.sent} time(s)")
        return None
    return "the call succeeded"


@pytest.mark.parametrize("mode", RETRY_MODES)
def test_each_matrix_case_through_boto3(world: World, mode: str,
                                        figures: Counter[str]) -> None:
    """Every case of the matrix, each on one operation (the 19 in turn)."""
    client, wire = _client(world.host, world.key, mode)
    wrong = []
    for i, (case, (build, expected)) in enumerate(CASES.items()):
        op = OPERATIONS[i % len(OPERATIONS)]
        wire.swap = build(world, op)
        call = functools.partial(getattr(client, xform_name(op)), **world.bodies[op])
        problem = _seen(call, wire, expected)
        figures["SigV4 boto3 requests"] += 1
        if problem:
            wrong.append(f"{case} / {op}: {problem}")
    assert not wrong, f"{len(wrong)} of {len(CASES)} cases seen wrongly:\n" + "\n".join(wrong)


def _own_refusals(world: World) -> dict[str, tuple[Key | None, dt.timedelta, Expected]]:
    """Refusals a client makes without help: (its key, how far off its clock is, answer)."""
    key, now = world.key, dt.timedelta(0)
    return {
        "unknown access key": (UNKNOWN_KEY, now, UNKNOWN),
        "wrong secret": (Key(key.key, "wrong" + key.secret[5:], key.account), now, MISMATCH),
        "another account's secret": (Key(key.key, world.b.caller.key.secret, key.account),
                                     now, MISMATCH),
        "no credentials": (None, now, MISSING),
        "clock 16 minutes slow": (key, -dt.timedelta(minutes=16), EXPIRED),
        "clock a day slow": (key, -dt.timedelta(days=1), EXPIRED),
        "clock 16 minutes fast": (key, dt.timedelta(minutes=16), NOT_YET),
    }


@pytest.mark.parametrize("mode", RETRY_MODES)
def test_refusals_a_client_makes_by_itself(world: World, mode: str,
                                           figures: Counter[str]) -> None:
    wrong = []
    for case, (key, off, expected) in _own_refusals(world).items():
        client, wire = _client(world.host, key, mode)
        when = None if not off else dt.datetime.now(dt.UTC) + off
        with client_clock(when):
            problem = _seen(client.describe_servers, wire, expected)
        figures["SigV4 boto3 requests"] += 1
        if problem:
            wrong.append(f"{case}: {problem}")
    assert not wrong, "\n".join(wrong)


def test_the_same_client_signed_right_goes_through(world: World) -> None:
    """The control: the clients above, with nothing wrong, are answered."""
    for mode in RETRY_MODES:
        client, wire = _client(world.host, world.key, mode)
        assert client.describe_account_attributes()["Attributes"]
        assert wire.sent == 1
