"""The states asynchronous operations pass through, seen on a cmhost whose jobs run only
when the clock is advanced; and every operation's refusal while the server is CREATING."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.ops.helpers import (
    backup_now,
    chef_attributes,
    events,
    expect_error,
    healthy_server,
    public_pem,
    quiet_windows,
    server,
    settle,
)
from tests.support import Cmhost, create_server

INVALID = "InvalidStateException"


@pytest.fixture(scope="module")
def pclient(paused: Cmhost) -> Any:
    return paused.client()


@pytest.fixture(scope="module")
def chef(paused: Cmhost, pclient: Any) -> str:
    healthy_server(paused, pclient, "tr-chef")
    return "tr-chef"


@pytest.fixture(scope="module")
def chef_backup(paused: Cmhost, pclient: Any, chef: str) -> str:
    return str(backup_now(paused, pclient, chef)["BackupId"])


@pytest.fixture(scope="module")
def creating(paused: Cmhost, pclient: Any, chef_backup: str) -> str:
    """A server that stays CREATING: nothing advances the clock until these tests are done."""
    create_server(pclient, "tr-new", **quiet_windows(paused))
    return "tr-new"


CREATING_CALLS: dict[str, Callable[[Any, str, str], dict[str, Any]]] = {
    "create_backup": lambda c, name, backup: {"ServerName": name},
    "restore_server": lambda c, name, backup: {"ServerName": name, "BackupId": backup},
    "start_maintenance": lambda c, name, backup: {"ServerName": name},
    "associate_node": lambda c, name, backup: {
        "ServerName": name, "NodeName": "n1", "EngineAttributes": chef_attributes()},
    "disassociate_node": lambda c, name, backup: {
        "ServerName": name, "NodeName": "n1",
        "EngineAttributes": [{"Name": "CHEF_ORGANIZATION", "Value": "default"}]},
    "export_server_engine_attribute": lambda c, name, backup: {
        "ServerName": name, "ExportAttributeName": "Userdata"},
    "update_server_engine_attributes": lambda c, name, backup: {
        "ServerName": name, "AttributeName": "CHEF_PIVOTAL_KEY"},
}


@pytest.mark.parametrize("operation", sorted(CREATING_CALLS))
def test_refused_while_creating(pclient: Any, creating: str, chef_backup: str,
                                operation: str) -> None:
    assert server(pclient, creating)["Status"] == "CREATING"
    params = CREATING_CALLS[operation](pclient, creating, chef_backup)
    expect_error(getattr(pclient, operation), INVALID, **params)


def test_backing_up(paused: Cmhost, pclient: Any, chef: str) -> None:
    backup = pclient.create_backup(ServerName=chef)["Backup"]
    assert backup["Status"] == "IN_PROGRESS"
    assert server(pclient, chef)["Status"] == "BACKING_UP"
    # one backup at a time, and nothing else meanwhile
    expect_error(pclient.create_backup, INVALID, ServerName=chef)
    expect_error(pclient.start_maintenance, INVALID, ServerName=chef)
    expect_error(pclient.update_server_engine_attributes, INVALID, ServerName=chef,
                 AttributeName="CHEF_PIVOTAL_KEY")
    expect_error(pclient.associate_node, INVALID, ServerName=chef, NodeName="n1",
                 EngineAttributes=chef_attributes())
    listed = pclient.describe_backups(BackupId=backup["BackupId"])["Backups"]
    assert listed[0]["Status"] == "IN_PROGRESS"

    settle(paused)
    assert server(pclient, chef)["Status"] == "HEALTHY"
    assert pclient.describe_backups(BackupId=backup["BackupId"])["Backups"][0]["Status"] == "OK"
    messages = events(pclient, chef)
    assert any(backup["BackupId"] in m and "complete" in m for m in messages)


def test_deleting_backup(paused: Cmhost, pclient: Any, chef: str) -> None:
    backup_id = backup_now(paused, pclient, chef)["BackupId"]
    pclient.delete_backup(BackupId=backup_id)
    assert pclient.describe_backups(BackupId=backup_id)["Backups"][0]["Status"] == "DELETING"
    expect_error(pclient.delete_backup, INVALID, BackupId=backup_id)
    expect_error(pclient.restore_server, INVALID, ServerName=chef, BackupId=backup_id)
    settle(paused)
    expect_error(pclient.describe_backups, "ResourceNotFoundException", BackupId=backup_id)
    expect_error(pclient.delete_backup, "ResourceNotFoundException", BackupId=backup_id)


def test_restoring(paused: Cmhost, pclient: Any, chef: str, chef_backup: str) -> None:
    restoring = pclient.restore_server(ServerName=chef, BackupId=chef_backup)["Server"]
    assert restoring["Status"] == "RESTORING"
    assert server(pclient, chef)["Status"] == "RESTORING"
    expect_error(pclient.restore_server, INVALID, ServerName=chef, BackupId=chef_backup)
    expect_error(pclient.create_backup, INVALID, ServerName=chef)
    expect_error(pclient.start_maintenance, INVALID, ServerName=chef)
    settle(paused)
    assert server(pclient, chef)["Status"] == "HEALTHY"


def test_under_maintenance(paused: Cmhost, pclient: Any, chef: str) -> None:
    started = pclient.start_maintenance(ServerName=chef)["Server"]
    assert started["Status"] == "UNDER_MAINTENANCE"
    assert server(pclient, chef)["Status"] == "UNDER_MAINTENANCE"
    expect_error(pclient.start_maintenance, INVALID, ServerName=chef)
    expect_error(pclient.create_backup, INVALID, ServerName=chef)
    expect_error(pclient.disassociate_node, INVALID, ServerName=chef, NodeName="n1")
    settle(paused)
    after = server(pclient, chef)
    assert (after["Status"], after["MaintenanceStatus"]) == ("HEALTHY", "SUCCESS")


def test_modifying(paused: Cmhost, pclient: Any, chef: str) -> None:
    modifying = pclient.update_server_engine_attributes(
        ServerName=chef, AttributeName="CHEF_PIVOTAL_KEY", AttributeValue=public_pem())["Server"]
    assert modifying["Status"] == "MODIFYING"
    assert server(pclient, chef)["Status"] == "MODIFYING"
    expect_error(pclient.update_server_engine_attributes, INVALID, ServerName=chef,
                 AttributeName="CHEF_PIVOTAL_KEY")
    expect_error(pclient.start_maintenance, INVALID, ServerName=chef)
    settle(paused)
    assert server(pclient, chef)["Status"] == "HEALTHY"


def test_node_request_in_progress_then_success(paused: Cmhost, pclient: Any, chef: str) -> None:
    token = pclient.associate_node(ServerName=chef, NodeName="web-1",
                                   EngineAttributes=chef_attributes())[
        "NodeAssociationStatusToken"]
    status = pclient.describe_node_association_status(ServerName=chef,
                                                      NodeAssociationStatusToken=token)
    assert status["NodeAssociationStatus"] == "IN_PROGRESS"
    settle(paused)
    status = pclient.describe_node_association_status(ServerName=chef,
                                                      NodeAssociationStatusToken=token)
    assert status["NodeAssociationStatus"] == "SUCCESS"
