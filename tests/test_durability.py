"""Durability: state and in-flight work survive a restart and a crash (SIGKILL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Cmhost, create_server


@pytest.fixture()
def fresh(tmp_path: Path) -> Iterator[Cmhost]:
    server = Cmhost(tmp_path).start()
    yield server
    server.stop()


def _status(cm: Cmhost, name: str) -> str:
    return cm.client().describe_servers(ServerName=name)["Servers"][0]["Status"]


def test_restart_mid_create_still_reaches_healthy(fresh: Cmhost) -> None:
    create_server(fresh.client(), "survivor", "Puppet")
    assert _status(fresh, "survivor") == "CREATING"
    fresh.restart()
    assert _status(fresh, "survivor") == "CREATING"
    fresh.advance(120)
    assert _status(fresh, "survivor") == "HEALTHY"


# A job the killed process had claimed is released at once on SQLite (one process works it),
# and on PostgreSQL when its lease runs out: past both.
AFTER_LEASE = 400


def test_sigkill_mid_create_and_mid_delete(fresh: Cmhost) -> None:
    client = fresh.client()
    create_server(client, "crashy", "Chef")
    fresh.kill()
    fresh.start()
    fresh.advance(AFTER_LEASE)
    assert _status(fresh, "crashy") == "HEALTHY"
    fresh.client().delete_server(ServerName="crashy")
    fresh.kill()
    fresh.start()
    assert _status(fresh, "crashy") == "DELETING"
    fresh.advance(AFTER_LEASE)
    assert fresh.client().describe_servers()["Servers"] == []


def test_restart_keeps_servers_events_tags_and_virtual_time(fresh: Cmhost) -> None:
    client = fresh.client()
    server = create_server(client, "keeper", "Chef", Tags=[{"Key": "team", "Value": "ops"}])
    fresh.advance(86400)
    before_clock = fresh.get("/_cmhost/clock")["now"]
    before = client.describe_servers()["Servers"]
    events = client.describe_events(ServerName="keeper")["ServerEvents"]
    fresh.restart()
    client = fresh.client()
    assert fresh.get("/_cmhost/clock")["now"] >= before_clock
    assert client.describe_servers()["Servers"] == before
    assert client.describe_events(ServerName="keeper")["ServerEvents"] == events
    tags = client.list_tags_for_resource(ResourceArn=server["ServerArn"])["Tags"]
    assert tags == [{"Key": "team", "Value": "ops"}]
