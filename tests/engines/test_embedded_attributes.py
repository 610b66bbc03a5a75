"""UpdateServerEngineAttributes and the Userdata export of embedded servers."""

from __future__ import annotations

import base64
import io
import shutil
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cmhost.engines import pki
from cmhost.engines.attributes import puppet_password_ok
from cmhost.engines.base import (
    DriverContext,
    EngineFamily,
    EngineMaterial,
    InvalidEngineAttribute,
    Prepared,
    ServerSpec,
)
from cmhost.engines.embedded import EmbeddedDriver

from .conftest import make_spec, spki
from .test_userdata import Run


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Prepared]:
    unused = tmp_path_factory.mktemp("unused")
    return {
        family: EmbeddedDriver(DriverContext(unused), family).prepare(make_spec(family), {})
        for family in ("Chef", "Puppet")
    }


def _driver(tmp: Path, family: EngineFamily) -> EmbeddedDriver:
    return EmbeddedDriver(DriverContext(tmp), family)


def _frozen(material: EngineMaterial) -> tuple[dict[str, str], dict[str, str]]:
    return dict(material.public), dict(material.secrets)


# ------------------------------------------------------------------- pivotal key


@pytest.mark.parametrize("name", ["CHEF_PIVOTAL_KEY", "CHEF_AUTOMATE_PIVOTAL_KEY"])
def test_a_given_pivotal_key_is_stored_and_nothing_returned(
    tmp_path: Path, prepared: dict[str, Prepared], rsa_key: rsa.RSAPrivateKey, name: str
) -> None:
    material = prepared["Chef"].material
    before = _frozen(material)
    result = _driver(tmp_path, "Chef").update_attribute(
        make_spec("Chef"), material, name, pki.public_key_pem(rsa_key)
    )
    assert result.one_time_attributes == []
    assert result.material.public["pivotal_public_key"] == pki.public_key_pem(rsa_key)
    assert result.material.secrets == material.secrets
    assert _frozen(material) == before
    assert result.material is not material


@pytest.mark.parametrize(
    ("engine", "key_name"),
    [
        ("Chef", "CHEF_PIVOTAL_KEY"),
        ("ChefAutomate", "CHEF_AUTOMATE_PIVOTAL_KEY"),
    ],
)
@pytest.mark.parametrize("value", [None, ""])
def test_without_a_key_a_new_pair_and_starter_kit_are_returned_once(
    tmp_path: Path,
    prepared: dict[str, Prepared],
    engine: str,
    key_name: str,
    value: str | None,
) -> None:
    material = prepared["Chef"].material
    before = _frozen(material)
    spec = make_spec("Chef", engine=engine)
    result = _driver(tmp_path, "Chef").update_attribute(spec, material, "CHEF_PIVOTAL_KEY", value)
    one_time = dict(result.one_time_attributes)
    assert set(one_time) == {key_name, "CHEF_STARTER_KIT"}
    private = serialization.load_pem_private_key(one_time[key_name].encode(), password=None)
    stored = pki.load_public_key(result.material.public["pivotal_public_key"])
    assert spki(private) == spki(stored)
    assert result.material.public["pivotal_public_key"] != material.public["pivotal_public_key"]
    assert _frozen(material) == before
    assert one_time[key_name] not in str([result.material.public, result.material.secrets])

    kit = zipfile.ZipFile(io.BytesIO(base64.b64decode(one_time["CHEF_STARTER_KIT"])))
    assert kit.read("MyServer/.chef/private.pem").decode() == one_time[key_name]
    ca = kit.read("MyServer/.chef/ca_certs/opsworks-cm-ca.pem").decode()
    assert ca.strip() == material.public["ca_cert"].strip()


