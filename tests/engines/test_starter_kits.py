"""The Chef and Puppet starter kits are real ZIP files a user can work from."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cmhost.engines import pki
from cmhost.engines.base import ServerSpec
from cmhost.engines.starter_kits import chef_starter_kit, puppet_starter_kit

from .conftest import make_spec, spki

USERDATA = "#!/bin/bash\necho user data\n"


def _files(kit: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(kit)) as archive:
        assert archive.testzip() is None
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _mode(kit: bytes, name: str) -> int:
    with zipfile.ZipFile(io.BytesIO(kit)) as archive:
        return stat.S_IMODE(archive.getinfo(name).external_attr >> 16)


@pytest.fixture(scope="module")
def client(ca: tuple[str, str]) -> tuple[str, str]:
    return pki.issue_certificate(ca[0], ca[1], "admin", [], server=False)


def test_chef_kit_lets_knife_reach_the_server(
    chef_spec: ServerSpec, ca: tuple[str, str], rsa_key: rsa.RSAPrivateKey
) -> None:
    private = pki.private_key_pem(rsa_key)
    kit = chef_starter_kit(
        chef_spec, ca_cert_pem=ca[0], pivotal_private_key_pem=private, userdata=USERDATA
    )
    files = _files(kit)
    assert all(name.startswith("MyServer/") for name in files)
    for name in [
        "README.md",
        "Berksfile",
        "userdata.sh",
        ".chef/knife.rb",
        ".chef/private.pem",
        ".chef/ca_certs/opsworks-cm-ca.pem",
        "cookbooks/opsworks-webserver/metadata.rb",
        "cookbooks/opsworks-webserver/recipes/default.rb",
    ]:
        assert f"MyServer/{name}" in files, name

    knife = files["MyServer/.chef/knife.rb"].decode().splitlines()
    assert "base_dir = File.join(File.dirname(File.expand_path(__FILE__)), '..')" in knife
    assert "node_name 'pivotal'" in knife
    assert "client_key File.join(base_dir, '.chef', 'private.pem')" in knife
    assert f"chef_server_url 'https://{chef_spec.endpoint}/organizations/default'" in knife
    assert "trusted_certs_dir File.join(base_dir, '.chef', 'ca_certs')" in knife

    assert files["MyServer/.chef/private.pem"].decode() == private
    assert _mode(kit, "MyServer/.chef/private.pem") == 0o600
    assert _mode(kit, "MyServer/userdata.sh") == 0o755
    assert files["MyServer/.chef/ca_certs/opsworks-cm-ca.pem"].decode().strip() == ca[0].strip()
    assert files["MyServer/userdata.sh"].decode() == USERDATA
    assert b"opsworks-webserver" in files["MyServer/Berksfile"]
    assert (
        b"name 'opsworks-webserver'" in files["MyServer/cookbooks/opsworks-webserver/metadata.rb"]
    )


def test_chef_kit_without_private_key_tells_where_to_put_it(
    chef_spec: ServerSpec, ca: tuple[str, str]
) -> None:
    kit = chef_starter_kit(chef_spec, ca_cert_pem=ca[0], pivotal_private_key_pem=None, userdata="")
    files = _files(kit)
    assert "MyServer/.chef/private.pem" not in files
    assert b"PRIVATE KEY" not in b"".join(files.values())
    assert b"put its private key here" in files["MyServer/README.md"]


def test_kits_are_deterministic(chef_spec: ServerSpec, ca: tuple[str, str]) -> None:
    one = chef_starter_kit(chef_spec, ca_cert_pem=ca[0], pivotal_private_key_pem=None, userdata="")
    two = chef_starter_kit(chef_spec, ca_cert_pem=ca[0], pivotal_private_key_pem=None, userdata="")
    assert one == two


def test_puppet_kit_carries_client_credentials_and_tool_configs(
    puppet_spec: ServerSpec, ca: tuple[str, str], client: tuple[str, str]
) -> None:
    kit = puppet_starter_kit(
        puppet_spec,
        ca_cert_pem=ca[0],
        client_cert_pem=client[0],
        client_key_pem=client[1],
        userdata=USERDATA,
    )
    files = _files(kit)
    root = "MyServer/"
    assert all(name.startswith(root) for name in files)
    assert files[root + ".config/ssl/cert/ca.pem"].decode().strip() == ca[0].strip()
    cert = x509.load_pem_x509_certificate(files[root + ".config/ssl/cert/admin.pem"])
    key = serialization.load_pem_private_key(
        files[root + ".config/ssl/private_key/admin.pem"], password=None
    )
    assert spki(key) == spki(cert)
    assert _mode(kit, root + ".config/ssl/private_key/admin.pem") == 0o600
    assert files[root + "userdata.sh"].decode() == USERDATA

    code = json.loads(files[root + ".config/puppetlabs/client-tools/puppet-code.conf"])
    assert code["service-url"] == f"https://{puppet_spec.endpoint}:8170/code-manager"
    db = json.loads(files[root + ".config/puppetlabs/client-tools/puppetdb.conf"])["puppetdb"]
    assert db["server_urls"] == f"https://{puppet_spec.endpoint}:8081"
    for conf in (code, db):
        for field in ("cacert", "cert", "key"):
            assert root + conf[field] in files, conf[field]

    for name in [
        "control-repo/environment.conf",
        "control-repo/Puppetfile",
        "control-repo/manifests/site.pp",
        "control-repo/data/common.yaml",
        "control-repo/hiera.yaml",
        "control-repo/site/role/manifests/base.pp",
        "control-repo/site/profile/manifests/base.pp",
        "README.md",
    ]:
        assert files[root + name].strip(), name
    assert b"class role::base" in files[root + "control-repo/site/role/manifests/base.pp"]
    assert b"include role::base" in files[root + "control-repo/manifests/site.pp"]


def test_puppet_kit_uses_endpoint_host_without_port(
    ca: tuple[str, str], client: tuple[str, str], tmp_path: Path
) -> None:
    spec = make_spec("Puppet", endpoint="puppet.example.com:8140")
    kit = puppet_starter_kit(
        spec, ca_cert_pem=ca[0], client_cert_pem=client[0], client_key_pem=client[1], userdata=""
    )
    with zipfile.ZipFile(io.BytesIO(kit)) as archive:
        archive.extractall(tmp_path)
    conf = tmp_path / "MyServer/.config/puppetlabs/client-tools/puppetdb.conf"
    assert json.loads(conf.read_text())["puppetdb"]["server_urls"] == (
        "https://puppet.example.com:8081"
    )
