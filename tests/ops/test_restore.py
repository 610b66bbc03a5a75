"""RestoreServer and CreateServer with BackupId: the engine (CA, node registry) comes back
from the backup; a damaged artifact is refused without harming the server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ops.helpers import (
    artifact_path,
    associate,
    attribute,
    backup_now,
    crl_of,
    disassociate,
    events,
    expect_error,
    healthy_server,
    load_cert,
    puppet_attributes,
    quiet_windows,
    server,
    settle,
)
from tests.support import Cmhost, create_server

CA = "PUPPET_API_CA_CERT"


@pytest.fixture(scope="module")
def chef(cmhost: Cmhost, client: Any) -> dict[str, Any]:
    """A Chef server (m5.large, key pair old-key) and a backup of it."""
    healthy_server(cmhost, client, "rs-chef", KeyPair="old-key")
    backup = backup_now(cmhost, client, "rs-chef")
    assert (backup["InstanceType"], backup["KeyPair"]) == ("m5.large", "old-key")
    return backup


def test_restore_keeps_the_endpoint_and_applies_overrides(cmhost: Cmhost, client: Any,
                                                          chef: dict[str, Any]) -> None:
    before = server(client, "rs-chef")
    restoring = client.restore_server(ServerName="rs-chef", BackupId=chef["BackupId"],
                                      InstanceType="m5.xlarge", KeyPair="new-key")["Server"]
    assert restoring["Status"] == "RESTORING"
    settle(cmhost)
    after = server(client, "rs-chef")
    assert after["Status"] == "HEALTHY"
    assert (after["Endpoint"], after["ServerArn"]) == (before["Endpoint"], before["ServerArn"])
    assert (after["InstanceType"], after["KeyPair"]) == ("m5.xlarge", "new-key")
    assert any(chef["BackupId"] in m and "restored" in m.lower() for m in events(
        client, "rs-chef"))


def test_restore_without_instance_type_uses_the_backups(cmhost: Cmhost, client: Any,
                                                        chef: dict[str, Any]) -> None:
    client.restore_server(ServerName="rs-chef", BackupId=chef["BackupId"],
                          InstanceType="m5.2xlarge")
    settle(cmhost)
    assert server(client, "rs-chef")["InstanceType"] == "m5.2xlarge"
    # "If you do not specify this parameter, RestoreServer uses the instance type from the
    # specified backup."
    client.restore_server(ServerName="rs-chef", BackupId=chef["BackupId"])
    settle(cmhost)
    again = server(client, "rs-chef")
    assert again["Status"] == "HEALTHY"
    assert again["InstanceType"] == chef["InstanceType"] == "m5.large"


def test_restore_errors(cmhost: Cmhost, client: Any) -> None:
    healthy_server(cmhost, client, "rs-err")
    expect_error(client.restore_server, "ResourceNotFoundException", ServerName="rs-err",
                 BackupId="rs-err-20200101000000000")
    backup = backup_now(cmhost, client, "rs-err")
    expect_error(client.restore_server, "ResourceNotFoundException", ServerName="no-such",
                 BackupId=backup["BackupId"])
    healthy_server(cmhost, client, "rs-err-puppet", "Puppet")
    expect_error(client.restore_server, "ValidationException", ServerName="rs-err-puppet",
                 BackupId=backup["BackupId"])
    assert server(client, "rs-err-puppet")["Status"] == "HEALTHY"


@pytest.fixture(scope="module")
def puppet(cmhost: Cmhost, client: Any) -> dict[str, Any]:
    """A Puppet server backed up with node A only, then given node B too."""
    healthy_server(cmhost, client, "rs-puppet", "Puppet")
    a = associate(cmhost, client, "rs-puppet", "node-a", puppet_attributes("node-a"))
    assert a["NodeAssociationStatus"] == "SUCCESS"
    backup = backup_now(cmhost, client, "rs-puppet")
    b = associate(cmhost, client, "rs-puppet", "node-b", puppet_attributes("node-b"))
    assert b["NodeAssociationStatus"] == "SUCCESS"
    return {"ca": attribute(server(client, "rs-puppet")["EngineAttributes"], CA),
            "cert_a": attribute(a["EngineAttributes"], "PUPPET_NODE_CERT"),
            "backup": backup["BackupId"]}


def test_restore_brings_back_the_backed_up_node_registry(cmhost: Cmhost, client: Any,
                                                          puppet: dict[str, Any]) -> None:
    client.restore_server(ServerName="rs-puppet", BackupId=puppet["backup"])
    settle(cmhost)
    restored = server(client, "rs-puppet")
    assert restored["Status"] == "HEALTHY"
    assert attribute(restored["EngineAttributes"], CA) == puppet["ca"]

    # node B was associated after the backup: the restored server does not know it
    b = disassociate(cmhost, client, "rs-puppet", "node-b")
    assert b["NodeAssociationStatus"] == "FAILED"
    a = disassociate(cmhost, client, "rs-puppet", "node-a")
    assert a["NodeAssociationStatus"] == "SUCCESS"
    crl = crl_of(cmhost, restored["ServerArn"])
    serial = load_cert(puppet["cert_a"]).serial_number
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None


def test_create_server_from_a_backup(cmhost: Cmhost, client: Any,
                                     puppet: dict[str, Any]) -> None:
    created = healthy_server(cmhost, client, "rs-copy", "Puppet", BackupId=puppet["backup"])
    copy = server(client, "rs-copy")
    assert copy["ServerArn"] != created.get("BackupArn")
    assert attribute(copy["EngineAttributes"], CA) == puppet["ca"]
    assert copy["Endpoint"].startswith("rs-copy-")
    assert disassociate(cmhost, client, "rs-copy", "node-b")["NodeAssociationStatus"] == "FAILED"
    assert disassociate(cmhost, client, "rs-copy", "node-a")["NodeAssociationStatus"] == "SUCCESS"
    # a new node gets a certificate of the same CA
    c = associate(cmhost, client, "rs-copy", "node-c", puppet_attributes("node-c"))
    cert = load_cert(attribute(c["EngineAttributes"], "PUPPET_NODE_CERT") or "")
    assert cert.issuer == load_cert(puppet["ca"]).subject


def test_a_corrupted_artifact_is_refused(cmhost: Cmhost, client: Any) -> None:
    healthy_server(cmhost, client, "rs-bad")
    backup = backup_now(cmhost, client, "rs-bad")
    path = artifact_path(cmhost, backup["BackupId"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    client.restore_server(ServerName="rs-bad", BackupId=backup["BackupId"])
    settle(cmhost)
    after = server(client, "rs-bad")
    assert after["Status"] == "HEALTHY"
    assert backup["BackupId"] in after["StatusReason"]
    assert "fail" in after["StatusReason"].lower()
    assert any(backup["BackupId"] in m and "fail" in m.lower() for m in events(client, "rs-bad"))

    # still usable
    again = backup_now(cmhost, client, "rs-bad")
    assert again["Status"] == "OK"
    assert server(client, "rs-bad")["Status"] == "HEALTHY"

    # a new server cannot be made from it either
    create_server(client, "rs-bad-copy", BackupId=backup["BackupId"], **quiet_windows(cmhost))
    cmhost.advance(61)
    failed = server(client, "rs-bad-copy")
    assert failed["Status"] == "FAILED"
    assert backup["BackupId"] in failed["StatusReason"]