def test_a_bad_pivotal_key_is_refused_without_echo(
    tmp_path: Path, prepared: dict[str, Prepared], rsa_key: rsa.RSAPrivateKey
) -> None:
    driver = _driver(tmp_path, "Chef")
    private = pki.private_key_pem(rsa_key)
    with pytest.raises(InvalidEngineAttribute, match="CHEF_PIVOTAL_KEY") as caught:
        driver.update_attribute(
            make_spec("Chef"), prepared["Chef"].material, "CHEF_PIVOTAL_KEY", private
        )
    assert private.splitlines()[1] not in str(caught.value)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(InvalidEngineAttribute, match="2048"):
        driver.update_attribute(
            make_spec("Chef"),
            prepared["Chef"].material,
            "CHEF_PIVOTAL_KEY",
            pki.public_key_pem(small),
        )


# ----------------------------------------------------------------- admin password


def test_a_given_puppet_password_is_stored_as_a_hash(
    tmp_path: Path, prepared: dict[str, Prepared]
) -> None:
    material = prepared["Puppet"].material
    before = _frozen(material)
    result = _driver(tmp_path, "Puppet").update_attribute(
        make_spec("Puppet"), material, "PUPPET_ADMIN_PASSWORD", "new password 1"
    )
    assert result.one_time_attributes == []
    assert pki.verify_password("new password 1", result.material.public["admin_password_hash"])
    assert "new password 1" not in str(result.material)
    assert _frozen(material) == before


def test_without_a_password_one_is_generated_and_returned_once(
    tmp_path: Path, prepared: dict[str, Prepared]
) -> None:
    material = prepared["Puppet"].material
    result = _driver(tmp_path, "Puppet").update_attribute(
        make_spec("Puppet"), material, "PUPPET_ADMIN_PASSWORD", None
    )
    [(name, password)] = result.one_time_attributes
    assert name == "PUPPET_ADMIN_PASSWORD" and puppet_password_ok(password)
    assert pki.verify_password(password, result.material.public["admin_password_hash"])
    assert not pki.verify_password(password, material.public["admin_password_hash"])


def test_a_bad_puppet_password_is_refused(tmp_path: Path, prepared: dict[str, Prepared]) -> None:
    with pytest.raises(InvalidEngineAttribute, match="8 to 32 printable ASCII"):
        _driver(tmp_path, "Puppet").update_attribute(
            make_spec("Puppet"), prepared["Puppet"].material, "PUPPET_ADMIN_PASSWORD", "short"
        )


@pytest.mark.parametrize(
    ("family", "name"),
    [
        ("Chef", "PUPPET_ADMIN_PASSWORD"),
        ("Chef", "CHEF_DELIVERY_ADMIN_PASSWORD"),
        ("Chef", "CHEF_STARTER_KIT"),
        ("Puppet", "CHEF_PIVOTAL_KEY"),
        ("Puppet", "PUPPET_R10K_REMOTE"),
        ("Puppet", "UNKNOWN"),
    ],
)
def test_other_attribute_names_are_refused(
    tmp_path: Path, prepared: dict[str, Prepared], family: EngineFamily, name: str
) -> None:
    with pytest.raises(InvalidEngineAttribute, match="cannot be updated"):
        _driver(tmp_path, family).update_attribute(
            make_spec(family), prepared[family].material, name, None
        )


# ----------------------------------------------------------------------- userdata


def _userdata(
    tmp: Path, prepared: dict[str, Prepared], family: EngineFamily, inputs: dict[str, str]
) -> str:
    spec: ServerSpec = make_spec(family)
    return _driver(tmp, family).userdata(spec, prepared[family].material, inputs)


