"""CreateServer engine attributes, one-time credentials, custom domains and tags, via boto3."""

from __future__ import annotations

import base64
import datetime as dt
import io
import zipfile
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.integration.helpers import (
    all_tags,
    attrs,
    certificate,
    ec_key,
    expect_error,
    make_healthy,
    one_violation,
    private_pem,
    public_pem,
    quick_server,
    rsa_key,
    user_pivotal_key,
    violation,
)
from tests.support import Cmhost, create_server

ONE_TIME_CHEF = {"CHEF_PIVOTAL_KEY", "CHEF_DELIVERY_ADMIN_PASSWORD", "CHEF_STARTER_KIT"}
ONE_TIME_PUPPET = {"PUPPET_ADMIN_PASSWORD", "PUPPET_STARTER_KIT"}
CHEF_SPECIALS = "!/@#$%^&+=_"
DOMAIN = "chef.example.com"
DOMAIN_PATTERN = (r"^(((?!-)[A-Za-z0-9-]{0,62}[A-Za-z0-9])\.)+"
                  r"((?!-)[A-Za-z0-9-]{1,62}[A-Za-z0-9])$")
TAG_PATTERN = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"


def attr(name: str, value: str) -> dict[str, str]:
    return {"Name": name, "Value": value}


def unzip(b64: str) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(b64))) as kit:
        assert kit.testzip() is None
        return {info.filename: kit.read(info) for info in kit.infolist() if not info.is_dir()}


def chef_password_ok(pw: str) -> bool:
    return (8 <= len(pw) <= 32 and any(c.islower() for c in pw) and any(c.isupper() for c in pw)
            and any(c.isdigit() for c in pw) and any(c in CHEF_SPECIALS for c in pw)
            and all(c.isascii() and (c.isalnum() or c in CHEF_SPECIALS) for c in pw))


def all_views(client: Any, name: str) -> list[dict[str, Any]]:
    """The server as DescribeServers shows it: by name and in the full listing."""
    by_name = client.describe_servers(ServerName=name)["Servers"][0]
    listed = [s for s in client.describe_servers()["Servers"] if s["ServerName"] == name]
    assert len(listed) == 1
    return [by_name, listed[0]]


@pytest.fixture(scope="module")
def domain_key() -> rsa.RSAPrivateKey:
    return rsa_key()


# --- one-time credentials --------------------------------------------------------------------


