"""The cmhost processes of the security tests, and how their time is moved."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tests.security.wire import Caller, Key
from tests.support import Cmhost

# `make soak` sets it: the long fuzz runs (test_fuzz.py's soak tests, marked slow).
SOAK = os.environ.get("CMHOST_SOAK") == "1"

# Virtual seconds a server spends in CREATING and in DELETING: long enough that nothing
# finishes by itself during a test run, so the state moves only when a test advances time.
SLOW_SECONDS = 3600.0


def quiet_host(workdir: Path, *, throttle: bool = False, host: str = "127.0.0.1",
               extra_args: Sequence[str] = ()) -> Cmhost:
    """A cmhost whose state changes only through requests and `settle`/`advance`."""
    return Cmhost(workdir, throttle=throttle, host=host, provisioning_seconds=SLOW_SECONDS,
                  deletion_seconds=SLOW_SECONDS,
                  extra_args=["--health-interval", str(SLOW_SECONDS), *extra_args])


def settle(host: Cmhost) -> None:
    """Run every job that is due now (the worker may be running one: advance waits for it)."""
    host.advance(1)


def to_hour_start(host: Cmhost, at_least: float) -> None:
    """Advance at least `at_least` seconds, to a few seconds past the start of an hour: no
    daily or weekly window can open during the next minutes of a run."""
    now = float(host.get("/_cmhost/clock")["now"])
    target = now + at_least
    host.advance(target - now + (3600 - target % 3600) + 5)


def issue_caller(host: Cmhost, account: str, region: str = "us-east-1") -> Caller:
    """A caller with a key of `account` issued by `cmhost keys create`."""
    return Caller(host, Key.issue(host, account), region)
