"""CreateServer hands out real credentials: starter kits, the pivotal key and the Puppet CA."""

from __future__ import annotations

import base64
import io
import zipfile
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support import Cmhost, create_server


def _attrs(server: dict[str, Any]) -> dict[str, str]:
    return {a["Name"]: a["Value"] for a in server["EngineAttributes"]}


def _kit(value: str) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(value)))
    assert archive.testzip() is None
    return {name.split("/", 1)[1]: archive.read(name) for name in archive.namelist()
            if "/" in name and not name.endswith("/")}


def test_chef_starter_kit(cmhost: Cmhost) -> None:
    server = create_server(cmhost.client(), "kit-chef", "Chef")
    attrs = _attrs(server)
    kit = _kit(attrs["CHEF_STARTER_KIT"])
    assert kit[".chef/private.pem"].decode() == attrs["CHEF_PIVOTAL_KEY"]
    key = serialization.load_pem_private_key(attrs["CHEF_PIVOTAL_KEY"].encode(), None)
    assert key.key_size == 2048  # type: ignore[union-attr]
    knife = kit[".chef/knife.rb"].decode()
    assert f"https://{server['Endpoint']}/organizations/default" in knife
    assert "node_name 'pivotal'" in knife or 'node_name "pivotal"' in knife
    assert "README.md" in kit and "userdata.sh" in kit
    ca_files = [name for name in kit if name.startswith(".chef/ca_certs/")]
    assert ca_files
    ca = x509.load_pem_x509_certificate(kit[ca_files[0]])
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    password = attrs["CHEF_DELIVERY_ADMIN_PASSWORD"]
    assert 8 <= len(password) <= 32


def test_puppet_starter_kit_and_ca(cmhost: Cmhost) -> None:
    client = cmhost.client()
    server = create_server(client, "kit-puppet", "Puppet")
    attrs = _attrs(server)
    ca_pem = attrs["PUPPET_API_CA_CERT"]
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "kit-puppet" in ca.subject.rfc4514_string()
    kit = _kit(attrs["PUPPET_STARTER_KIT"])
    assert kit[".config/ssl/cert/ca.pem"].decode() == ca_pem
    assert any(name.startswith("control-repo/") for name in kit)
    assert "README.md" in kit and "userdata.sh" in kit
    # The kit's client certificate is signed by the server's CA.
    certs = [name for name in kit if name.startswith(".config/ssl/cert/") and
             not name.endswith("ca.pem")]
    assert certs
    client_cert = x509.load_pem_x509_certificate(kit[certs[0]])
    assert client_cert.issuer == ca.subject
    client_cert.verify_directly_issued_by(ca)
    assert 8 <= len(attrs["PUPPET_ADMIN_PASSWORD"]) <= 32
    # PUPPET_API_CA_CERT is in every DescribeServers; the one-time credentials are not.
    described = _attrs(client.describe_servers(ServerName="kit-puppet")["Servers"][0])
    assert described == {"PUPPET_API_CA_CERT": ca_pem}


def test_embedded_kits_say_that_no_service_answers(cmhost: Cmhost) -> None:
    """cmhost serve's default engine keeps identities only; its kits say so, and how to get
    a real server."""
    client = cmhost.client()
    for name, engine, flag in [("kit-emb-chef", "Chef", "--chef-driver goiardi"),
                               ("kit-emb-puppet", "Puppet", "--puppet-driver puppetserver")]:
        server = create_server(client, name, engine)
        attrs = _attrs(server)
        readme = _kit(attrs[f"{engine.upper()}_STARTER_KIT"])["README.md"].decode()
        assert "embedded engine" in readme and flag in readme
        assert f"nothing answers at `{server['Endpoint']}`" in readme
        assert "client-tools" not in readme and "8170" not in readme
