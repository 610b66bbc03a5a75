"""ExportServerEngineAttribute (Userdata) and UpdateServerEngineAttributes."""

from __future__ import annotations

import base64
import io
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.ops.helpers import (
    attribute,
    expect_error,
    healthy_server,
    public_pem,
    server,
    settle,
)
from tests.support import Cmhost

REGION = "eu-central-1"
CHEF = "ea-chef"
PUPPET = "ea-puppet"


@pytest.fixture(scope="module")
def rclient(cmhost: Cmhost) -> Any:
    """A client of another region, so the region a script names is not just the default."""
    return cmhost.client(region=REGION)


@pytest.fixture(scope="module")
def servers(cmhost: Cmhost, rclient: Any) -> None:
    healthy_server(cmhost, rclient, CHEF)
    healthy_server(cmhost, rclient, PUPPET, "Puppet")


def _export(client: Any, name: str, tmp_path: Path, **inputs: str) -> str:
    answer = client.export_server_engine_attribute(
        ServerName=name, ExportAttributeName="Userdata",
        InputAttributes=[{"Name": k, "Value": v} for k, v in inputs.items()])
    assert answer["ServerName"] == name
    assert answer["EngineAttribute"]["Name"] == "Userdata"
    script = base64.b64decode(answer["EngineAttribute"]["Value"], validate=True).decode()
    path = tmp_path / f"{name}.sh"
    path.write_text(script)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True,
                           check=False, timeout=30)
    assert check.returncode == 0, check.stderr
    assert script.startswith("#!/bin/bash\n")
    return script


def _names_this_cmhost(script: str, cmhost: Cmhost, name: str) -> None:
    assert f"SERVER_NAME={name}\n" in script
    assert f"--region {REGION}" in script
    assert f"--endpoint-url {cmhost.url}" in script
    # the service by the name the node's AWS CLI knows: opsworks-cm, or (newer) opsworkscm
    assert "for name in opsworks-cm opsworkscm; do" in script
    assert 'aws "$OPSWORKS_CM" associate-node' in script
    assert 'aws "$OPSWORKS_CM" wait node-associated' in script


def test_chef_userdata(cmhost: Cmhost, rclient: Any, servers: None, tmp_path: Path) -> None:
    script = _export(rclient, CHEF, tmp_path, RunList="recipe[nginx],role[web]",
                     OrganizationName="default", NodeEnvironment="staging",
                     NodeClientVersion="18.5.0")
    _names_this_cmhost(script, cmhost, CHEF)
    assert "RUN_LIST='recipe[nginx],role[web]'\n" in script
    assert "CHEF_ENVIRONMENT=staging\n" in script
    assert "CHEF_CLIENT_VERSION=18.5.0\n" in script
    assert "CHEF_ORGANIZATION=default\n" in script
    assert f"CHEF_SERVER_ENDPOINT={server(rclient, CHEF)['Endpoint']}\n" in script

    plain = _export(rclient, CHEF, tmp_path)
    assert "RUN_LIST=''\n" in plain and "CHEF_ENVIRONMENT=''\n" in plain


def test_puppet_userdata_ignores_chef_inputs(cmhost: Cmhost, rclient: Any, servers: None,
                                             tmp_path: Path) -> None:
    script = _export(rclient, PUPPET, tmp_path, RunList="recipe[nginx]",
                     NodeEnvironment="staging")
    _names_this_cmhost(script, cmhost, PUPPET)
    assert "PUPPET_NODE_CSR" in script
    assert "recipe[nginx]" not in script and "staging" not in script
    ca = attribute(server(rclient, PUPPET)["EngineAttributes"], "PUPPET_API_CA_CERT") or ""
    assert ca.strip().splitlines()[1] in script


def test_export_errors(rclient: Any, servers: None) -> None:
    expect_error(rclient.export_server_engine_attribute, "ValidationException",
                 ServerName=CHEF, ExportAttributeName="Starterkit")
    expect_error(rclient.export_server_engine_attribute, "ValidationException",
                 ServerName=CHEF, ExportAttributeName="Userdata",
                 InputAttributes=[{"Name": "NodeColour", "Value": "blue"}])
    expect_error(rclient.export_server_engine_attribute, "ValidationException",
                 ServerName=CHEF, ExportAttributeName="Userdata",
                 InputAttributes=[{"Name": "NodeClientVersion", "Value": "latest; rm -rf /"}])
    expect_error(rclient.export_server_engine_attribute, "ResourceNotFoundException",
                 ServerName="no-such", ExportAttributeName="Userdata")


