"""Waiting for a server without sleeping through what the clock decides: the virtual clock is
moved to the end of provisioning and to the end of a fault's hold; what takes real time (a
real engine starting) is waited for in real time."""

from __future__ import annotations

import time
from typing import Any

from cmhost.testing.server import CmhostServer

# Statuses a server does not leave by itself to become HEALTHY.
_FINAL = ("FAILED", "TERMINATED", "DELETING")


def wait_until_healthy(server: CmhostServer, client: Any, name: str, *,
                       timeout: float = 600.0, poll: float = 0.1) -> dict[str, Any]:
    """DescribeServers' entry of `name` once it is HEALTHY. On a virtual clock the clock
    moves to when provisioning ends (CreatedAt + the provisioning time) and to when a hold
    of a server_status fault ends; otherwise time passes as it does. AssertionError when the
    server ends elsewhere (FAILED...), TimeoutError after `timeout` real seconds."""
    deadline = time.monotonic() + timeout
    virtual = server.clock.mode == "virtual"
    while True:
        found: dict[str, Any] = client.describe_servers(ServerName=name)["Servers"][0]
        status = found["Status"]
        if status == "HEALTHY":
            return found
        if status in _FINAL:
            raise AssertionError(f"server {name} is {status}, not HEALTHY: "
                                 f"{found.get('StatusReason') or 'no StatusReason'}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"server {name} is still {status} after {timeout:g} s")
        target = _clock_target(server, found) if virtual else None
        now = server.clock.now() if target is not None else 0.0
        if target is not None and target > now:
            server.clock.advance(target - now)
            continue
        time.sleep(poll)
        poll = min(poll * 2, 1.0)


def _clock_target(server: CmhostServer, found: dict[str, Any]) -> float | None:
    """The time on the clock that would move the server on: the end of its provisioning, or
    of the hold a fault has it in (None: neither)."""
    if found["Status"] == "CREATING":
        return float(found["CreatedAt"].timestamp()) + server.provisioning_seconds + 0.001
    server_id = str(found["ServerArn"]).rsplit("/", 1)[-1]
    for fault in server.admin.list_faults():
        for hold in fault.get("holds", []):
            if hold["server_id"] == server_id:
                return float(hold["until"])
    return None
