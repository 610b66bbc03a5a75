"""The embedded driver: credentials handed out once, nothing secret on disk, honest health."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cmhost.engines import pki
from cmhost.engines.attributes import chef_password_ok, validate_create_attributes
from cmhost.engines.base import (
    DriverContext,
    EngineDriver,
    EngineError,
    EngineFamily,
    EngineMaterial,
    Prepared,
    ServerSpec,
)
from cmhost.engines.embedded import EmbeddedDriver

from .conftest import make_spec, spki

R10K_KEY_LINE_COUNT = 3


def _driver(tmp: Path, family: EngineFamily) -> EmbeddedDriver:
    return EmbeddedDriver(DriverContext(data_dir=tmp), family)


def _kit(prepared: Prepared, name: str) -> dict[str, bytes]:
    data = base64.b64decode(dict(prepared.one_time_attributes)[name])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {n: archive.read(n) for n in archive.namelist()}


@pytest.fixture(scope="module")
def chef_prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    spec = make_spec("Chef", custom_domain="chef.example.org")
    return _driver(tmp_path_factory.mktemp("unused"), "Chef").prepare(spec, {})


@pytest.fixture(scope="module")
def r10k_key() -> str:
    return pki.private_key_pem(pki.generate_rsa_key())


@pytest.fixture(scope="module")
def puppet_prepared(tmp_path_factory: pytest.TempPathFactory, r10k_key: str) -> Prepared:
    attributes = validate_create_attributes(
        "Puppet",
        [
            ("PUPPET_R10K_REMOTE", "ssh://git@git.example.com/control-repo.git"),
            ("PUPPET_R10K_PRIVATE_KEY", r10k_key),
        ],
    )
    return _driver(tmp_path_factory.mktemp("unused"), "Puppet").prepare(
        make_spec("Puppet"), attributes
    )


def test_driver_satisfies_the_protocol(tmp_path: Path) -> None:
    driver: EngineDriver = _driver(tmp_path, "Chef")
    assert driver.name == "embedded"


# ------------------------------------------------------------------------- prepare


def test_chef_prepare_returns_credentials_once_and_keeps_only_public_halves(
    chef_prepared: Prepared,
) -> None:
    one_time = dict(chef_prepared.one_time_attributes)
    assert set(one_time) == {"CHEF_PIVOTAL_KEY", "CHEF_DELIVERY_ADMIN_PASSWORD", "CHEF_STARTER_KIT"}
    public = chef_prepared.material.public
    private = one_time["CHEF_PIVOTAL_KEY"]
    key = serialization.load_pem_private_key(private.encode(), password=None)
    assert spki(key) == spki(pki.load_public_key(public["pivotal_public_key"]))
    password = one_time["CHEF_DELIVERY_ADMIN_PASSWORD"]
    assert chef_password_ok(password)
    assert pki.verify_password(password, public["admin_password_hash"])
    stored = json.dumps([public, chef_prepared.material.secrets])
    assert password not in stored
    assert private.splitlines()[1] not in stored
    assert "PRIVATE KEY" not in json.dumps(public)
    assert set(chef_prepared.material.secrets) == {"ca_key", "server_key"}


def test_chef_kit_holds_the_returned_key_and_names_the_endpoint(chef_prepared: Prepared) -> None:
    files = _kit(chef_prepared, "CHEF_STARTER_KIT")
    private = dict(chef_prepared.one_time_attributes)["CHEF_PIVOTAL_KEY"]
    assert files["MyServer/.chef/private.pem"].decode() == private
    knife = files["MyServer/.chef/knife.rb"].decode()
    assert f"chef_server_url 'https://{make_spec().endpoint}/organizations/default'" in knife
    ca = files["MyServer/.chef/ca_certs/opsworks-cm-ca.pem"].decode()
    assert ca.strip() == chef_prepared.material.public["ca_cert"].strip()
    assert b'aws "$OPSWORKS_CM" associate-node' in files["MyServer/userdata.sh"]


def test_server_certificate_names_endpoint_and_custom_domain(chef_prepared: Prepared) -> None:
    public = chef_prepared.material.public
    assert pki.verify_chain(public["server_cert"], public["ca_cert"])
    cert = x509.load_pem_x509_certificate(public["server_cert"].encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [make_spec().endpoint, "chef.example.org"]
    ca = x509.load_pem_x509_certificate(public["ca_cert"].encode())
    assert "MyServer CA" in ca.subject.rfc4514_string()
    ca_key = serialization.load_pem_private_key(
        chef_prepared.material.secrets["ca_key"].encode(), password=None
    )
    assert spki(ca_key) == spki(ca)


@pytest.mark.parametrize("family", ["Chef", "Puppet"])
def test_the_longest_server_name_gets_a_working_identity(
    tmp_path: Path, family: EngineFamily
) -> None:
    name = "a" + "B9-" * 13  # 40 characters, the API's limit
    spec = make_spec(family, name=name, endpoint=f"{name.lower()}-abcdefghijklmnop.opsworks-cm.io")
    driver = _driver(tmp_path, family)
    prepared = driver.prepare(spec, {})
    assert pki.certificate_names(prepared.material.public["server_cert"]) == [spec.endpoint]
    driver.provision(spec, prepared.material)
    assert driver.check_health(spec, prepared.material).status == "HEALTHY"


def test_chef_automate_uses_automate_names(tmp_path: Path) -> None:
    spec = make_spec("Chef", engine="ChefAutomate", engine_version="2.0")
    prepared = _driver(tmp_path, "Chef").prepare(spec, {})
    assert {name for name, _ in prepared.one_time_attributes} == {
        "CHEF_AUTOMATE_PIVOTAL_KEY",
        "CHEF_AUTOMATE_ADMIN_PASSWORD",
        "CHEF_STARTER_KIT",
    }


def test_chef_with_given_key_and_password_returns_neither(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    given_key = pki.public_key_pem(rsa_key)
    attributes = validate_create_attributes(
        "Chef",
        [("CHEF_AUTOMATE_PIVOTAL_KEY", given_key), ("CHEF_DELIVERY_ADMIN_PASSWORD", "Passw0rd!")],
    )
    prepared = _driver(tmp_path, "Chef").prepare(make_spec("Chef"), attributes)
    assert [name for name, _ in prepared.one_time_attributes] == ["CHEF_STARTER_KIT"]
    assert prepared.material.public["pivotal_public_key"] == given_key
    assert pki.verify_password("Passw0rd!", prepared.material.public["admin_password_hash"])
    files = _kit(prepared, "CHEF_STARTER_KIT")
    assert "MyServer/.chef/private.pem" not in files


def test_puppet_prepare(puppet_prepared: Prepared, r10k_key: str) -> None:
    one_time = dict(puppet_prepared.one_time_attributes)
    assert set(one_time) == {"PUPPET_ADMIN_PASSWORD", "PUPPET_STARTER_KIT"}
    material = puppet_prepared.material
    assert pki.verify_password(
        one_time["PUPPET_ADMIN_PASSWORD"], material.public["admin_password_hash"]
    )
    assert material.public["r10k_remote"] == "ssh://git@git.example.com/control-repo.git"
    assert material.secrets["r10k_private_key"].strip() == r10k_key.strip()

    files = _kit(puppet_prepared, "PUPPET_STARTER_KIT")
    client_cert = files["MyServer/.config/ssl/cert/admin.pem"].decode()
    client_key = files["MyServer/.config/ssl/private_key/admin.pem"].decode()
    assert pki.verify_chain(client_cert, material.public["ca_cert"])
    # The kit's client key is kept nowhere.
    everything = json.dumps([material.public, material.secrets])
    assert client_key.strip().splitlines()[1] not in everything


def test_puppet_public_attributes_show_the_ca(tmp_path: Path, puppet_prepared: Prepared) -> None:
    driver = _driver(tmp_path, "Puppet")
    assert driver.public_attributes(make_spec("Puppet"), puppet_prepared.material) == [
        ("PUPPET_API_CA_CERT", puppet_prepared.material.public["ca_cert"])
    ]
    chef = _driver(tmp_path, "Chef")
    assert chef.public_attributes(make_spec("Chef"), EngineMaterial()) == []


def test_prepare_writes_nothing_and_refuses_the_wrong_family(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="Puppet"):
        _driver(tmp_path, "Chef").prepare(make_spec("Puppet"), {})
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------- lifecycle


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


@pytest.mark.parametrize("family", ["Chef", "Puppet"])
def test_provision_writes_public_state_and_no_secret(
    tmp_path: Path, family: EngineFamily, chef_prepared: Prepared, puppet_prepared: Prepared
) -> None:
    prepared = chef_prepared if family == "Chef" else puppet_prepared
    spec = make_spec(family)
    driver = _driver(tmp_path, family)
    driver.provision(spec, prepared.material)
    driver.provision(spec, prepared.material)  # idempotent
    root = tmp_path / "engines" / spec.server_id
    assert driver.server_dir(spec) == root
    engine = json.loads((root / "engine.json").read_text())
    assert engine["family"] == family
    assert engine["name"] == "MyServer"
    assert engine["endpoint"] == spec.endpoint
    assert engine["version"] == spec.engine_version
    assert (root / "ca.pem").read_text() == prepared.material.public["ca_cert"]
    assert (root / "server.pem").read_text() == prepared.material.public["server_cert"]
    assert (root / "nodes").is_dir() and not list((root / "nodes").iterdir())
    assert not [p.name for p in root.iterdir() if p.name.endswith(".tmp")]

    on_disk = _all_bytes(tmp_path)
    assert b"PRIVATE KEY" not in on_disk
    secrets = list(prepared.material.secrets.values())
    secrets += [v for n, v in prepared.one_time_attributes if not n.endswith("STARTER_KIT")]
    for secret in secrets:
        for line in secret.splitlines():
            if len(line) >= 8 and "-----" not in line:
                assert line.encode() not in on_disk


def test_health_follows_the_state_on_disk(tmp_path: Path, chef_prepared: Prepared) -> None:
    spec = make_spec("Chef")
    driver = _driver(tmp_path, "Chef")
    material = chef_prepared.material
    root = driver.server_dir(spec)
    assert driver.check_health(spec, material).status == "CONNECTION_LOST"

    driver.provision(spec, material)
    assert driver.check_health(spec, material).status == "HEALTHY"

    (root / "server.pem").unlink()
    health = driver.check_health(spec, material)
    assert health.status == "UNHEALTHY" and "server.pem" in health.reason

    driver.provision(spec, material)
    assert driver.check_health(spec, material).status == "HEALTHY"

    other_ca = pki.generate_ca("intruder")
    foreign, _ = pki.issue_certificate(other_ca[0], other_ca[1], spec.endpoint, [spec.endpoint])
    (root / "server.pem").write_text(foreign)
    health = driver.check_health(spec, material)
    assert health.status == "UNHEALTHY" and "chain" in health.reason

    driver.provision(spec, material)
    (root / "ca.pem").write_text(other_ca[0])
    assert driver.check_health(spec, material).status == "UNHEALTHY"

    driver.provision(spec, material)
    (root / "engine.json").write_text("{not json")
    assert driver.check_health(spec, material).status == "UNHEALTHY"

    driver.provision(spec, material)
    (root / "nodes").rmdir()
    assert driver.check_health(spec, material).status == "UNHEALTHY"

    driver.destroy(spec)
    health = driver.check_health(spec, material)
    assert health.status == "CONNECTION_LOST" and health.reason


def test_health_rereads_only_a_changed_state(tmp_path: Path, chef_prepared: Prepared,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make_spec("Chef")
    driver = _driver(tmp_path, "Chef")
    material = chef_prepared.material
    driver.provision(spec, material)
    full_checks = []
    real = driver._find_problem

    def counted(*args: Any) -> str:
        full_checks.append(1)
        return real(*args)

    monkeypatch.setattr(driver, "_find_problem", counted)
    for _ in range(5):
        assert driver.check_health(spec, material).status == "HEALTHY"
    assert len(full_checks) == 1
    root = driver.server_dir(spec)
    with open(root / "server.pem", "r+") as handle:  # damaged in place, not renamed
        handle.write("-----BEGIN GARBAGE")
    assert driver.check_health(spec, material).status == "UNHEALTHY"
    assert len(full_checks) == 2


def test_destroy_is_idempotent_and_only_touches_its_server(
    tmp_path: Path, chef_prepared: Prepared
) -> None:
    driver = _driver(tmp_path, "Chef")
    spec = make_spec("Chef")
    neighbour = make_spec("Chef", server_id="6f1c2a4e-0000-4000-8000-000000000002")
    driver.provision(spec, chef_prepared.material)
    driver.provision(neighbour, chef_prepared.material)
    driver.destroy(spec)
    driver.destroy(spec)
    assert not driver.server_dir(spec).exists()
    assert driver.check_health(neighbour, chef_prepared.material).status == "HEALTHY"


@pytest.mark.parametrize("server_id", ["..", "../etc", "a/b", "", ".hidden"])
def test_unsafe_server_ids_are_refused(tmp_path: Path, server_id: str) -> None:
    spec: ServerSpec = make_spec("Chef", server_id=server_id)
    driver = _driver(tmp_path, "Chef")
    with pytest.raises(EngineError, match="server id"):
        driver.destroy(spec)


def test_provision_refuses_incomplete_material(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="ca_cert"):
        _driver(tmp_path, "Chef").provision(make_spec("Chef"), EngineMaterial())
