"""A real engine killed with SIGKILL shows at once through boto3, however fast it comes back:
an event with the exit status, the server UNHEALTHY until the engine answers, then HEALTHY.

The health interval is long (300 s) on purpose: what the tests see comes from the supervisor's
restart notice and the checks that follow it, not from a regular health check. The drivers are
chosen through CMHOST_CHEF_DRIVER / CMHOST_PUPPET_DRIVER (issue 15 defect 5)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ops.helpers import attribute, events, healthy_server, quiet_windows, server, server_id
from tests.support import Cmhost, create_server

HEALTH_INTERVAL = "300"


def _pid(pid_file: Path, marker: Path) -> int | None:
    """The pid in `pid_file` when that process runs with `marker` in its arguments."""
    try:
        pid = int(pid_file.read_text())
        args = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if str(marker).encode() in args else None


def _poll(condition: Callable[[], bool], timeout: float, what: str,
          every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def _kill_and_watch(client: Any, name: str, pid: int, timeout: float,
                    every: float = 0.05) -> list[tuple[str, str]]:
    """SIGKILL the engine; every (Status, StatusReason) DescribeServers shows until it is
    HEALTHY again after something else."""
    seen: list[tuple[str, str]] = []

    def healthy_again() -> bool:
        now = server(client, name)
        seen.append((now["Status"], now.get("StatusReason", "")))
        return now["Status"] == "HEALTHY" and any(s != "HEALTHY" for s, _ in seen)

    os.kill(pid, signal.SIGKILL)
    _poll(healthy_again, timeout, "HEALTHY again", every)
    return seen


def _check_story(client: Any, name: str, pid: int, new_pid: int | None,
                 seen: list[tuple[str, str]]) -> None:
    assert new_pid not in (None, pid)
    said = (f"The engine process (pid {pid}) exited with status -9 (SIGKILL) and was restarted "
            f"(pid {new_pid}).")
    assert any(s == "UNHEALTHY" for s, _ in seen), seen
    assert not any(s == "CONNECTION_LOST" for s, _ in seen), seen
    messages = events(client, name)  # newest first
    assert messages[:3] == [
        "Health check: the server is HEALTHY.",
        f"Health check: the server is UNHEALTHY: {said} It does not answer yet.", said], messages


@pytest.fixture
def goiardi(tmp_path: Path) -> Iterator[Cmhost]:
    if shutil.which("goiardi") is None:
        pytest.skip("install the Debian package goiardi (apt-get install goiardi)")
    cmhost = Cmhost(tmp_path, env={"CMHOST_CHEF_DRIVER": "goiardi"}, extra_args=[
        "--health-interval", HEALTH_INTERVAL, "--engine-ports", "28500-28549"]).start()
    yield cmhost
    cmhost.stop()
    for pid_file in (cmhost.data_dir / "engines").glob("*/goiardi.pid"):
        pid = _pid(pid_file, pid_file.parent / "data")
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


def test_a_killed_goiardi_is_an_event_and_unhealthy_until_it_answers(goiardi: Cmhost) -> None:
    client = goiardi.client()
    created = healthy_server(goiardi, client, "crash-goiardi")
    port = int(created["Endpoint"].rpartition(":")[2])
    assert 28500 <= port <= 28549  # CMHOST_CHEF_DRIVER=goiardi: a real goiardi serves it
    state = goiardi.data_dir / "engines" / server_id(created["ServerArn"])
    pid = _pid(state / "goiardi.pid", state / "data")
    assert pid is not None
    seen = _kill_and_watch(client, "crash-goiardi", pid, timeout=60)
    _check_story(client, "crash-goiardi", pid, _pid(state / "goiardi.pid", state / "data"),
                 seen)


PROVISIONING = 600  # virtual seconds of CREATING; advanced past once puppetserver serves
START_TIMEOUT = 600.0  # a JVM start on two busy cores can take minutes


@pytest.fixture
def puppetserver(tmp_path: Path) -> Iterator[Cmhost]:
    if not os.access("/usr/bin/puppetserver", os.X_OK):
        pytest.skip("install the Debian package puppetserver (apt-get install puppetserver)")
    cmhost = Cmhost(tmp_path, provisioning_seconds=PROVISIONING,
                    env={"CMHOST_PUPPET_DRIVER": "puppetserver"}, extra_args=[
                        "--health-interval", HEALTH_INTERVAL, "--engine-ports", "28550-28599",
                        "--java-heap", "1g"]).start()
    yield cmhost
    cmhost.stop()
    for root in (cmhost.data_dir / "engines").glob("*"):
        pid = _pid(root / "run" / "puppetserver.pid", root / "conf" / "conf.d")
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


def test_a_killed_puppetserver_is_an_event_and_unhealthy_until_it_answers(
        puppetserver: Cmhost) -> None:
    from tests.real_engines.test_puppetserver import serves

    client = puppetserver.client()
    name = "crash-puppet"
    created = create_server(client, name, "Puppet", **quiet_windows(puppetserver))
    ca = attribute(created["EngineAttributes"], "PUPPET_API_CA_CERT")
    assert ca is not None
    _poll(lambda: serves(created["Endpoint"], ca), START_TIMEOUT, "puppetserver to serve", 1.0)
    puppetserver.advance(PROVISIONING + 1)
    _poll(lambda: server(client, name)["Status"] == "HEALTHY", 60, "HEALTHY", 0.5)
    root = puppetserver.data_dir / "engines" / server_id(created["ServerArn"])
    pid_file, marker = root / "run" / "puppetserver.pid", root / "conf" / "conf.d"
    pid = _pid(pid_file, marker)
    assert pid is not None
    seen = _kill_and_watch(client, name, pid, timeout=START_TIMEOUT, every=0.5)
    # The JVM takes tens of seconds to answer again: UNHEALTHY all that time, never LOST.
    reason = (f"The engine process (pid {pid}) exited with status -9 (SIGKILL) and was "
              f"restarted (pid {_pid(pid_file, marker)}). It does not answer yet.")
    assert ("UNHEALTHY", reason) in seen
    assert sum(1 for s, _ in seen if s == "UNHEALTHY") > 10, seen[:5]
    _check_story(client, name, pid, _pid(pid_file, marker), seen)
