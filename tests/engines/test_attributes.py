"""The CreateServer engine attribute rules."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from cmhost.engines import pki
from cmhost.engines.attributes import (
    chef_password_ok,
    engine_family,
    generate_chef_password,
    generate_puppet_password,
    puppet_password_ok,
    validate_create_attributes,
)
from cmhost.engines.base import InvalidEngineAttribute

GOOD_CHEF_PASSWORDS = ["Passw0rd!", "aB3&aB3&", "Zz9_" * 8, "My/Pass@2024#", "x%Y^1+=q"]
BAD_CHEF_PASSWORDS = [
    "Pa0!",  # too short
    "aB3!" * 8 + "x",  # 33 characters
    "password1!",  # no upper case
    "PASSWORD1!",  # no lower case
    "Password!!",  # no digit
    "Password11",  # no special
    "Passw0rd!*",  # '*' is not an allowed special
    "Pass w0rd!",  # space
    "Pässw0rd!",  # not ASCII
]


def test_engine_family() -> None:
    assert engine_family("Chef") == "Chef"
    assert engine_family("ChefAutomate") == "Chef"
    assert engine_family("Puppet") == "Puppet"
    for bad in ("chef", "Ansible", ""):
        with pytest.raises(ValueError):
            engine_family(bad)


def test_unknown_engine_is_an_invalid_attribute_error() -> None:
    with pytest.raises(InvalidEngineAttribute, match="Ansible"):
        validate_create_attributes("Ansible", [])


def test_no_attributes_is_fine() -> None:
    assert validate_create_attributes("Chef", []) == {}
    assert validate_create_attributes("Puppet", []) == {}


@pytest.mark.parametrize("password", GOOD_CHEF_PASSWORDS)
def test_good_chef_passwords(password: str) -> None:
    for name in ("CHEF_DELIVERY_ADMIN_PASSWORD", "CHEF_AUTOMATE_ADMIN_PASSWORD"):
        got = validate_create_attributes("ChefAutomate", [(name, password)])
        assert got == {"CHEF_DELIVERY_ADMIN_PASSWORD": password}


@pytest.mark.parametrize("password", BAD_CHEF_PASSWORDS)
def test_bad_chef_passwords_are_refused_without_echo(password: str) -> None:
    with pytest.raises(InvalidEngineAttribute, match="CHEF_DELIVERY_ADMIN_PASSWORD") as info:
        validate_create_attributes("Chef", [("CHEF_DELIVERY_ADMIN_PASSWORD", password)])
    assert password not in str(info.value)
    assert "8 to 32" in str(info.value)


@pytest.mark.parametrize("password", ["12345678", "with space ok", "~!@#$%^&*()_+{}", "x" * 32])
def test_good_puppet_passwords(password: str) -> None:
    assert validate_create_attributes("Puppet", [("PUPPET_ADMIN_PASSWORD", password)]) == {
        "PUPPET_ADMIN_PASSWORD": password
    }


@pytest.mark.parametrize(
    "password", ["short", "x" * 33, "tab\there!", "naïve-password", "a\nbcdefgh"]
)
def test_bad_puppet_passwords_are_refused_without_echo(password: str) -> None:
    with pytest.raises(InvalidEngineAttribute, match="PUPPET_ADMIN_PASSWORD") as info:
        validate_create_attributes("Puppet", [("PUPPET_ADMIN_PASSWORD", password)])
    assert password not in str(info.value)


def test_generated_passwords_always_satisfy_the_rules() -> None:
    chef = {generate_chef_password() for _ in range(300)}
    puppet = {generate_puppet_password() for _ in range(300)}
    assert all(chef_password_ok(pw) for pw in chef)
    assert all(puppet_password_ok(pw) for pw in puppet)
    assert len(chef) == 300 and len(puppet) == 300


def _der(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("name", ["CHEF_PIVOTAL_KEY", "CHEF_AUTOMATE_PIVOTAL_KEY"])
@pytest.mark.parametrize("form", ["pem", "base64_pem", "base64_der"])
def test_pivotal_key_forms_are_canonicalised_to_pem(
    rsa_key: rsa.RSAPrivateKey, name: str, form: str
) -> None:
    pem = pki.public_key_pem(rsa_key)
    value = {
        "pem": pem,
        "base64_pem": base64.b64encode(pem.encode()).decode(),
        "base64_der": base64.b64encode(_der(rsa_key)).decode(),
    }[form]
    assert validate_create_attributes("Chef", [(name, value)]) == {"CHEF_PIVOTAL_KEY": pem}


def test_pivotal_private_key_is_refused_without_echo(rsa_key: rsa.RSAPrivateKey) -> None:
    private = pki.private_key_pem(rsa_key)
    with pytest.raises(InvalidEngineAttribute, match="CHEF_PIVOTAL_KEY") as info:
        validate_create_attributes("Chef", [("CHEF_PIVOTAL_KEY", private)])
    assert "private key" in str(info.value)
    assert private.splitlines()[1] not in str(info.value)


def test_pivotal_key_must_be_rsa_and_strong() -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(InvalidEngineAttribute, match="RSA"):
        validate_create_attributes("Chef", [("CHEF_PIVOTAL_KEY", ec_pem)])
    weak = pki.public_key_pem(pki.generate_rsa_key(1024))
    with pytest.raises(InvalidEngineAttribute, match="2048"):
        validate_create_attributes("Chef", [("CHEF_PIVOTAL_KEY", weak)])
    with pytest.raises(InvalidEngineAttribute, match="CHEF_PIVOTAL_KEY"):
        validate_create_attributes("Chef", [("CHEF_PIVOTAL_KEY", "ssh-rsa AAAA not-a-pem")])


@pytest.mark.parametrize(
    ("engine", "name"),
    [
        ("Chef", "PUPPET_ADMIN_PASSWORD"),
        ("Chef", "CHEF_STARTER_KIT"),
        ("Chef", "CHEF_ORGANIZATION"),
        ("ChefAutomate", "chef_pivotal_key"),
        ("Puppet", "CHEF_PIVOTAL_KEY"),
        ("Puppet", "PUPPET_API_CA_CERT"),
        ("Puppet", "PUPPET_NODE_CSR"),
    ],
)
def test_attributes_not_accepted_on_create(engine: str, name: str) -> None:
    with pytest.raises(InvalidEngineAttribute, match=f"'{name}' is not accepted") as info:
        validate_create_attributes(engine, [(name, "value")])
    assert "accepted:" in str(info.value)


def test_attribute_given_twice_even_under_both_spellings(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = pki.public_key_pem(rsa_key)
    with pytest.raises(InvalidEngineAttribute, match="more than once"):
        validate_create_attributes(
            "Chef", [("CHEF_PIVOTAL_KEY", pem), ("CHEF_AUTOMATE_PIVOTAL_KEY", pem)]
        )
    with pytest.raises(InvalidEngineAttribute, match="more than once"):
        validate_create_attributes(
            "Puppet", [("PUPPET_R10K_REMOTE", "git@x:y.git"), ("PUPPET_R10K_REMOTE", "z")]
        )


@pytest.mark.parametrize(
    "attribute", [(None, "x"), ("", "x"), ("PUPPET_R10K_REMOTE", None), ("PUPPET_R10K_REMOTE", "")]
)
def test_missing_name_or_value(attribute: tuple[str | None, str | None]) -> None:
    with pytest.raises(InvalidEngineAttribute, match="needs a (Name|Value)"):
        validate_create_attributes("Puppet", [attribute])


def test_r10k_remote_is_kept() -> None:
    remote = "ssh://git@your.git-repo.com:user/control-repo.git"
    assert validate_create_attributes("Puppet", [("PUPPET_R10K_REMOTE", remote)]) == {
        "PUPPET_R10K_REMOTE": remote
    }
    with pytest.raises(InvalidEngineAttribute, match="PUPPET_R10K_REMOTE"):
        validate_create_attributes("Puppet", [("PUPPET_R10K_REMOTE", "git@x:y.git\nrm -rf /")])


def test_r10k_private_key_accepts_pem_and_openssh_keys(rsa_key: rsa.RSAPrivateKey) -> None:
    traditional = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    openssh = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )
    for key in (traditional, openssh, pki.private_key_pem(rsa_key)):
        got = validate_create_attributes("Puppet", [("PUPPET_R10K_PRIVATE_KEY", key)])
        assert got["PUPPET_R10K_PRIVATE_KEY"].strip() == key.strip()


def test_r10k_private_key_refuses_public_encrypted_and_garbage(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ).decode()
    broken = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
    for bad in (pki.public_key_pem(rsa_key), encrypted, broken, "just text"):
        with pytest.raises(InvalidEngineAttribute, match="PUPPET_R10K_PRIVATE_KEY") as info:
            validate_create_attributes("Puppet", [("PUPPET_R10K_PRIVATE_KEY", bad)])
        body_lines = [line for line in bad.splitlines() if "-----" not in line and len(line) > 12]
        assert not any(line in str(info.value) for line in body_lines)
    with pytest.raises(InvalidEngineAttribute, match="passphrase"):
        validate_create_attributes("Puppet", [("PUPPET_R10K_PRIVATE_KEY", encrypted)])
