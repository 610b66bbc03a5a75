"""Health checks: a server whose engine breaks is seen, with events, and recovers."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Cmhost, create_server


@pytest.fixture()
def watched(tmp_path: Path) -> Iterator[Cmhost]:
    server = Cmhost(tmp_path, extra_args=["--health-interval", "0.2"]).start()
    yield server
    server.stop()


def _wait_for(cm: Cmhost, name: str, wanted: str, timeout: float = 20.0) -> None:
    # Health checks run on real time (engines are real processes), so this polls briefly.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cm.client().describe_servers(ServerName=name)["Servers"][0]["Status"] == wanted:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} did not become {wanted}")


def test_lost_engine_state_is_seen_and_events_written(watched: Cmhost) -> None:
    server = create_server(watched.client(), "watched", "Puppet")
    watched.advance(120)
    _wait_for(watched, "watched", "HEALTHY")
    state = watched.data_dir / "engines" / server["ServerArn"].rsplit("/", 1)[1]
    backup = state.with_name("saved")
    shutil.copytree(state, backup)
    (state / "server.pem").unlink()
    _wait_for(watched, "watched", "UNHEALTHY")
    shutil.rmtree(state)
    _wait_for(watched, "watched", "CONNECTION_LOST")
    shutil.copytree(backup, state)
    _wait_for(watched, "watched", "HEALTHY")
    messages = [e["Message"] for e in
                watched.client().describe_events(ServerName="watched")["ServerEvents"]]
    assert any("UNHEALTHY" in m for m in messages)
    assert any("CONNECTION_LOST" in m for m in messages)
    assert messages[0].startswith("Health check: the server is HEALTHY")
