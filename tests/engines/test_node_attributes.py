"""AssociateNode / DisassociateNode engine attributes: what each engine accepts and refuses."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cmhost.engines import pki
from cmhost.engines.base import InvalidEngineAttribute
from cmhost.engines.node_attributes import check_node_attributes, node_name_problem

from .conftest import csr_for


def _secret_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if "-----" not in line and len(line) > 16]


# ------------------------------------------------------------------------------ Chef


@pytest.mark.parametrize(
    ("org_name", "key_name"),
    [
        ("CHEF_ORGANIZATION", "CHEF_NODE_PUBLIC_KEY"),
        ("CHEF_AUTOMATE_ORGANIZATION", "CHEF_AUTOMATE_NODE_PUBLIC_KEY"),
    ],
)
def test_chef_associate_accepts_both_spellings(
    rsa_key: rsa.RSAPrivateKey, org_name: str, key_name: str
) -> None:
    pem = pki.public_key_pem(rsa_key)
    checked = check_node_attributes(
        "Chef", "Chef", "associate", "web-1.example_a:b", {org_name: "default", key_name: pem}
    )
    assert checked == {"CHEF_ORGANIZATION": "default", "CHEF_NODE_PUBLIC_KEY": pem}


def test_chef_associate_defaults_the_organization(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = pki.public_key_pem(rsa_key)
    checked = check_node_attributes(
        "Chef", "ChefAutomate", "associate", "n1", {"CHEF_AUTOMATE_NODE_PUBLIC_KEY": pem}
    )
    assert checked["CHEF_ORGANIZATION"] == "default"


def test_chef_associate_needs_a_public_key() -> None:
    with pytest.raises(InvalidEngineAttribute, match="needs CHEF_NODE_PUBLIC_KEY"):
        check_node_attributes("Chef", "Chef", "associate", "n1", {"CHEF_ORGANIZATION": "default"})


def test_chef_associate_refuses_another_organization(rsa_key: rsa.RSAPrivateKey) -> None:
    attributes = {"CHEF_ORGANIZATION": "acme", "CHEF_NODE_PUBLIC_KEY": pki.public_key_pem(rsa_key)}
    with pytest.raises(InvalidEngineAttribute, match="must be 'default'"):
        check_node_attributes("Chef", "Chef", "associate", "n1", attributes)


def test_chef_associate_refuses_a_private_key_without_echoing_it(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    private = pki.private_key_pem(rsa_key)
    with pytest.raises(InvalidEngineAttribute) as caught:
        check_node_attributes("Chef", "Chef", "associate", "n1", {"CHEF_NODE_PUBLIC_KEY": private})
    message = str(caught.value)
    assert "CHEF_NODE_PUBLIC_KEY" in message and "private key" in message
    assert not any(line in message for line in _secret_lines(private))


@pytest.mark.parametrize("value", ["not a key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END"])
def test_chef_associate_refuses_garbage_keys(value: str) -> None:
    with pytest.raises(InvalidEngineAttribute, match="CHEF_NODE_PUBLIC_KEY"):
        check_node_attributes("Chef", "Chef", "associate", "n1", {"CHEF_NODE_PUBLIC_KEY": value})


def test_chef_associate_refuses_small_and_non_rsa_keys() -> None:
    small = pki.public_key_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with pytest.raises(InvalidEngineAttribute, match="2048"):
        check_node_attributes("Chef", "Chef", "associate", "n1", {"CHEF_NODE_PUBLIC_KEY": small})
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(InvalidEngineAttribute, match="RSA"):
        check_node_attributes("Chef", "Chef", "associate", "n1", {"CHEF_NODE_PUBLIC_KEY": ec_pem})


def test_chef_refuses_unknown_repeated_and_empty_attributes(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = pki.public_key_pem(rsa_key)
    with pytest.raises(InvalidEngineAttribute, match="'PUPPET_NODE_CSR' is not accepted"):
        check_node_attributes(
            "Chef", "Chef", "associate", "n1", {"CHEF_NODE_PUBLIC_KEY": pem, "PUPPET_NODE_CSR": "x"}
        )
    with pytest.raises(InvalidEngineAttribute, match="more than once"):
        check_node_attributes(
            "Chef",
            "Chef",
            "associate",
            "n1",
            {"CHEF_NODE_PUBLIC_KEY": pem, "CHEF_AUTOMATE_NODE_PUBLIC_KEY": pem},
        )
    with pytest.raises(InvalidEngineAttribute, match="needs a Value"):
        check_node_attributes("Chef", "Chef", "associate", "n1", {"CHEF_NODE_PUBLIC_KEY": " "})


def test_chef_disassociate_takes_the_organization_and_maybe_the_key(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    assert check_node_attributes("Chef", "Chef", "disassociate", "n1", {}) == {
        "CHEF_ORGANIZATION": "default"
    }
    assert check_node_attributes(
        "Chef", "Chef", "disassociate", "n1", {"CHEF_AUTOMATE_ORGANIZATION": "default"}
    ) == {"CHEF_ORGANIZATION": "default"}
    # AWS's disassociate-node example sends the node's key along: checked, then left out.
    for name in ("CHEF_NODE_PUBLIC_KEY", "CHEF_AUTOMATE_NODE_PUBLIC_KEY"):
        assert check_node_attributes(
            "Chef", "Chef", "disassociate", "n1",
            {"CHEF_ORGANIZATION": "default", name: pki.public_key_pem(rsa_key)},
        ) == {"CHEF_ORGANIZATION": "default"}
    with pytest.raises(InvalidEngineAttribute, match="must be the node's RSA public key"):
        check_node_attributes(
            "Chef", "Chef", "disassociate", "n1", {"CHEF_NODE_PUBLIC_KEY": "Public_key_contents"}
        )
    with pytest.raises(InvalidEngineAttribute, match="not accepted on DisassociateNode"):
        check_node_attributes("Chef", "Chef", "disassociate", "n1", {"PUPPET_NODE_CSR": "x"})
    with pytest.raises(InvalidEngineAttribute, match="must be 'default'"):
        check_node_attributes("Chef", "Chef", "disassociate", "n1", {"CHEF_ORGANIZATION": "x"})


# ---------------------------------------------------------------------------- Puppet


def test_puppet_associate_accepts_a_csr_for_the_node(rsa_key: rsa.RSAPrivateKey) -> None:
    csr = csr_for(rsa_key, "web-1")
    checked = check_node_attributes(
        "Puppet", "Puppet", "associate", "web-1", {"PUPPET_NODE_CSR": csr}
    )
    assert checked == {"PUPPET_NODE_CSR": csr}


def test_puppet_associate_refuses_a_csr_for_another_node(rsa_key: rsa.RSAPrivateKey) -> None:
    csr = csr_for(rsa_key, "intruder")
    with pytest.raises(InvalidEngineAttribute, match="expected 'web-1'"):
        check_node_attributes("Puppet", "Puppet", "associate", "web-1", {"PUPPET_NODE_CSR": csr})


def test_puppet_associate_refuses_a_tampered_csr(rsa_key: rsa.RSAPrivateKey) -> None:
    csr = x509.load_pem_x509_csr(csr_for(rsa_key, "web-1").encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF  # inside the signature
    body = base64.encodebytes(bytes(der)).decode()
    tampered = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(InvalidEngineAttribute, match="signature"):
        check_node_attributes(
            "Puppet", "Puppet", "associate", "web-1", {"PUPPET_NODE_CSR": tampered}
        )


def test_puppet_associate_needs_a_csr_and_refuses_garbage() -> None:
    with pytest.raises(InvalidEngineAttribute, match="needs PUPPET_NODE_CSR"):
        check_node_attributes("Puppet", "Puppet", "associate", "web-1", {})
    with pytest.raises(InvalidEngineAttribute, match="not a PEM CSR"):
        check_node_attributes(
            "Puppet", "Puppet", "associate", "web-1", {"PUPPET_NODE_CSR": "garbage"}
        )
    with pytest.raises(InvalidEngineAttribute, match="CHEF_NODE_PUBLIC_KEY"):
        check_node_attributes(
            "Puppet", "Puppet", "associate", "web-1", {"CHEF_NODE_PUBLIC_KEY": "x"}
        )


def test_puppet_disassociate_takes_no_attributes() -> None:
    assert check_node_attributes("Puppet", "Puppet", "disassociate", "web-1", {}) == {}
    with pytest.raises(InvalidEngineAttribute, match="accepted: none"):
        check_node_attributes(
            "Puppet", "Puppet", "disassociate", "web-1", {"CHEF_ORGANIZATION": "default"}
        )


# ------------------------------------------------------------------------ node names


@pytest.mark.parametrize(
    "name", ["web-1", "a.b_c:d", "ünïcode-ノード", "x" * 200, "...", ".hidden"]
)
def test_node_names_the_api_allows(name: str) -> None:
    assert node_name_problem(name) == ""


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../etc", "a/b", "a\\b", "a b", "a\x00b", "é" * 101]
)
def test_node_names_that_are_refused(name: str) -> None:
    assert node_name_problem(name)
    with pytest.raises(InvalidEngineAttribute, match="NodeName"):
        check_node_attributes("Chef", "Chef", "disassociate", name, {})