def _values(attributes: list[dict[str, str]]) -> dict[str, str]:
    return {a["Name"]: a.get("Value", "") for a in attributes}


def test_new_pivotal_key(cmhost: Cmhost, rclient: Any, servers: None) -> None:
    answer = rclient.update_server_engine_attributes(ServerName=CHEF,
                                                     AttributeName="CHEF_PIVOTAL_KEY")["Server"]
    assert answer["Status"] == "MODIFYING"
    shown = _values(answer["EngineAttributes"])
    key = serialization.load_pem_private_key(shown["CHEF_PIVOTAL_KEY"].encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    kit = zipfile.ZipFile(io.BytesIO(base64.b64decode(shown["CHEF_STARTER_KIT"])))
    private = [n for n in kit.namelist() if n.endswith(".chef/private.pem")]
    assert len(private) == 1
    assert kit.read(private[0]).decode().strip() == shown["CHEF_PIVOTAL_KEY"].strip()

    settle(cmhost)
    after = server(rclient, CHEF)
    assert after["Status"] == "HEALTHY"
    names = set(_values(after["EngineAttributes"]))
    assert not names & {"CHEF_PIVOTAL_KEY", "CHEF_STARTER_KIT"}


@pytest.mark.parametrize("name", ["CHEF_PIVOTAL_KEY", "CHEF_AUTOMATE_PIVOTAL_KEY"])
def test_given_pivotal_key(cmhost: Cmhost, rclient: Any, servers: None, name: str) -> None:
    answer = rclient.update_server_engine_attributes(
        ServerName=CHEF, AttributeName=name, AttributeValue=public_pem())["Server"]
    assert answer["Status"] == "MODIFYING"
    assert not any("PRIVATE KEY" in v for v in _values(answer["EngineAttributes"]).values())
    settle(cmhost)
    assert server(rclient, CHEF)["Status"] == "HEALTHY"


def test_puppet_admin_password(cmhost: Cmhost, rclient: Any, servers: None) -> None:
    given = rclient.update_server_engine_attributes(
        ServerName=PUPPET, AttributeName="PUPPET_ADMIN_PASSWORD",
        AttributeValue="N3w-Secret-pw")["Server"]
    assert given["Status"] == "MODIFYING"
    assert "PUPPET_ADMIN_PASSWORD" not in _values(given["EngineAttributes"])
    settle(cmhost)

    generated = rclient.update_server_engine_attributes(
        ServerName=PUPPET, AttributeName="PUPPET_ADMIN_PASSWORD")["Server"]
    password = _values(generated["EngineAttributes"])["PUPPET_ADMIN_PASSWORD"]
    assert 8 <= len(password) <= 32 and password.isascii()
    assert "PUPPET_API_CA_CERT" in _values(generated["EngineAttributes"])
    settle(cmhost)
    after = server(rclient, PUPPET)
    assert after["Status"] == "HEALTHY"
    assert "PUPPET_ADMIN_PASSWORD" not in _values(after["EngineAttributes"])


@pytest.mark.parametrize(("name", "attribute_name", "value"), [
    (CHEF, "CHEF_STARTER_KIT", None),
    (CHEF, "PUPPET_ADMIN_PASSWORD", "N3w-Secret-pw"),
    (CHEF, "CHEF_DELIVERY_ADMIN_PASSWORD", "N3w-Secret-pw1!"),
    (CHEF, "CHEF_PIVOTAL_KEY", "not a key"),
    (PUPPET, "CHEF_PIVOTAL_KEY", None),
    (PUPPET, "PUPPET_ADMIN_PASSWORD", "short"),
    (PUPPET, "NO_SUCH_ATTRIBUTE", "x"),
])
def test_update_refusals(rclient: Any, servers: None, name: str, attribute_name: str,
                         value: str | None) -> None:
    params = {"ServerName": name, "AttributeName": attribute_name}
    if value is not None:
        params["AttributeValue"] = value
    error = expect_error(rclient.update_server_engine_attributes, "ValidationException",
                         **params)
    if value and len(value) > 5:
        assert value not in error["Message"]
    assert server(rclient, name)["Status"] == "HEALTHY"


def test_update_unknown_server(rclient: Any) -> None:
    expect_error(rclient.update_server_engine_attributes, "ResourceNotFoundException",
                 ServerName="no-such", AttributeName="CHEF_PIVOTAL_KEY")
