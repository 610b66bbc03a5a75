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

    # The embedded engine serves neither Code Manager nor PuppetDB: no configuration for them.
    assert not [name for name in files if "client-tools" in name]
    readme = files[root + "README.md"].decode()
    assert "8170" not in readme and "8081" not in readme and "puppet-code" not in readme

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


def test_puppet_kit_configures_client_tools_only_for_services_given(
    ca: tuple[str, str], client: tuple[str, str], tmp_path: Path
) -> None:
    spec = make_spec("Puppet", endpoint="puppet.example.com:8140")
    kit = puppet_starter_kit(
        spec, ca_cert_pem=ca[0], client_cert_pem=client[0], client_key_pem=client[1],
        userdata="", code_manager_url="https://puppet.example.com:8170/code-manager",
        puppetdb_url="https://puppet.example.com:8081",
    )
    with zipfile.ZipFile(io.BytesIO(kit)) as archive:
        archive.extractall(tmp_path)
    tools = tmp_path / "MyServer/.config/puppetlabs/client-tools"
    code = json.loads((tools / "puppet-code.conf").read_text())
    assert code["service-url"] == "https://puppet.example.com:8170/code-manager"
    db = json.loads((tools / "puppetdb.conf").read_text())["puppetdb"]
    assert db["server_urls"] == "https://puppet.example.com:8081"
    # Code Manager takes a token (none given here), PuppetDB the kit's client certificate.
    assert "cert" not in code and "token-file" not in code
    for conf, fields in ((code, ("cacert",)), (db, ("cacert", "cert", "key"))):
        for field in fields:
            assert (tmp_path / "MyServer" / conf[field]).exists(), conf[field]
    readme = (tmp_path / "MyServer/README.md").read_text()
    assert "puppet-code --config-file" in readme and "puppet-query --config-file" in readme


# --- each engine's README names what its server runs, with host and port ---------------

def _readme(kit: bytes) -> str:
    return _files(kit)["MyServer/README.md"].decode()


def _puppet_kit(spec: ServerSpec, ca: tuple[str, str], client: tuple[str, str]) -> bytes:
    return puppet_starter_kit(spec, ca_cert_pem=ca[0], client_cert_pem=client[0],
                              client_key_pem=client[1], userdata="")


def test_goiardi_kit_readme_gives_the_api_url_with_its_port(
    ca: tuple[str, str], rsa_key: rsa.RSAPrivateKey
) -> None:
    spec = make_spec("Chef", endpoint="127.0.0.1:45123")
    kit = chef_starter_kit(spec, ca_cert_pem=ca[0],
                           pivotal_private_key_pem=pki.private_key_pem(rsa_key), userdata="")
    readme = _readme(kit)
    assert "goiardi at `https://127.0.0.1:45123`" in readme
    assert "./chef-api.sh GET /nodes" in readme
    assert "`127.0.0.1`," in readme and "port 45123" in readme
    assert "embedded engine" not in readme
    # chef-api.sh signs for goiardi's root URL, not /organizations/default
    script = _files(kit)["MyServer/chef-api.sh"].decode()
    assert "SERVER_URL='https://127.0.0.1:45123'\n" in script
    assert _mode(kit, "MyServer/chef-api.sh") == 0o755


def test_puppetserver_kit_readme_gives_host_and_port(
    ca: tuple[str, str], client: tuple[str, str]
) -> None:
    readme = _readme(_puppet_kit(make_spec("Puppet", endpoint="127.0.0.1:45124"), ca, client))
    assert "puppetserver serves it at `127.0.0.1:45124`" in readme
    assert "https://127.0.0.1:45124/status/v1/simple" in readme
    assert "--server 127.0.0.1 --serverport 45124" in readme
    assert "at `127.0.0.1`" not in readme  # the port is never dropped
    for service in ("puppet-code", "puppet-query", "PuppetDB", "Code Manager", "8170", "8081"):
        assert service not in readme, service


@pytest.mark.parametrize("family", ["Chef", "Puppet"])
def test_embedded_kit_readme_says_no_service_runs_and_how_to_get_one(
    family: str, ca: tuple[str, str], client: tuple[str, str]
) -> None:
    spec = make_spec(family)  # type: ignore[arg-type]
    kit = (chef_starter_kit(spec, ca_cert_pem=ca[0], pivotal_private_key_pem=None, userdata="")
           if family == "Chef" else _puppet_kit(spec, ca, client))
    readme = _readme(kit)
    assert f"runs no {family}\nservice" in readme or f"runs no {family} service" in readme
    assert "embedded engine" in readme
    assert "apt-get install goiardi puppetserver puppet-agent" in readme
    flag = "--chef-driver goiardi" if family == "Chef" else "--puppet-driver puppetserver"
    assert flag in readme
    assert "./chef-api.sh GET" not in readme and "status/v1/simple" not in readme
    assert "CMHOST_SKIP_AGENT_RUN=1" in readme


def test_an_explicit_engine_overrides_the_endpoint(
    ca: tuple[str, str], client: tuple[str, str]
) -> None:
    readme = _readme(puppet_starter_kit(
        make_spec("Puppet", endpoint="127.0.0.1:45125"), ca_cert_pem=ca[0],
        client_cert_pem=client[0], client_key_pem=client[1], userdata="", engine="embedded"))
    assert "embedded engine" in readme


def test_puppet_kit_of_a_host_port_endpoint_is_puppetserver(
    ca: tuple[str, str], client: tuple[str, str], tmp_path: Path
) -> None:
    spec = make_spec("Puppet", endpoint="puppet.example.com:8140")
    kit = puppet_starter_kit(
        spec, ca_cert_pem=ca[0], client_cert_pem=client[0], client_key_pem=client[1], userdata=""
    )
    assert "embedded engine" not in _readme(kit)
    assert "https://puppet.example.com:8140/status/v1/simple" in _readme(kit)
