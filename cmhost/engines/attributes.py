"""The engine attribute rules of CreateServer, the same for every driver."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from cmhost.engines import pki
from cmhost.engines.base import EngineFamily, InvalidEngineAttribute

CHEF_PIVOTAL_KEY = "CHEF_PIVOTAL_KEY"
CHEF_DELIVERY_ADMIN_PASSWORD = "CHEF_DELIVERY_ADMIN_PASSWORD"
PUPPET_ADMIN_PASSWORD = "PUPPET_ADMIN_PASSWORD"
PUPPET_R10K_REMOTE = "PUPPET_R10K_REMOTE"
PUPPET_R10K_PRIVATE_KEY = "PUPPET_R10K_PRIVATE_KEY"

_FAMILIES: dict[str, EngineFamily] = {"Chef": "Chef", "ChefAutomate": "Chef", "Puppet": "Puppet"}

# Accepted name on CreateServer -> canonical name.
_ACCEPTED: dict[EngineFamily, dict[str, str]] = {
    "Chef": {
        CHEF_PIVOTAL_KEY: CHEF_PIVOTAL_KEY,
        "CHEF_AUTOMATE_PIVOTAL_KEY": CHEF_PIVOTAL_KEY,
        CHEF_DELIVERY_ADMIN_PASSWORD: CHEF_DELIVERY_ADMIN_PASSWORD,
        "CHEF_AUTOMATE_ADMIN_PASSWORD": CHEF_DELIVERY_ADMIN_PASSWORD,
    },
    "Puppet": {
        PUPPET_ADMIN_PASSWORD: PUPPET_ADMIN_PASSWORD,
        PUPPET_R10K_REMOTE: PUPPET_R10K_REMOTE,
        PUPPET_R10K_PRIVATE_KEY: PUPPET_R10K_PRIVATE_KEY,
    },
}

CHEF_PASSWORD_SPECIALS = "!/@#$%^&+=_"
_CHEF_PASSWORD_CHARS = string.ascii_letters + string.digits + CHEF_PASSWORD_SPECIALS
_CHEF_PASSWORD_RULE = (
    "8 to 32 characters of letters, digits and the special characters !/@#$%^&+=_, with at "
    "least one lower-case letter, one upper-case letter, one digit and one special character"
)
_PUPPET_PASSWORD_RULE = "8 to 32 printable ASCII characters"
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]{8,32}")
_PUPPET_GENERATED_CHARS = string.ascii_letters + string.digits + "!@#%^+=_"


def engine_family(engine: str) -> EngineFamily:
    """The family of an Engine value: "Chef" for Chef and ChefAutomate, "Puppet" for Puppet."""
    try:
        return _FAMILIES[engine]
    except KeyError:
        raise ValueError(
            f"Engine {engine[:64]!r} is not supported; use one of Chef, ChefAutomate, Puppet"
        ) from None


def chef_password_ok(pw: str) -> bool:
    """True when the password meets the Chef Automate admin password rule."""
    return (
        8 <= len(pw) <= 32
        and all(c in _CHEF_PASSWORD_CHARS for c in pw)
        and any(c in string.ascii_lowercase for c in pw)
        and any(c in string.ascii_uppercase for c in pw)
        and any(c in string.digits for c in pw)
        and any(c in CHEF_PASSWORD_SPECIALS for c in pw)
    )


def puppet_password_ok(pw: str) -> bool:
    """True when the password meets the Puppet admin password rule."""
    return _PRINTABLE_ASCII.fullmatch(pw) is not None


def generate_chef_password() -> str:
    """A random Chef admin password that always satisfies the rule."""
    return pki.random_password(
        20,
        _CHEF_PASSWORD_CHARS,
        required=(
            string.ascii_lowercase,
            string.ascii_uppercase,
            string.digits,
            CHEF_PASSWORD_SPECIALS,
        ),
    )


def generate_puppet_password() -> str:
    """A random Puppet admin password that always satisfies the rule."""
    return pki.random_password(20, _PUPPET_GENERATED_CHARS)


def _check_pivotal_key(name: str, value: str) -> str:
    try:
        key = pki.load_public_key(value)
    except ValueError as exc:
        raise InvalidEngineAttribute(
            f"{name} must be the public half of an RSA key in PEM (BEGIN PUBLIC KEY), or "
            f"base64 of PEM or DER: {exc}"
        ) from None
    if key.key_size < 2048:
        raise InvalidEngineAttribute(f"{name} must be an RSA key of at least 2048 bits")
    return pki.public_key_pem(key)


def _check_chef_password(name: str, value: str) -> str:
    if not chef_password_ok(value):
        raise InvalidEngineAttribute(f"{name} must be {_CHEF_PASSWORD_RULE}")
    return value


def _check_puppet_password(name: str, value: str) -> str:
    if not puppet_password_ok(value):
        raise InvalidEngineAttribute(f"{name} must be {_PUPPET_PASSWORD_RULE}")
    return value


def _check_r10k_remote(name: str, value: str) -> str:
    if len(value) > 2048 or any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidEngineAttribute(
            f"{name} must be the URL of a Git repository, without spaces "
            "(for example ssh://git@example.com/user/control-repo.git)"
        )
    return value


def _check_r10k_private_key(name: str, value: str) -> str:
    data = value.strip().encode("utf-8", "replace")
    problem = f"{name} must be an unencrypted PEM-encoded private SSH key"
    if not data.startswith(b"-----BEGIN") or b"PRIVATE KEY-----" not in data:
        raise InvalidEngineAttribute(problem)
    loaders = (serialization.load_ssh_private_key, serialization.load_pem_private_key)
    for load in loaders:
        try:
            load(data, password=None)
        except TypeError:
            raise InvalidEngineAttribute(
                f"{problem}; this one is protected by a passphrase"
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            continue
        return value.strip() + "\n"
    raise InvalidEngineAttribute(f"{problem}; it could not be read")


_CHECKS: dict[str, Callable[[str, str], str]] = {
    CHEF_PIVOTAL_KEY: _check_pivotal_key,
    CHEF_DELIVERY_ADMIN_PASSWORD: _check_chef_password,
    PUPPET_ADMIN_PASSWORD: _check_puppet_password,
    PUPPET_R10K_REMOTE: _check_r10k_remote,
    PUPPET_R10K_PRIVATE_KEY: _check_r10k_private_key,
}


def validate_create_attributes(
    engine: str, attributes: Sequence[tuple[str | None, str | None]]
) -> dict[str, str]:
    """Check CreateServer EngineAttributes; return canonical names mapped to canonical values.

    Raises InvalidEngineAttribute with a message that names the attribute but never repeats
    its value.
    """
    try:
        family = engine_family(engine)
    except ValueError as exc:
        raise InvalidEngineAttribute(str(exc)) from None
    accepted = _ACCEPTED[family]
    result: dict[str, str] = {}
    given: dict[str, str] = {}
    for name, value in attributes:
        if not name:
            raise InvalidEngineAttribute("Every engine attribute needs a Name")
        if name not in accepted:
            raise InvalidEngineAttribute(
                f"Engine attribute {name[:64]!r} is not accepted on CreateServer for {engine}; "
                f"accepted: {', '.join(sorted(accepted))}"
            )
        canonical = accepted[name]
        if canonical in given:
            first = given[canonical]
            also = "" if first == name else f" (as {first})"
            raise InvalidEngineAttribute(f"Engine attribute {name} is given more than once{also}")
        given[canonical] = name
        if not value:
            raise InvalidEngineAttribute(f"Engine attribute {name} needs a Value")
        result[canonical] = _CHECKS[canonical](name, value)
    return result


# UpdateServerEngineAttributes: accepted AttributeName -> canonical name, per family.
_UPDATABLE: dict[EngineFamily, dict[str, str]] = {
    "Chef": {CHEF_PIVOTAL_KEY: CHEF_PIVOTAL_KEY, "CHEF_AUTOMATE_PIVOTAL_KEY": CHEF_PIVOTAL_KEY},
    "Puppet": {PUPPET_ADMIN_PASSWORD: PUPPET_ADMIN_PASSWORD},
}


def check_update_attribute(engine: str, name: str, value: str | None) -> tuple[str, str | None]:
    """Check an UpdateServerEngineAttributes request: (canonical name, canonical value or None).

    CHEF_PIVOTAL_KEY (or CHEF_AUTOMATE_PIVOTAL_KEY) on Chef takes an RSA public key;
    PUPPET_ADMIN_PASSWORD on Puppet a password meeting the Puppet rule. An empty value means
    "generate one". Raises InvalidEngineAttribute without repeating the value.
    """
    try:
        family = engine_family(engine)
    except ValueError as exc:
        raise InvalidEngineAttribute(str(exc)) from None
    accepted = _UPDATABLE[family]
    if name not in accepted:
        raise InvalidEngineAttribute(
            f"AttributeName {name[:64]!r} cannot be updated on a {engine} server; "
            f"accepted: {', '.join(sorted(accepted))}"
        )
    canonical = accepted[name]
    if not value:
        return canonical, None
    return canonical, _CHECKS[canonical](name, value)
