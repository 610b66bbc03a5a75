"""An UNHEALTHY server (its engine's CRL damaged on disk): backups, restores, maintenance and
engine attribute updates are still allowed; nodes are not."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ops.helpers import (
    backup_now,
    expect_error,
    healthy_server,
    puppet_attributes,
    server,
    server_id,
    settle,
)
from tests.support import Cmhost

NAME = "uh-puppet"


def _break(cmhost: Cmhost, client: Any) -> dict[str, Any]:
    """Damage the engine's CRL, then let a health check see it (an attribute update runs one)."""
    crl = cmhost.data_dir / "engines" / server_id(server(client, NAME)["ServerArn"]) / "crl.pem"
    crl.write_text("-----BEGIN X509 CRL-----\ngarbage\n-----END X509 CRL-----\n")
    client.update_server_engine_attributes(ServerName=NAME,
                                           AttributeName="PUPPET_ADMIN_PASSWORD")
    settle(cmhost)
    broken = server(client, NAME)
    assert broken["Status"] == "UNHEALTHY", broken
    assert broken.get("StatusReason")
    return broken


@pytest.fixture(scope="module")
def good_backup(cmhost: Cmhost, client: Any) -> str:
    healthy_server(cmhost, client, NAME, "Puppet")
    return str(backup_now(cmhost, client, NAME)["BackupId"])


def test_unhealthy_server_can_be_backed_up_and_restored(cmhost: Cmhost, client: Any,
                                                        good_backup: str) -> None:
    _break(cmhost, client)
    expect_error(client.associate_node, "InvalidStateException", ServerName=NAME,
                 NodeName="n1", EngineAttributes=puppet_attributes("n1"))
    expect_error(client.disassociate_node, "InvalidStateException", ServerName=NAME,
                 NodeName="n1")
    assert client.export_server_engine_attribute(
        ServerName=NAME, ExportAttributeName="Userdata")["EngineAttribute"]["Value"]

    backup = client.create_backup(ServerName=NAME)["Backup"]
    settle(cmhost)
    assert client.describe_backups(BackupId=backup["BackupId"])["Backups"][0]["Status"] == "OK"
    assert server(client, NAME)["Status"] == "UNHEALTHY"

    client.restore_server(ServerName=NAME, BackupId=good_backup)
    settle(cmhost)
    restored = server(client, NAME)
    assert restored["Status"] == "HEALTHY"
    assert "StatusReason" not in restored


def test_maintenance_repairs_an_unhealthy_server(cmhost: Cmhost, client: Any,
                                                 good_backup: str) -> None:
    _break(cmhost, client)
    assert client.start_maintenance(ServerName=NAME)["Server"]["Status"] == "UNDER_MAINTENANCE"
    settle(cmhost)
    after = server(client, NAME)
    assert (after["Status"], after["MaintenanceStatus"]) == ("HEALTHY", "SUCCESS")
