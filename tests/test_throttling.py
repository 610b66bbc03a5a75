"""Throttling through real HTTP: on by default, per account and operation, off by flag."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support import Cmhost, error_code


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmhost]:
    server = Cmhost(Path(tmp_path_factory.mktemp("throttled")), throttle=True).start()
    yield server
    server.stop()


def _outcomes(client: object, op: str, n: int) -> list[str]:
    out = []
    for _ in range(n):
        try:
            getattr(client, op)()
            out.append("ok")
        except ClientError as exc:
            out.append(error_code(exc))
    return out


def test_rapid_calls_are_throttled_per_operation(throttled: Cmhost) -> None:
    client = throttled.client()
    got = _outcomes(client, "describe_servers", 30)
    # The first ten always pass (the burst); a fast loop of 30 cannot all be refilled.
    assert got[:10] == ["ok"] * 10
    assert "ThrottlingException" in got
    # Another operation of the same account has its own bucket.
    assert _outcomes(client, "describe_account_attributes", 1) == ["ok"]


def test_throttling_is_per_account(throttled: Cmhost) -> None:
    issued = throttled.cli("keys", "create", "--account", "222222222222",
                           *throttled.storage_args())
    import json

    key = json.loads(issued.stdout)
    first = throttled.client(region="eu-west-1")
    _outcomes(first, "describe_servers", 30)
    other = throttled.client(region="eu-west-1", key=key["AccessKeyId"],
                             secret=key["SecretAccessKey"])
    assert _outcomes(other, "describe_servers", 5) == ["ok"] * 5


def test_throttle_off_never_throttles(cmhost: Cmhost) -> None:
    assert set(_outcomes(cmhost.client(), "describe_servers", 40)) == {"ok"}