def test_chef_userdata_carries_the_inputs(tmp_path: Path, prepared: dict[str, Prepared]) -> None:
    script = _userdata(
        tmp_path,
        prepared,
        "Chef",
        {
            "RunList": "recipe[nginx],role[web]",
            "OrganizationName": "default",
            "NodeEnvironment": "staging",
            "NodeClientVersion": "18.5.0",
        },
    )
    assert script.startswith("#!/bin/bash\n")
    assert "RUN_LIST='recipe[nginx],role[web]'\n" in script
    assert "CHEF_ENVIRONMENT=staging\n" in script
    assert "CHEF_CLIENT_VERSION=18.5.0\n" in script
    assert "CHEF_ORGANIZATION=default\n" in script
    ca_line = prepared["Chef"].material.public["ca_cert"].splitlines()[1]
    assert ca_line in script
    assert "--endpoint-url http://127.0.0.1:4580" in script


def test_chef_userdata_defaults(tmp_path: Path, prepared: dict[str, Prepared]) -> None:
    script = _userdata(tmp_path, prepared, "Chef", {})
    assert "CHEF_ORGANIZATION=default\n" in script
    assert "RUN_LIST=''\n" in script
    assert "CHEF_CLIENT_VERSION=''\n" in script


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"Runlist": "x"}, "'Runlist' is not accepted"),
        ({"PUPPET_NODE_CSR": "x"}, "not accepted"),
        ({"OrganizationName": "acme"}, "must be 'default'"),
        ({"NodeEnvironment": "bad env"}, "NodeEnvironment"),
        ({"NodeClientVersion": "latest"}, "NodeClientVersion"),
        ({"NodeClientVersion": "18.5.0; rm -rf /"}, "NodeClientVersion"),
        ({"RunList": "recipe[a]\nrm -rf /"}, "RunList"),
    ],
)
def test_chef_userdata_refuses_bad_inputs(
    tmp_path: Path, prepared: dict[str, Prepared], inputs: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidEngineAttribute, match=message):
        _userdata(tmp_path, prepared, "Chef", inputs)


def test_puppet_userdata_ignores_chef_inputs(tmp_path: Path, prepared: dict[str, Prepared]) -> None:
    script = _userdata(
        tmp_path,
        prepared,
        "Puppet",
        {"RunList": "recipe[x]", "NodeClientVersion": "not-a-version", "OrganizationName": "acme"},
    )
    assert "PUPPET_NODE_CSR" in script
    for value in ("recipe[x]", "not-a-version", "acme"):
        assert value not in script
    with pytest.raises(InvalidEngineAttribute, match="not accepted"):
        _userdata(tmp_path, prepared, "Puppet", {"Other": "x"})


def test_userdata_writes_nothing(tmp_path: Path, prepared: dict[str, Prepared]) -> None:
    _userdata(tmp_path, prepared, "Chef", {"RunList": "recipe[x]"})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("openssl") is None,
    reason="needs bash and openssl",
)
def test_the_key_a_chef_userdata_script_makes_is_accepted_once_associated(
    tmp_path: Path, prepared: dict[str, Prepared], ca: tuple[str, str]
) -> None:
    material = prepared["Chef"].material
    spec = make_spec("Chef")
    driver = _driver(tmp_path / "data", "Chef")
    driver.provision(spec, material)
    (tmp_path / "node").mkdir()
    run = Run(tmp_path / "node", ca)
    result = run(driver.userdata(spec, material, {"RunList": "recipe[web]"}))
    assert result.returncode == 0, result.stderr

    attributes = {a["Name"]: a["Value"] for a in run.association()["attrs"]}
    checked = driver.check_node_request(spec, "associate", "node-1", attributes)
    driver.associate_node(spec, material, "node-1", checked)
    client_key = serialization.load_pem_private_key(
        (run.tmp / "chef" / "client.pem").read_bytes(), None
    )
    assert isinstance(client_key, rsa.RSAPrivateKey)
    request = b"GET /organizations/default/nodes/node-1"
    signature = client_key.sign(request, padding.PKCS1v15(), hashes.SHA256())
    assert driver.accepts_client(spec, "node-1", request, signature)
    driver.disassociate_node(spec, material, "node-1", {"CHEF_ORGANIZATION": "default"})
    assert not driver.accepts_client(spec, "node-1", request, signature)
