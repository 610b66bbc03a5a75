"""AssociateNode, DisassociateNode, DescribeNodeAssociationStatus and the node_associated
waiter, on Chef (client keys) and Puppet (certificates signed by the server's CA, a CRL)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import WaiterError
from cryptography.hazmat.primitives import serialization

from tests.ops.helpers import (
    assert_issued_by,
    associate,
    attribute,
    chef_attributes,
    common_name,
    crl_of,
    csr_pem,
    disassociate,
    expect_error,
    healthy_server,
    load_cert,
    public_pem,
    puppet_attributes,
    rsa_key,
    server,
    settle,
)
from tests.support import Cmhost

CHEF = "nd-chef"
PUPPET = "nd-puppet"
ORG = [{"Name": "CHEF_ORGANIZATION", "Value": "default"}]
WAIT = {"Delay": 1, "MaxAttempts": 30}


@pytest.fixture(scope="module")
def servers(cmhost: Cmhost, client: Any) -> dict[str, dict[str, Any]]:
    healthy_server(cmhost, client, CHEF)
    healthy_server(cmhost, client, PUPPET, "Puppet")
    return {CHEF: server(client, CHEF), PUPPET: server(client, PUPPET)}


def _wait(client: Any, name: str, token: str) -> dict[str, Any]:
    client.get_waiter("node_associated").wait(ServerName=name, NodeAssociationStatusToken=token,
                                              WaiterConfig=WAIT)
    answer: dict[str, Any] = client.describe_node_association_status(
        ServerName=name, NodeAssociationStatusToken=token)
    return answer


def test_chef_node_associates_and_disassociates(client: Any, servers: Any) -> None:
    token = client.associate_node(ServerName=CHEF, NodeName="web-1",
                                  EngineAttributes=chef_attributes())[
        "NodeAssociationStatusToken"]
    assert isinstance(token, str) and len(token) >= 16
    done = _wait(client, CHEF, token)
    assert done["NodeAssociationStatus"] == "SUCCESS"
    assert not done.get("EngineAttributes")

    token = client.disassociate_node(ServerName=CHEF, NodeName="web-1",
                                     EngineAttributes=ORG)["NodeAssociationStatusToken"]
    assert _wait(client, CHEF, token)["NodeAssociationStatus"] == "SUCCESS"
    # the first request's status is still there
    assert client.describe_node_association_status(
        ServerName=CHEF, NodeAssociationStatusToken=token)["NodeAssociationStatus"] == "SUCCESS"


def test_chef_automate_attribute_spellings(cmhost: Cmhost, client: Any, servers: Any) -> None:
    attrs = chef_attributes("CHEF_AUTOMATE_ORGANIZATION", "CHEF_AUTOMATE_NODE_PUBLIC_KEY")
    assert associate(cmhost, client, CHEF, "web-2", attrs)["NodeAssociationStatus"] == "SUCCESS"
    gone = disassociate(cmhost, client, CHEF, "web-2",
                        [{"Name": "CHEF_AUTOMATE_ORGANIZATION", "Value": "default"}])
    assert gone["NodeAssociationStatus"] == "SUCCESS"


def test_disassociating_an_unknown_node_fails(cmhost: Cmhost, client: Any,
                                              servers: Any) -> None:
    token = client.disassociate_node(ServerName=CHEF, NodeName="never-seen",
                                     EngineAttributes=ORG)["NodeAssociationStatusToken"]
    settle(cmhost)
    with pytest.raises(WaiterError):
        client.get_waiter("node_associated").wait(
            ServerName=CHEF, NodeAssociationStatusToken=token, WaiterConfig=WAIT)
    assert client.describe_node_association_status(
        ServerName=CHEF, NodeAssociationStatusToken=token)["NodeAssociationStatus"] == "FAILED"


BAD_REQUESTS: dict[str, tuple[str, str, list[dict[str, str]]]] = {
    "chef-malformed-key": (CHEF, "n1", [*ORG, {"Name": "CHEF_NODE_PUBLIC_KEY",
                                               "Value": "-----BEGIN PUBLIC KEY-----\nnope\n"}]),
    "chef-not-a-key": (CHEF, "n1", [*ORG, {"Name": "CHEF_NODE_PUBLIC_KEY",
                                                    "Value": "not a key at all"}]),
    "chef-missing-key": (CHEF, "n1", ORG),
    "chef-other-organization": (CHEF, "n1", [{"Name": "CHEF_ORGANIZATION", "Value": "acme"},
                                             {"Name": "CHEF_NODE_PUBLIC_KEY",
                                              "Value": public_pem()}]),
    "chef-unknown-attribute": (CHEF, "n1", [*chef_attributes(),
                                            {"Name": "PUPPET_NODE_CSR", "Value": "x"}]),
    "chef-bad-node-name": (CHEF, "bad name!", chef_attributes()),
    "puppet-malformed-csr": (PUPPET, "n1", [{"Name": "PUPPET_NODE_CSR",
                                             "Value": "-----BEGIN CERTIFICATE REQUEST-----\n"}]),
    "puppet-csr-of-another-node": (PUPPET, "n1", puppet_attributes("someone-else")),
    "puppet-missing-csr": (PUPPET, "n1", []),
    "puppet-chef-attribute": (PUPPET, "n1", [*puppet_attributes("n1"), *ORG]),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_association_requests(client: Any, servers: Any, case: str) -> None:
    name, node, attrs = BAD_REQUESTS[case]
    error = expect_error(client.associate_node, "ValidationException", ServerName=name,
                         NodeName=node, EngineAttributes=attrs)
    for attr in attrs:  # keys and CSRs are never echoed
        lines = [ln for ln in attr["Value"].splitlines() if len(ln) > 8 and "-----" not in ln]
        assert not any(ln in error["Message"] for ln in lines), error["Message"]


def test_puppet_certificate_chains_to_the_server_ca(cmhost: Cmhost, client: Any,
                                                    servers: Any) -> None:
    key = rsa_key()
    token = client.associate_node(
        ServerName=PUPPET, NodeName="db-1",
        EngineAttributes=[{"Name": "PUPPET_NODE_CSR", "Value": csr_pem("db-1", key)}])[
        "NodeAssociationStatusToken"]
    settle(cmhost)
    done = _wait(client, PUPPET, token)
    assert done["NodeAssociationStatus"] == "SUCCESS"
    pem = attribute(done["EngineAttributes"], "PUPPET_NODE_CERT")
    assert pem and "BEGIN CERTIFICATE" in pem
    cert = load_cert(pem)
    ca = load_cert(attribute(servers[PUPPET]["EngineAttributes"], "PUPPET_API_CA_CERT") or "")
    assert_issued_by(cert, ca)
    assert common_name(cert) == "db-1"
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(serialization.Encoding.DER, spki) == \
        key.public_key().public_bytes(serialization.Encoding.DER, spki)

    # disassociated: the certificate is revoked by a CRL the CA signed
    assert disassociate(cmhost, client, PUPPET, "db-1")["NodeAssociationStatus"] == "SUCCESS"
    crl = crl_of(cmhost, servers[PUPPET]["ServerArn"])
    assert crl.issuer == ca.subject
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None


def test_describe_node_association_status_errors(client: Any, servers: Any) -> None:
    token = client.associate_node(ServerName=CHEF, NodeName="web-3",
                                  EngineAttributes=chef_attributes())[
        "NodeAssociationStatusToken"]
    expect_error(client.describe_node_association_status, "ResourceNotFoundException",
                 ServerName=CHEF, NodeAssociationStatusToken="AAAAunknowntokenAAAA")
    expect_error(client.describe_node_association_status, "ResourceNotFoundException",
                 ServerName=PUPPET, NodeAssociationStatusToken=token)
    expect_error(client.describe_node_association_status, "ResourceNotFoundException",
                 ServerName="no-such", NodeAssociationStatusToken=token)


def test_node_operations_on_unknown_server(client: Any) -> None:
    expect_error(client.associate_node, "ResourceNotFoundException", ServerName="no-such",
                 NodeName="n1", EngineAttributes=chef_attributes())
    expect_error(client.disassociate_node, "ResourceNotFoundException", ServerName="no-such",
                 NodeName="n1", EngineAttributes=ORG)
