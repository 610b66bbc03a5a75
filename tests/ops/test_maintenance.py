"""StartMaintenance: a backup first, a rebuild from it, and the Chef 12 major upgrade."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ops.helpers import (
    associate,
    chef_attributes,
    disassociate,
    events,
    expect_error,
    healthy_server,
    server,
    settle,
)
from tests.support import Cmhost

UPGRADE = "CHEF_MAJOR_UPGRADE"


@pytest.fixture(scope="module")
def maintained(cmhost: Cmhost, client: Any) -> dict[str, Any]:
    """A Chef server with one node, after one StartMaintenance."""
    healthy_server(cmhost, client, "mt-chef")
    assert associate(cmhost, client, "mt-chef", "web-1",
                     chef_attributes())["NodeAssociationStatus"] == "SUCCESS"
    assert client.describe_backups(ServerName="mt-chef")["Backups"] == []
    started = client.start_maintenance(ServerName="mt-chef")["Server"]
    settle(cmhost)
    return started


def test_maintenance_runs_and_succeeds(client: Any, maintained: dict[str, Any]) -> None:
    assert maintained["Status"] == "UNDER_MAINTENANCE"
    after = server(client, "mt-chef")
    assert (after["Status"], after["MaintenanceStatus"]) == ("HEALTHY", "SUCCESS")
    assert after["EngineVersion"] == maintained["EngineVersion"]
    messages = events(client, "mt-chef")
    assert any(m.startswith("Maintenance started") for m in messages)
    assert any(m.startswith("Maintenance completed successfully") for m in messages)


def test_maintenance_takes_a_backup_first(client: Any, maintained: dict[str, Any]) -> None:
    taken = client.describe_backups(ServerName="mt-chef")["Backups"]
    assert [(b["BackupType"], b["Status"]) for b in taken] == [("AUTOMATED", "OK")]
    assert taken[0]["EngineVersion"] == maintained["EngineVersion"]


def test_the_maintenance_backup_is_a_plain_automated_backup(
        client: Any, maintained: dict[str, Any]) -> None:
    # Backup.Description: "This field is empty for automated backups"; so is UserArn.
    taken = client.describe_backups(ServerName="mt-chef")["Backups"][0]
    assert "UserArn" not in taken
    assert "Description" not in taken, taken.get("Description")


def test_nodes_survive_maintenance(cmhost: Cmhost, client: Any,
                                   maintained: dict[str, Any]) -> None:
    gone = disassociate(cmhost, client, "mt-chef", "web-1",
                        [{"Name": "CHEF_ORGANIZATION", "Value": "default"}])
    assert gone["NodeAssociationStatus"] == "SUCCESS"


def test_chef_12_major_upgrade(cmhost: Cmhost, client: Any) -> None:
    created = healthy_server(cmhost, client, "mt-chef12", EngineVersion="12")
    assert created["EngineVersion"] == "12.11.1"
    expect_error(client.start_maintenance, "ValidationException", ServerName="mt-chef12",
                 EngineAttributes=[{"Name": UPGRADE, "Value": "maybe"}])
    started = client.start_maintenance(ServerName="mt-chef12",
                                       EngineAttributes=[{"Name": UPGRADE, "Value": "true"}])
    assert started["Server"]["Status"] == "UNDER_MAINTENANCE"
    settle(cmhost)
    after = server(client, "mt-chef12")
    assert (after["Status"], after["MaintenanceStatus"], after["EngineVersion"]) == (
        "HEALTHY", "SUCCESS", "2020-07")
    # now a Chef 2 server: no further major upgrade
    expect_error(client.start_maintenance, "ValidationException", ServerName="mt-chef12",
                 EngineAttributes=[{"Name": UPGRADE, "Value": "true"}])


@pytest.mark.parametrize("engine", ["Chef", "Puppet"])
def test_major_upgrade_refused_without_chef_12(cmhost: Cmhost, client: Any, engine: str) -> None:
    name = f"mt-no-upgrade-{engine.lower()}"
    healthy_server(cmhost, client, name, engine)
    expect_error(client.start_maintenance, "ValidationException", ServerName=name,
                 EngineAttributes=[{"Name": UPGRADE, "Value": "true"}])
    expect_error(client.start_maintenance, "ValidationException", ServerName=name,
                 EngineAttributes=[{"Name": "PUPPET_ADMIN_PASSWORD", "Value": "x"}])
    expect_error(client.start_maintenance, "ValidationException", ServerName=name,
                 EngineAttributes=[{"Name": "NO_SUCH_ATTRIBUTE", "Value": "true"}])
    current = server(client, name)
    assert current["Status"] == "HEALTHY" and "MaintenanceStatus" not in current


def test_start_maintenance_on_unknown_server(client: Any) -> None:
    expect_error(client.start_maintenance, "ResourceNotFoundException", ServerName="no-such")
