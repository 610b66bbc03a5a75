"""Maintenance of embedded servers: a restart from material, certificate renewal, Chef 12 -> 2."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cmhost.engines import pki
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

from .conftest import csr_for, make_spec


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Prepared]:
    unused = tmp_path_factory.mktemp("unused")
    return {
        family: EmbeddedDriver(DriverContext(unused), family).prepare(make_spec(family), {})
        for family in ("Chef", "Puppet")
    }


def _server(
    tmp: Path, family: EngineFamily, material: EngineMaterial, **spec_values: str
) -> tuple[EmbeddedDriver, ServerSpec]:
    driver = EmbeddedDriver(DriverContext(tmp), family)
    spec = make_spec(family, **spec_values)
    driver.provision(spec, material)
    return driver, spec


def _engine_json(driver: EmbeddedDriver, spec: ServerSpec) -> dict[str, str]:
    data: dict[str, str] = json.loads((driver.server_dir(spec) / "engine.json").read_text())
    return data


def _expiring(material: EngineMaterial, host: str, days: int) -> EngineMaterial:
    """The material with a server certificate that ends in `days` days."""
    ca_cert = x509.load_pem_x509_certificate(material.public["ca_cert"].encode())
    ca_key = serialization.load_pem_private_key(material.secrets["ca_key"].encode(), None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    server_key = serialization.load_pem_private_key(material.secrets["server_key"].encode(), None)
    assert isinstance(server_key, rsa.RSAPrivateKey)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=365))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    public = dict(material.public)
    public["server_cert"] = cert.public_bytes(serialization.Encoding.PEM).decode()
    return EngineMaterial(public=public, secrets=dict(material.secrets))


def test_chef_12_major_upgrade_goes_to_2(tmp_path: Path, prepared: dict[str, Prepared]) -> None:
    material = prepared["Chef"].material
    driver, spec = _server(tmp_path, "Chef", material)
    assert _engine_json(driver, spec)["version"] == "12.11.1"
    maintained = driver.maintain(spec, material, major_upgrade=True)
    assert maintained.engine_version == "2"
    assert maintained.material == material
    assert _engine_json(driver, spec)["version"] == "2"
    assert driver.check_health(spec, maintained.material).status == "HEALTHY"


@pytest.mark.parametrize(
    ("family", "version"), [("Chef", "2"), ("Chef", "2019.11"), ("Puppet", "2019-08")]
)
def test_major_upgrade_applies_only_to_chef_12(
    tmp_path: Path, prepared: dict[str, Prepared], family: EngineFamily, version: str
) -> None:
    material = prepared[family].material
    driver, spec = _server(tmp_path, family, material, engine_version=version)
    before = (driver.server_dir(spec) / "engine.json").read_bytes()
    with pytest.raises(InvalidEngineAttribute, match="only to Chef 12 servers"):
        driver.maintain(spec, material, major_upgrade=True)
    assert (driver.server_dir(spec) / "engine.json").read_bytes() == before


@pytest.mark.parametrize("family", ["Chef", "Puppet"])
def test_maintenance_restarts_the_engine_from_its_material(
    tmp_path: Path, prepared: dict[str, Prepared], family: EngineFamily
) -> None:
    material = prepared[family].material
    driver, spec = _server(tmp_path, family, material)
    root = driver.server_dir(spec)
    (root / "server.pem").unlink()
    (root / "ca.pem").write_text("damaged")
    assert driver.check_health(spec, material).status == "UNHEALTHY"
    maintained = driver.maintain(spec, material, major_upgrade=False)
    assert maintained.engine_version is None
    assert maintained.material == material  # a certificate good for years is kept
    assert driver.check_health(spec, material).status == "HEALTHY"
    assert _engine_json(driver, spec)["version"] == spec.engine_version


def test_maintenance_renews_a_server_certificate_close_to_its_end(
    tmp_path: Path, prepared: dict[str, Prepared]
) -> None:
    spec = make_spec("Chef")
    material = _expiring(prepared["Chef"].material, spec.endpoint, days=10)
    original_cert = material.public["server_cert"]
    driver, spec = _server(tmp_path, "Chef", material)
    maintained = driver.maintain(spec, material, major_upgrade=False)
    assert material.public["server_cert"] == original_cert  # the input is not changed
    renewed = maintained.material
    assert renewed.public["server_cert"] != original_cert
    assert renewed.public["ca_cert"] == material.public["ca_cert"]
    assert renewed.secrets["ca_key"] == material.secrets["ca_key"]
    assert pki.verify_chain(renewed.public["server_cert"], renewed.public["ca_cert"])
    assert pki.certificate_names(renewed.public["server_cert"]) == [spec.endpoint]
    expires = pki.certificate_not_after(renewed.public["server_cert"])
    assert expires > dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    cert = x509.load_pem_x509_certificate(renewed.public["server_cert"].encode())
    key = serialization.load_pem_private_key(renewed.secrets["server_key"].encode(), None)
    assert cert.public_key() == key.public_key()
    assert (driver.server_dir(spec) / "server.pem").read_text() == renewed.public["server_cert"]
    assert driver.check_health(spec, renewed).status == "HEALTHY"


def test_a_certificate_with_months_left_is_kept(
    tmp_path: Path, prepared: dict[str, Prepared]
) -> None:
    spec = make_spec("Chef")
    material = _expiring(prepared["Chef"].material, spec.endpoint, days=90)
    driver, spec = _server(tmp_path, "Chef", material)
    assert driver.maintain(spec, material, major_upgrade=False).material == material


def test_puppet_maintenance_keeps_nodes_and_re_signs_the_crl(
    tmp_path: Path, prepared: dict[str, Prepared], rsa_key: rsa.RSAPrivateKey
) -> None:
    material = prepared["Puppet"].material
    driver, spec = _server(tmp_path, "Puppet", material)
    gone = driver.associate_node(
        spec, material, "gone", {"PUPPET_NODE_CSR": csr_for(rsa_key, "gone")}
    )[0][1]
    driver.associate_node(spec, material, "kept", {"PUPPET_NODE_CSR": csr_for(rsa_key, "kept")})
    driver.disassociate_node(spec, material, "gone", {})
    crl_path = driver.server_dir(spec) / "crl.pem"
    before = x509.load_pem_x509_crl(crl_path.read_bytes())

    driver.maintain(spec, material, major_upgrade=False)
    after = x509.load_pem_x509_crl(crl_path.read_bytes())
    number = after.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    previous = before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > previous
    assert after.last_update_utc >= before.last_update_utc
    assert driver.is_revoked(spec, gone)
    assert driver.node_names(spec) == ["kept"]
    assert driver.check_health(spec, material).status == "HEALTHY"


def test_maintenance_needs_the_engine_state(tmp_path: Path, prepared: dict[str, Prepared]) -> None:
    driver = EmbeddedDriver(DriverContext(tmp_path), "Chef")
    with pytest.raises(EngineError, match="restore the server from a backup"):
        driver.maintain(make_spec("Chef"), prepared["Chef"].material, major_upgrade=False)
