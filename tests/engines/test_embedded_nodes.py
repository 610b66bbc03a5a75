"""Nodes of embedded servers: Chef keys that are accepted, then not; Puppet certs, then revoked."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from cmhost.engines import crl, pki
from cmhost.engines.base import (
    DriverContext,
    EngineError,
    EngineFamily,
    EngineMaterial,
    InvalidEngineAttribute,
    Prepared,
    ServerSpec,
)
from cmhost.engines.embedded import EmbeddedDriver

from .conftest import csr_for, make_spec, spki


@pytest.fixture(scope="module")
def node_keys() -> list[rsa.RSAPrivateKey]:
    return [pki.generate_rsa_key() for _ in range(3)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Prepared]:
    unused = tmp_path_factory.mktemp("unused")
    return {
        family: EmbeddedDriver(DriverContext(unused), family).prepare(make_spec(family), {})
        for family in ("Chef", "Puppet")
    }


class Server:
    """A provisioned embedded server in a temporary data directory."""

    def __init__(self, tmp: Path, family: EngineFamily, prepared: Prepared) -> None:
        self.spec: ServerSpec = make_spec(family)
        self.driver = EmbeddedDriver(DriverContext(data_dir=tmp), family)
        self.material = prepared.material
        self.driver.provision(self.spec, self.material)
        self.root = self.driver.server_dir(self.spec)

    def associate(self, node: str, attributes: dict[str, str]) -> list[tuple[str, str]]:
        checked = self.driver.check_node_request(self.spec, "associate", node, attributes)
        return self.driver.associate_node(self.spec, self.material, node, checked)

    def disassociate(self, node: str, attributes: dict[str, str] | None = None) -> None:
        self.driver.disassociate_node(self.spec, self.material, node, attributes or {})

    def healthy(self) -> bool:
        return self.driver.check_health(self.spec, self.material).status == "HEALTHY"


@pytest.fixture
def chef(tmp_path: Path, prepared: dict[str, Prepared]) -> Server:
    return Server(tmp_path, "Chef", prepared["Chef"])


@pytest.fixture
def puppet(tmp_path: Path, prepared: dict[str, Prepared]) -> Server:
    return Server(tmp_path, "Puppet", prepared["Puppet"])


def _sign(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _chef_attributes(key: rsa.RSAPrivateKey) -> dict[str, str]:
    return {"CHEF_ORGANIZATION": "default", "CHEF_NODE_PUBLIC_KEY": pki.public_key_pem(key)}


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


# ------------------------------------------------------------------------------ Chef


def test_chef_node_key_is_accepted_until_disassociated(
    chef: Server, node_keys: list[rsa.RSAPrivateKey]
) -> None:
    key, other = node_keys[0], node_keys[1]
    request = b"GET /organizations/default/nodes/web-1"
    assert chef.associate("web-1", _chef_attributes(key)) == []
    assert chef.driver.node_names(chef.spec) == ["web-1"]
    record = json.loads((chef.root / "nodes" / "web-1.json").read_text())
    assert record["organization"] == "default"
    assert spki(pki.load_public_key(record["public_key"])) == spki(key)

    assert chef.driver.accepts_client(chef.spec, "web-1", request, _sign(key, request))
    assert not chef.driver.accepts_client(chef.spec, "web-1", request, _sign(other, request))
    assert not chef.driver.accepts_client(chef.spec, "web-1", b"other", _sign(key, request))
    assert not chef.driver.accepts_client(chef.spec, "web-2", request, _sign(key, request))
    assert chef.healthy()

    chef.disassociate("web-1", {"CHEF_ORGANIZATION": "default"})
    assert chef.driver.node_names(chef.spec) == []
    assert not chef.driver.accepts_client(chef.spec, "web-1", request, _sign(key, request))
    assert chef.healthy()


def test_chef_reassociation_replaces_the_key(
    chef: Server, node_keys: list[rsa.RSAPrivateKey]
) -> None:
    old, new = node_keys[0], node_keys[1]
    chef.associate("web-1", _chef_attributes(old))
    chef.associate("web-1", _chef_attributes(old))  # a retried step changes nothing
    chef.associate("web-1", _chef_attributes(new))
    data = b"payload"
    assert chef.driver.accepts_client(chef.spec, "web-1", data, _sign(new, data))
    assert not chef.driver.accepts_client(chef.spec, "web-1", data, _sign(old, data))
    assert chef.driver.node_names(chef.spec) == ["web-1"]


def test_chef_disassociating_an_unknown_node_is_a_no_op(chef: Server) -> None:
    chef.disassociate("never-seen")
    chef.disassociate("never-seen")
    assert chef.driver.node_names(chef.spec) == []


def test_node_names_are_sorted_and_keep_unusual_names(
    chef: Server, node_keys: list[rsa.RSAPrivateKey]
) -> None:
    names = ["zeta", "alpha:1", ".hidden", "ノード-1", "b.c_d"]
    for name in names:
        chef.associate(name, _chef_attributes(node_keys[0]))
    assert chef.driver.node_names(chef.spec) == sorted(names)
    assert {p.parent for p in chef.root.rglob("*.json") if p.name != "engine.json"} == {
        chef.root / "nodes"
    }


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ""])
def test_unsafe_node_names_touch_nothing(
    chef: Server, node_keys: list[rsa.RSAPrivateKey], name: str, tmp_path: Path
) -> None:
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(InvalidEngineAttribute, match="NodeName"):
        chef.driver.associate_node(chef.spec, chef.material, name, _chef_attributes(node_keys[0]))
    with pytest.raises(InvalidEngineAttribute, match="NodeName"):
        chef.disassociate(name)
    assert sorted(tmp_path.rglob("*")) == before
    assert not chef.driver.accepts_client(chef.spec, name, b"x", b"y")


def test_associate_validates_attributes_even_without_check(
    chef: Server, node_keys: list[rsa.RSAPrivateKey]
) -> None:
    with pytest.raises(InvalidEngineAttribute, match="CHEF_NODE_PUBLIC_KEY"):
        chef.driver.associate_node(
            chef.spec, chef.material, "web-1", {"CHEF_ORGANIZATION": "default"}
        )
    # The CHEF_AUTOMATE_ spellings work straight away too.
    chef.driver.associate_node(
        chef.spec,
        chef.material,
        "web-1",
        {"CHEF_AUTOMATE_NODE_PUBLIC_KEY": pki.public_key_pem(node_keys[0])},
    )
    assert chef.driver.node_names(chef.spec) == ["web-1"]


def test_associate_needs_a_provisioned_server(
    tmp_path: Path, prepared: dict[str, Prepared], node_keys: list[rsa.RSAPrivateKey]
) -> None:
    driver = EmbeddedDriver(DriverContext(tmp_path), "Chef")
    spec = make_spec("Chef")
    with pytest.raises(EngineError, match="node registry is missing"):
        driver.associate_node(spec, prepared["Chef"].material, "n1", _chef_attributes(node_keys[0]))
    assert driver.node_names(spec) == []


def test_wrong_family_is_refused(tmp_path: Path, prepared: dict[str, Prepared]) -> None:
    driver = EmbeddedDriver(DriverContext(tmp_path), "Chef")
    with pytest.raises(EngineError, match="cannot run a Puppet server"):
        driver.check_node_request(make_spec("Puppet"), "disassociate", "n1", {})


# ---------------------------------------------------------------------------- Puppet


def _ca_public_key(server: Server) -> rsa.RSAPublicKey:
    ca = x509.load_pem_x509_certificate(server.material.public["ca_cert"].encode())
    key = ca.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def _crl(server: Server) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl((server.root / "crl.pem").read_bytes())


def _crl_number(revocations: x509.CertificateRevocationList) -> int:
    return revocations.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_puppet_node_gets_a_certificate_from_the_server_ca(
    puppet: Server, node_keys: list[rsa.RSAPrivateKey]
) -> None:
    key = node_keys[0]
    attributes = puppet.associate("web-1", {"PUPPET_NODE_CSR": csr_for(key, "web-1")})
    assert [name for name, _ in attributes] == ["PUPPET_NODE_CERT"]
    cert_pem = attributes[0][1]
    assert pki.verify_chain(cert_pem, puppet.material.public["ca_cert"])
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web-1"
    assert spki(cert) == spki(key)
    assert puppet.driver.node_names(puppet.spec) == ["web-1"]
    record = json.loads((puppet.root / "nodes" / "web-1.json").read_text())
    assert record["certificate"] == cert_pem and int(record["serial"]) == cert.serial_number
    assert not puppet.driver.is_revoked(puppet.spec, cert_pem)
    assert puppet.healthy()
    assert b"PRIVATE KEY" not in _all_bytes(puppet.root)


def test_puppet_disassociation_revokes_with_a_signed_crl(
    puppet: Server, node_keys: list[rsa.RSAPrivateKey]
) -> None:
    keep = puppet.associate("keep", {"PUPPET_NODE_CSR": csr_for(node_keys[1], "keep")})[0][1]
    cert_pem = puppet.associate("web-1", {"PUPPET_NODE_CSR": csr_for(node_keys[0], "web-1")})[0][1]
    number_before = _crl_number(_crl(puppet))

    puppet.disassociate("web-1")
    assert puppet.driver.is_revoked(puppet.spec, cert_pem)
    assert not puppet.driver.is_revoked(puppet.spec, keep)
    assert puppet.driver.node_names(puppet.spec) == ["keep"]

    revocations = _crl(puppet)
    assert revocations.is_signature_valid(_ca_public_key(puppet))
    ca = x509.load_pem_x509_certificate(puppet.material.public["ca_cert"].encode())
    assert revocations.issuer == ca.subject
    serial = x509.load_pem_x509_certificate(cert_pem.encode()).serial_number
    assert revocations.get_revoked_certificate_by_serial_number(serial) is not None
    assert _crl_number(revocations) > number_before
    assert puppet.healthy()

    puppet.disassociate("web-1")  # idempotent
    assert len(list(_crl(puppet))) == 1


def test_puppet_reassociation(puppet: Server, node_keys: list[rsa.RSAPrivateKey]) -> None:
    csr = csr_for(node_keys[0], "web-1")
    first = puppet.associate("web-1", {"PUPPET_NODE_CSR": csr})[0][1]
    # A retried step with the same CSR gives the same certificate and revokes nothing.
    assert puppet.associate("web-1", {"PUPPET_NODE_CSR": csr})[0][1] == first
    assert not puppet.driver.is_revoked(puppet.spec, first)
    # A new key replaces the certificate; the old one is revoked.
    second = puppet.associate("web-1", {"PUPPET_NODE_CSR": csr_for(node_keys[1], "web-1")})[0][1]
    assert second != first
    assert puppet.driver.is_revoked(puppet.spec, first)
    assert not puppet.driver.is_revoked(puppet.spec, second)
    # Coming back with the first key after that gets a new certificate, not the revoked one.
    third = puppet.associate("web-1", {"PUPPET_NODE_CSR": csr})[0][1]
    assert third != first and not puppet.driver.is_revoked(puppet.spec, third)
    assert puppet.driver.is_revoked(puppet.spec, second)


def test_puppet_refuses_a_csr_for_another_node(
    puppet: Server, node_keys: list[rsa.RSAPrivateKey]
) -> None:
    attributes = {"PUPPET_NODE_CSR": csr_for(node_keys[0], "intruder")}
    with pytest.raises(InvalidEngineAttribute, match="CN 'intruder'"):
        puppet.driver.associate_node(puppet.spec, puppet.material, "web-1", attributes)
    assert puppet.driver.node_names(puppet.spec) == []


def test_is_revoked_ignores_other_cas_and_refuses_garbage(
    puppet: Server, node_keys: list[rsa.RSAPrivateKey], other_ca: tuple[str, str]
) -> None:
    cert_pem = puppet.associate("web-1", {"PUPPET_NODE_CSR": csr_for(node_keys[0], "web-1")})[0][1]
    puppet.disassociate("web-1")
    serial = pki.certificate_serial(cert_pem)
    # A certificate with the same serial from another CA is not this server's to revoke.
    other_key = serialization.load_pem_private_key(other_ca[1].encode(), password=None)
    other_cert = x509.load_pem_x509_certificate(other_ca[0].encode())
    assert isinstance(other_key, rsa.RSAPrivateKey)
    foreign = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web-1")]))
        .issuer_name(other_cert.subject)
        .public_key(node_keys[0].public_key())
        .serial_number(serial)
        .not_valid_before(other_cert.not_valid_before_utc)
        .not_valid_after(other_cert.not_valid_after_utc)
        .sign(other_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    assert not puppet.driver.is_revoked(puppet.spec, foreign)
    with pytest.raises(ValueError):
        puppet.driver.is_revoked(puppet.spec, "not a certificate")
    assert not puppet.driver.accepts_client(puppet.spec, "web-1", b"x", b"y")


def test_health_notices_a_crl_not_signed_by_the_ca(
    puppet: Server, other_ca: tuple[str, str]
) -> None:
    assert (puppet.root / "crl.pem").exists()  # provisioned with an empty CRL
    assert puppet.healthy()
    forged = crl.build_crl(other_ca[0], other_ca[1], [], number=1)
    (puppet.root / "crl.pem").write_text(forged)
    health = puppet.driver.check_health(puppet.spec, puppet.material)
    assert health.status == "UNHEALTHY" and "revocation list" in health.reason
    (puppet.root / "crl.pem").write_text("garbage")
    assert not puppet.healthy()


def test_concurrent_associations_lose_no_revocation(
    puppet: Server, node_keys: list[rsa.RSAPrivateKey]
) -> None:
    nodes = [f"node-{i}" for i in range(6)]
    first: dict[str, str] = {}
    for node in nodes:
        first[node] = puppet.associate(node, {"PUPPET_NODE_CSR": csr_for(node_keys[0], node)})[0][1]
    errors: list[BaseException] = []

    def rekey(node: str) -> None:
        try:
            puppet.associate(node, {"PUPPET_NODE_CSR": csr_for(node_keys[1], node)})
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=rekey, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(puppet.driver.is_revoked(puppet.spec, cert) for cert in first.values())
    assert puppet.driver.node_names(puppet.spec) == nodes


def test_damaged_registry_files_are_reported_not_trusted(
    puppet: Server, node_keys: list[rsa.RSAPrivateKey]
) -> None:
    puppet.associate("web-1", {"PUPPET_NODE_CSR": csr_for(node_keys[0], "web-1")})
    puppet.associate("web-2", {"PUPPET_NODE_CSR": csr_for(node_keys[0], "web-2")})
    puppet.disassociate("web-1")
    good = (puppet.root / "revoked.json").read_text()
    (puppet.root / "revoked.json").write_text('{"crl_number": 1, "revoked": [{"serial": "x"}]}')
    with pytest.raises(EngineError, match=r"revoked\.json\) is damaged"):
        puppet.disassociate("web-2")
    with pytest.raises(EngineError, match=r"revoked\.json\) is damaged"):
        puppet.associate("web-3", {"PUPPET_NODE_CSR": csr_for(node_keys[0], "web-3")})
    (puppet.root / "revoked.json").write_text(good)
    (puppet.root / "nodes" / "web-2.json").write_text("{not json")
    with pytest.raises(EngineError, match="record of node 'web-2' is damaged"):
        puppet.disassociate("web-2")


def test_a_puppet_server_needs_its_ca_key_to_sign(
    tmp_path: Path, prepared: dict[str, Prepared]
) -> None:
    public_only = EngineMaterial(public=dict(prepared["Puppet"].material.public))
    driver = EmbeddedDriver(DriverContext(tmp_path), "Puppet")
    with pytest.raises(EngineError, match="lacks its CA certificate or key"):
        driver.provision(make_spec("Puppet"), public_only)
