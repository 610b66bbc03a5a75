"""awscli 1.42.18 drives each backup, restore, maintenance, node and engine attribute
operation once against cmhost."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.ops.helpers import (
    csr_pem,
    expect_error,
    healthy_server,
    quiet_windows,
    server,
    settle,
)
from tests.support import SERVER_DEFAULTS, Cmhost
from tests.test_awscli import AWS, aws

NAME = "cli-ops"


@pytest.mark.skipif(not __import__("pathlib").Path(AWS).exists(),
                    reason="awscli is installed by `make test`")
def test_awscli_drives_every_issue_3_operation(cmhost: Cmhost, client: Any) -> None:
    healthy_server(cmhost, client, NAME, "Puppet")
    attrs = json.dumps([{"Name": "PUPPET_NODE_CSR", "Value": csr_pem("cli-node")}])
    token = aws(cmhost, "associate-node", "--server-name", NAME, "--node-name", "cli-node",
                "--engine-attributes", attrs)["NodeAssociationStatusToken"]
    settle(cmhost)  # so that `wait` succeeds at its first poll
    aws(cmhost, "wait", "node-associated", "--server-name", NAME,
        "--node-association-status-token", token)
    status = aws(cmhost, "describe-node-association-status", "--server-name", NAME,
                 "--node-association-status-token", token)
    assert status["NodeAssociationStatus"] == "SUCCESS"
    assert "BEGIN CERTIFICATE" in status["EngineAttributes"][0]["Value"]

    exported = aws(cmhost, "export-server-engine-attribute", "--server-name", NAME,
                   "--export-attribute-name", "Userdata")
    assert NAME in base64.b64decode(exported["EngineAttribute"]["Value"]).decode()

    updated = aws(cmhost, "update-server-engine-attributes", "--server-name", NAME,
                  "--attribute-name", "PUPPET_ADMIN_PASSWORD")["Server"]
    assert updated["Status"] == "MODIFYING"
    assert any(a["Name"] == "PUPPET_ADMIN_PASSWORD" for a in updated["EngineAttributes"])
    settle(cmhost)

    backup = aws(cmhost, "create-backup", "--server-name", NAME,
                 "--description", "from the cli")["Backup"]
    assert (backup["Status"], backup["Description"]) == ("IN_PROGRESS", "from the cli")
    settle(cmhost)
    listed = aws(cmhost, "describe-backups", "--server-name", NAME)["Backups"]
    assert [(b["BackupId"], b["Status"]) for b in listed] == [(backup["BackupId"], "OK")]

    maintained = aws(cmhost, "start-maintenance", "--server-name", NAME)["Server"]
    assert maintained["Status"] == "UNDER_MAINTENANCE"
    settle(cmhost)
    assert server(client, NAME)["MaintenanceStatus"] == "SUCCESS"

    token = aws(cmhost, "disassociate-node", "--server-name", NAME, "--node-name",
                "cli-node")["NodeAssociationStatusToken"]
    settle(cmhost)
    assert client.describe_node_association_status(
        ServerName=NAME, NodeAssociationStatusToken=token)["NodeAssociationStatus"] == "SUCCESS"

    restoring = aws(cmhost, "restore-server", "--server-name", NAME, "--backup-id",
                    backup["BackupId"], "--instance-type", "m5.xlarge")["Server"]
    assert restoring["Status"] == "RESTORING"
    settle(cmhost)
    assert server(client, NAME)["InstanceType"] == "m5.xlarge"

    copy = aws(cmhost, "create-server", "--server-name", "cli-ops-copy", "--engine", "Puppet",
               "--backup-id", backup["BackupId"], "--instance-type", "m5.large",
               "--instance-profile-arn", SERVER_DEFAULTS["InstanceProfileArn"],
               "--service-role-arn", SERVER_DEFAULTS["ServiceRoleArn"],
               "--disable-automated-backup", "--preferred-maintenance-window",
               quiet_windows(cmhost)["PreferredMaintenanceWindow"])["Server"]
    assert copy["Status"] == "CREATING"
    cmhost.advance(61)
    assert server(client, "cli-ops-copy")["Status"] == "HEALTHY"

    assert aws(cmhost, "delete-backup", "--backup-id", backup["BackupId"]) is None
    settle(cmhost)
    expect_error(client.describe_backups, "ResourceNotFoundException",
                 BackupId=backup["BackupId"])
