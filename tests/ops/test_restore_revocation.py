"""A restore revokes what the CA issued after the backup, and serials never repeat (issue 15
defects 1 and 2), on the embedded engine through boto3."""

from __future__ import annotations

from typing import Any

from tests.ops.helpers import (
    associate,
    attribute,
    backup_now,
    chef_attributes,
    crl_of,
    disassociate,
    events,
    healthy_server,
    load_cert,
    puppet_attributes,
    server,
    settle,
)
from tests.support import Cmhost

CERT = "PUPPET_NODE_CERT"


def _serial(answer: dict[str, Any]) -> int:
    assert answer["NodeAssociationStatus"] == "SUCCESS", answer
    return load_cert(attribute(answer["EngineAttributes"], CERT) or "").serial_number


def _restore(cmhost: Cmhost, client: Any, name: str, backup_id: str) -> None:
    client.restore_server(ServerName=name, BackupId=backup_id)
    settle(cmhost)
    assert server(client, name)["Status"] == "HEALTHY"


def _revoked(cmhost: Cmhost, client: Any, name: str) -> set[int]:
    crl = crl_of(cmhost, server(client, name)["ServerArn"])
    return {entry.serial_number for entry in crl}


def test_a_restore_revokes_later_certificates_and_serials_never_repeat(
        cmhost: Cmhost, client: Any) -> None:
    name = "rv-puppet"
    healthy_server(cmhost, client, name, "Puppet")
    a = _serial(associate(cmhost, client, name, "node-a", puppet_attributes("node-a")))
    backup = backup_now(cmhost, client, name)["BackupId"]
    b = _serial(associate(cmhost, client, name, "node-b", puppet_attributes("node-b")))

    _restore(cmhost, client, name, backup)
    assert _revoked(cmhost, client, name) == {b}  # the backup's CRL (empty) plus node-b's
    assert any(m.startswith("Restore revoked 1 certificate issued after the backup: node-b ")
               and f"{b:#x}" in m for m in events(client, name)), events(client, name)

    c = _serial(associate(cmhost, client, name, "node-c", puppet_attributes("node-c")))
    assert c not in (a, b)
    assert disassociate(cmhost, client, name, "node-c")["NodeAssociationStatus"] == "SUCCESS"
    assert _revoked(cmhost, client, name) == {b, c}  # node-a is untouched

    issued = [a, b, c]
    for round_ in range(3):
        node = f"node-r{round_}"
        issued.append(_serial(associate(cmhost, client, name, node, puppet_attributes(node))))
        _restore(cmhost, client, name, backup)
        # every certificate issued since the backup (node-a's is the only one before)
        assert _revoked(cmhost, client, name) == set(issued) - {a}
        assert disassociate(cmhost, client, name, node)["NodeAssociationStatus"] == "FAILED"
    assert len(set(issued)) == len(issued)
    assert a not in _revoked(cmhost, client, name)


def test_a_server_made_from_a_backup_revokes_what_its_ca_issued_since(
        cmhost: Cmhost, client: Any) -> None:
    healthy_server(cmhost, client, "rv-origin", "Puppet")
    backup = backup_now(cmhost, client, "rv-origin")["BackupId"]
    later = _serial(associate(cmhost, client, "rv-origin", "late", puppet_attributes("late")))
    healthy_server(cmhost, client, "rv-copy", "Puppet", BackupId=backup)
    assert _revoked(cmhost, client, "rv-copy") == {later}
    assert any("Restore revoked 1 certificate" in m for m in events(client, "rv-copy"))
    fresh = _serial(associate(cmhost, client, "rv-copy", "fresh", puppet_attributes("fresh")))
    assert fresh != later


def test_a_chef_client_made_after_the_backup_is_gone_after_the_restore(
        cmhost: Cmhost, client: Any) -> None:
    name = "rv-chef"
    healthy_server(cmhost, client, name)
    kept = associate(cmhost, client, name, "kept", chef_attributes())
    assert kept["NodeAssociationStatus"] == "SUCCESS"
    backup = backup_now(cmhost, client, name)["BackupId"]
    later = associate(cmhost, client, name, "later", chef_attributes())
    assert later["NodeAssociationStatus"] == "SUCCESS"
    _restore(cmhost, client, name, backup)
    # its key went with the node registry of the moment: the server does not know it
    assert disassociate(cmhost, client, name, "later")["NodeAssociationStatus"] == "FAILED"
    assert disassociate(cmhost, client, name, "kept")["NodeAssociationStatus"] == "SUCCESS"