def test_chef_credentials_only_in_the_create_response(cmhost: Cmhost, rclient: Any) -> None:
    server = create_server(rclient, "chef-creds")
    given = attrs(server)
    assert ONE_TIME_CHEF <= set(given)
    key = serialization.load_pem_private_key(given["CHEF_PIVOTAL_KEY"].encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048
    assert chef_password_ok(given["CHEF_DELIVERY_ADMIN_PASSWORD"])
    kit = unzip(given["CHEF_STARTER_KIT"])
    private = [body for path, body in kit.items() if path.endswith(".chef/private.pem")]
    assert private and private[0].decode().strip() == given["CHEF_PIVOTAL_KEY"].strip()
    assert any(server["Endpoint"].encode() in body for body in kit.values())
    for view in all_views(rclient, "chef-creds"):
        assert not ONE_TIME_CHEF & set(attrs(view)), attrs(view).keys()
    make_healthy(cmhost)
    updated = rclient.update_server(ServerName="chef-creds", BackupRetentionCount=2)["Server"]
    assert not ONE_TIME_CHEF & set(attrs(updated))
    for view in all_views(rclient, "chef-creds"):
        assert view["Status"] == "HEALTHY"
        assert not ONE_TIME_CHEF & set(attrs(view))


def test_puppet_credentials_and_ca_cert(cmhost: Cmhost, rclient: Any) -> None:
    server = create_server(rclient, "puppet-creds", "Puppet")
    given = attrs(server)
    assert ONE_TIME_PUPPET | {"PUPPET_API_CA_CERT"} <= set(given)
    password = given["PUPPET_ADMIN_PASSWORD"]
    assert 8 <= len(password) <= 32 and password.isascii() and password.isprintable()
    assert unzip(given["PUPPET_STARTER_KIT"])
    ca = x509.load_pem_x509_certificate(given["PUPPET_API_CA_CERT"].encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for view in all_views(rclient, "puppet-creds"):
        assert attrs(view) == {"PUPPET_API_CA_CERT": given["PUPPET_API_CA_CERT"]}
    make_healthy(cmhost)
    updated = rclient.update_server(ServerName="puppet-creds", BackupRetentionCount=2)["Server"]
    assert attrs(updated) == {"PUPPET_API_CA_CERT": given["PUPPET_API_CA_CERT"]}
    for view in all_views(rclient, "puppet-creds"):
        assert attrs(view) == {"PUPPET_API_CA_CERT": given["PUPPET_API_CA_CERT"]}


# --- Chef attributes -------------------------------------------------------------------------


def test_own_pivotal_key_and_password(rclient: Any) -> None:
    server = quick_server(rclient, "own-key")
    given = attrs(server)
    # The user holds the private key and knows the password: neither comes back.
    assert "CHEF_PIVOTAL_KEY" not in given and "CHEF_AUTOMATE_PIVOTAL_KEY" not in given
    assert "CHEF_DELIVERY_ADMIN_PASSWORD" not in given
    assert "CHEF_STARTER_KIT" in given
    kit = unzip(given["CHEF_STARTER_KIT"])
    assert not any(b"PRIVATE KEY-----" in body and path.endswith(".pem")
                   for path, body in kit.items())


def test_chef_automate_spelling(rclient: Any) -> None:
    password = "Zz9" + "&" + "a" * 28
    assert len(password) == 32
    # "A base64-encoded RSA public key": here base64 of the DER SubjectPublicKeyInfo.
    der = user_pivotal_key().public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    server = create_server(rclient, "automate-spelling", EngineAttributes=[
        attr("CHEF_AUTOMATE_PIVOTAL_KEY", base64.b64encode(der).decode()),
        attr("CHEF_AUTOMATE_ADMIN_PASSWORD", password)])
    given = attrs(server)
    assert not {"CHEF_PIVOTAL_KEY", "CHEF_AUTOMATE_PIVOTAL_KEY"} & set(given)
    assert password not in given.values()


@pytest.mark.parametrize("password", [
    "Abcde1!",              # 7 characters
    "Abcdefgh1!" + "x" * 23,  # 33 characters
    "abcdefg1!",            # no upper-case letter
    "ABCDEFG1!",            # no lower-case letter
    "Abcdefgh!",            # no digit
    "Abcdefg12",            # no special character
    "Abcdef1!~",            # ~ is not an allowed character
    "Abcd ef1!",            # nor is a space
])
@pytest.mark.parametrize("spelling", ["CHEF_DELIVERY_ADMIN_PASSWORD",
                                      "CHEF_AUTOMATE_ADMIN_PASSWORD"])
def test_bad_chef_passwords(client: Any, password: str, spelling: str) -> None:
    err = expect_error(create_server, "ValidationException", client=client, name="chef-pw",
                       EngineAttributes=[attr(spelling, password)])
    assert password not in err.response["Error"]["Message"]
    expect_error(client.describe_servers, "ResourceNotFoundException", ServerName="chef-pw")


@pytest.mark.parametrize(("engine", "attributes"), [
    ("Chef", [attr("CHEF_FOO", "x")]),
    ("Chef", [attr("PUPPET_ADMIN_PASSWORD", "Puppet-Admin-1")]),
    ("Chef", [attr("CHEF_STARTER_KIT", "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==")]),
    ("Chef", [attr("CHEF_DELIVERY_ADMIN_PASSWORD", "Abcdef1!x"),
              attr("CHEF_AUTOMATE_ADMIN_PASSWORD", "Abcdef1!x")]),
    ("Chef", [attr("CHEF_DELIVERY_ADMIN_PASSWORD", "")]),
    ("Chef", [{"Value": "Abcdef1!x"}]),
    ("Chef", [attr("CHEF_PIVOTAL_KEY", "not a key")]),
    ("Puppet", [attr("PUPPET_FOO", "x")]),
    ("Puppet", [attr("CHEF_PIVOTAL_KEY", "not used")]),
    ("Puppet", [attr("CHEF_DELIVERY_ADMIN_PASSWORD", "Abcdef1!x")]),
    ("Puppet", [attr("PUPPET_ADMIN_PASSWORD", "short1!")]),
    ("Puppet", [attr("PUPPET_ADMIN_PASSWORD", "x" * 33)]),
    ("Puppet", [attr("PUPPET_ADMIN_PASSWORD", "pässwörd-1234")]),
    ("Puppet", [attr("PUPPET_R10K_REMOTE", "ssh://git@example.com/my repo.git")]),
    ("Puppet", [attr("PUPPET_R10K_PRIVATE_KEY", "not a key")]),
])
def test_bad_engine_attributes(client: Any, engine: str, attributes: list[dict[str, str]]
                               ) -> None:
    expect_error(create_server, "ValidationException", client=client, name="attr-bad",
                 engine=engine, EngineAttributes=attributes)
    expect_error(client.describe_servers, "ResourceNotFoundException", ServerName="attr-bad")


def test_bad_pivotal_keys_are_refused_without_echoing_secrets(client: Any) -> None:
    private = private_pem(rsa_key())
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    for value in (private, public_pem(short)):
        err = expect_error(create_server, "ValidationException", client=client,
                           name="pivotal-bad", EngineAttributes=[attr("CHEF_PIVOTAL_KEY", value)])
        assert "PRIVATE KEY" not in err.response["Error"]["Message"]


def test_puppet_attributes(rclient: Any) -> None:
    ssh_key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()).decode()
    server = create_server(rclient, "puppet-attrs", "Puppet", EngineAttributes=[
        attr("PUPPET_ADMIN_PASSWORD", "Puppet-Admin 2019!"),
        attr("PUPPET_R10K_REMOTE", "ssh://git@example.com/user/control-repo.git"),
        attr("PUPPET_R10K_PRIVATE_KEY", ssh_key)])
    given = attrs(server)
    assert given.get("PUPPET_ADMIN_PASSWORD", "Puppet-Admin 2019!") == "Puppet-Admin 2019!"
    assert "PUPPET_STARTER_KIT" in given and "PUPPET_API_CA_CERT" in given
    assert ssh_key not in given.values()
    described = rclient.describe_servers(ServerName="puppet-attrs")["Servers"][0]
    assert set(attrs(described)) == {"PUPPET_API_CA_CERT"}


def test_encrypted_r10k_key_is_refused(client: Any) -> None:
    encrypted = private_pem(ec_key(), password=b"passphrase")
    expect_error(create_server, "ValidationException", client=client, name="r10k",
                 engine="Puppet", EngineAttributes=[attr("PUPPET_R10K_PRIVATE_KEY", encrypted)])


# --- custom domain ---------------------------------------------------------------------------


def test_custom_domain_self_signed(rclient: Any, domain_key: rsa.RSAPrivateKey) -> None:
    server = quick_server(rclient, "custom", CustomDomain=DOMAIN,
                          CustomCertificate=certificate(domain_key, DOMAIN),
                          CustomPrivateKey=private_pem(domain_key))
    assert server["CustomDomain"] == DOMAIN
    described = rclient.describe_servers(ServerName="custom")["Servers"][0]
    assert described["CustomDomain"] == DOMAIN
    assert "CustomPrivateKey" not in described and "CustomCertificate" not in described


def test_custom_domain_with_a_chain(rclient: Any, domain_key: rsa.RSAPrivateKey) -> None:
    ca_key = ec_key()
    ca = certificate(ca_key, "Example Root CA", ca=True)
    leaf = certificate(domain_key, "puppet.example.com", issuer_key=ca_key,
                       issuer_name="Example Root CA")
    server = create_server(rclient, "custom-chain", "Puppet", CustomDomain="puppet.example.com",
                           CustomCertificate=leaf + ca, CustomPrivateKey=private_pem(domain_key))
    assert server["CustomDomain"] == "puppet.example.com"


def test_custom_domain_needs_all_three(client: Any, domain_key: rsa.RSAPrivateKey) -> None:
    trio = {"CustomDomain": DOMAIN, "CustomCertificate": certificate(domain_key, DOMAIN),
            "CustomPrivateKey": private_pem(domain_key)}
    for left_out in [(), ("CustomDomain",), ("CustomCertificate",), ("CustomPrivateKey",)]:
        for given, value in trio.items():
            if given in left_out:
                continue
            params = {given: value} if left_out == () else \
                {k: v for k, v in trio.items() if k not in left_out}
            expect_error(create_server, "ValidationException", client=client,
                         name="custom-bad", **params)
    expect_error(client.describe_servers, "ResourceNotFoundException", ServerName="custom-bad")


def _certificate_for(case: str, key: rsa.RSAPrivateKey) -> str:
    now = dt.datetime.now(dt.UTC)
    if case == "does-not-parse":
        return ("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                "-----END CERTIFICATE-----\n")
    if case == "key-does-not-match":
        return certificate(ec_key(), DOMAIN)
    if case == "other-domain":
        return certificate(key, "other.example.org")
    if case == "expired":
        return certificate(key, DOMAIN, not_before=now - dt.timedelta(days=30),
                           not_after=now - dt.timedelta(days=1))
    assert case == "not-yet-valid"
    return certificate(key, DOMAIN, not_before=now + dt.timedelta(days=30),
                       not_after=now + dt.timedelta(days=60))


@pytest.mark.parametrize("case", ["does-not-parse", "key-does-not-match", "other-domain",
                                  "expired", "not-yet-valid"])
def test_custom_certificate_problems(client: Any, domain_key: rsa.RSAPrivateKey,
                                     case: str) -> None:
    key = private_pem(domain_key)
    name = f"cert-{case}"
    err = expect_error(create_server, "ValidationException", client=client, name=name,
                       CustomDomain=DOMAIN, CustomCertificate=_certificate_for(case, domain_key),
                       CustomPrivateKey=key)
    assert key not in err.response["Error"]["Message"]
    expect_error(client.describe_servers, "ResourceNotFoundException", ServerName=name)


def test_custom_private_key_problems(client: Any, domain_key: rsa.RSAPrivateKey) -> None:
    cert = certificate(domain_key, DOMAIN)
    encrypted = private_pem(domain_key, password=b"secret")
    assert "ENCRYPTED PRIVATE KEY" in encrypted
    garbage = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
    for key in (encrypted, garbage, private_pem(rsa_key())):
        expect_error(create_server, "ValidationException", client=client, name="custom-key",
                     CustomDomain=DOMAIN, CustomCertificate=cert, CustomPrivateKey=key)


def test_custom_domain_pattern(client: Any, domain_key: rsa.RSAPrivateKey) -> None:
    expect_error(create_server, "ValidationException", one_violation(violation(
        "-chef.example.com", "customDomain",
        f"satisfy regular expression pattern: {DOMAIN_PATTERN}")),
        client=client, name="custom-pattern", CustomDomain="-chef.example.com",
        CustomCertificate=certificate(domain_key, DOMAIN),
        CustomPrivateKey=private_pem(domain_key))


# --- tags ------------------------------------------------------------------------------------


def test_fifty_tags_on_create_are_listed(rclient: Any) -> None:
    tags = {f"key-{i:02d}": f"value {i}" for i in range(50)}
    tags["team:owner/é"] = "Ops@example.com"
    del tags["key-49"]
    server = quick_server(rclient, "tagged",
                          Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    assert "Tags" not in server
    assert all_tags(rclient, server["ServerArn"]) == tags
    listed = rclient.list_tags_for_resource(ResourceArn=server["ServerArn"])
    assert "NextToken" not in listed and len(listed["Tags"]) == 50
    assert "Tags" not in rclient.describe_servers(ServerName="tagged")["Servers"][0]


def test_bad_tags_on_create(client: Any) -> None:
    too_many = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    expect_error(create_server, "ValidationException", client=client, name="tag-bad",
                 Tags=too_many)
    for key in ("aws:team", "aws:cloudformation:stack-name"):
        expect_error(create_server, "ValidationException", client=client, name="tag-bad",
                     Tags=[{"Key": key, "Value": "x"}])
    expect_error(create_server, "ValidationException", one_violation(violation(
        "bad#key", "tags.1.member.key", f"satisfy regular expression pattern: {TAG_PATTERN}")),
        client=client, name="tag-bad", Tags=[{"Key": "bad#key", "Value": "x"}])
    expect_error(create_server, "ValidationException", one_violation(violation(
        "k" * 129, "tags.2.member.key", "have length less than or equal to 128")),
        client=client, name="tag-bad",
        Tags=[{"Key": "fine", "Value": "x"}, {"Key": "k" * 129, "Value": "x"}])
    expect_error(client.describe_servers, "ResourceNotFoundException", ServerName="tag-bad")
