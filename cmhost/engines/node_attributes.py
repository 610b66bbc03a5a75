"""The engine attribute rules of AssociateNode and DisassociateNode, the same for every driver."""

from __future__ import annotations

import regex

from cmhost.engines import pki
from cmhost.engines.base import EngineFamily, InvalidEngineAttribute, NodeAction

CHEF_ORGANIZATION = "CHEF_ORGANIZATION"
CHEF_NODE_PUBLIC_KEY = "CHEF_NODE_PUBLIC_KEY"
PUPPET_NODE_CSR = "PUPPET_NODE_CSR"
PUPPET_NODE_CERT = "PUPPET_NODE_CERT"

# The only organization a server has, as on the original service.
DEFAULT_ORGANIZATION = "default"

# The API's NodeName pattern; names become file names, so the length is bounded too.
NODE_NAME = regex.compile(r"[\-\p{Alnum}_:.]+")
NODE_NAME_MAX_BYTES = 200

# Accepted name -> canonical name, per family and action.
_ACCEPTED: dict[tuple[EngineFamily, NodeAction], dict[str, str]] = {
    ("Chef", "associate"): {
        CHEF_ORGANIZATION: CHEF_ORGANIZATION,
        "CHEF_AUTOMATE_ORGANIZATION": CHEF_ORGANIZATION,
        CHEF_NODE_PUBLIC_KEY: CHEF_NODE_PUBLIC_KEY,
        "CHEF_AUTOMATE_NODE_PUBLIC_KEY": CHEF_NODE_PUBLIC_KEY,
    },
    # AWS's own disassociate-node example sends the node's public key too.
    ("Chef", "disassociate"): {
        CHEF_ORGANIZATION: CHEF_ORGANIZATION,
        "CHEF_AUTOMATE_ORGANIZATION": CHEF_ORGANIZATION,
        CHEF_NODE_PUBLIC_KEY: CHEF_NODE_PUBLIC_KEY,
        "CHEF_AUTOMATE_NODE_PUBLIC_KEY": CHEF_NODE_PUBLIC_KEY,
    },
    ("Puppet", "associate"): {PUPPET_NODE_CSR: PUPPET_NODE_CSR},
    ("Puppet", "disassociate"): {},
}

_OPERATION = {"associate": "AssociateNode", "disassociate": "DisassociateNode"}


def node_name_problem(node_name: str) -> str:
    """Why `node_name` cannot name a node ("" when it can)."""
    if not NODE_NAME.fullmatch(node_name):
        return "NodeName may only hold letters, digits, '-', '_', ':' and '.'"
    if node_name in (".", "..") or len(node_name.encode("utf-8")) > NODE_NAME_MAX_BYTES:
        return f"NodeName must be 1 to {NODE_NAME_MAX_BYTES} bytes and not '.' or '..'"
    return ""


def _canonical_names(
    family: EngineFamily, action: NodeAction, engine: str, attributes: dict[str, str]
) -> dict[str, tuple[str, str]]:
    """Canonical name -> (given name, value), refusing unknown, repeated and empty ones."""
    accepted = _ACCEPTED[(family, action)]
    operation = _OPERATION[action]
    given: dict[str, tuple[str, str]] = {}
    for name, value in attributes.items():
        if name not in accepted:
            allowed = ", ".join(sorted(accepted)) or "none"
            raise InvalidEngineAttribute(
                f"Engine attribute {name[:64]!r} is not accepted on {operation} for {engine}; "
                f"accepted: {allowed}"
            )
        canonical = accepted[name]
        if canonical in given:
            raise InvalidEngineAttribute(
                f"Engine attribute {name} is given more than once (as {given[canonical][0]})"
            )
        if not value or not value.strip():
            raise InvalidEngineAttribute(f"Engine attribute {name} needs a Value")
        given[canonical] = (name, value)
    return given


def _organization(given: dict[str, tuple[str, str]]) -> str:
    name, value = given.get(CHEF_ORGANIZATION, (CHEF_ORGANIZATION, DEFAULT_ORGANIZATION))
    if value.strip() != DEFAULT_ORGANIZATION:
        raise InvalidEngineAttribute(
            f"{name} must be {DEFAULT_ORGANIZATION!r}: a server has one organization, "
            f"{DEFAULT_ORGANIZATION!r}"
        )
    return DEFAULT_ORGANIZATION


def _node_public_key(given: dict[str, tuple[str, str]]) -> str:
    if CHEF_NODE_PUBLIC_KEY not in given:
        raise InvalidEngineAttribute(
            f"AssociateNode on a Chef server needs {CHEF_NODE_PUBLIC_KEY}, the node's RSA "
            "public key in PEM (BEGIN PUBLIC KEY)"
        )
    name, value = given[CHEF_NODE_PUBLIC_KEY]
    try:
        key = pki.load_public_key(value)
    except ValueError as exc:
        raise InvalidEngineAttribute(
            f"{name} must be the node's RSA public key in PEM (BEGIN PUBLIC KEY): {exc}"
        ) from None
    if key.key_size < 2048:
        raise InvalidEngineAttribute(f"{name} must be an RSA key of at least 2048 bits")
    return pki.public_key_pem(key)


def _node_csr(given: dict[str, tuple[str, str]], node_name: str) -> str:
    if PUPPET_NODE_CSR not in given:
        raise InvalidEngineAttribute(
            f"AssociateNode on a Puppet server needs {PUPPET_NODE_CSR}, the node's "
            "certificate signing request in PEM"
        )
    try:
        csr = pki.load_csr(given[PUPPET_NODE_CSR][1], expected_cn=node_name)
    except ValueError as exc:
        raise InvalidEngineAttribute(f"{PUPPET_NODE_CSR} is not acceptable: {exc}") from None
    return pki.csr_to_pem(csr)


def check_node_attributes(
    family: EngineFamily,
    engine: str,
    action: NodeAction,
    node_name: str,
    attributes: dict[str, str],
) -> dict[str, str]:
    """Check the EngineAttributes of AssociateNode/DisassociateNode; return canonical ones.

    Chef: CHEF_ORGANIZATION (`default`, also when absent) and, to associate,
    CHEF_NODE_PUBLIC_KEY (canonical SubjectPublicKeyInfo PEM). To disassociate, a
    CHEF_NODE_PUBLIC_KEY may come along (as in AWS's example): it must be an RSA public key
    as on AssociateNode, and is then left out, since NodeName alone names the node. Puppet:
    PUPPET_NODE_CSR (to associate; its CN must be the node name) and nothing to
    disassociate. Raises InvalidEngineAttribute with a message that never repeats a key or
    a CSR.
    """
    problem = node_name_problem(node_name)
    if problem:
        raise InvalidEngineAttribute(problem)
    given = _canonical_names(family, action, engine, attributes)
    if family == "Chef":
        result = {CHEF_ORGANIZATION: _organization(given)}
        if action == "associate":
            result[CHEF_NODE_PUBLIC_KEY] = _node_public_key(given)
        elif CHEF_NODE_PUBLIC_KEY in given:
            _node_public_key(given)
        return result
    if action == "associate":
        return {PUPPET_NODE_CSR: _node_csr(given, node_name)}
    return {}
