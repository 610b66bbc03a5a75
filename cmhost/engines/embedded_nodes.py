"""The embedded engine's nodes: Chef client keys and Puppet certificates on disk, with a CRL.

Layout under the server's state directory: `nodes/<node>.json` (one record per node),
`revoked.json` (Puppet: every revoked serial, the source of `crl.pem`) and `crl.pem` (an X.509
CRL signed by the server's CA). Callers hold the server's lock while changing anything.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from cmhost.engines import crl, pki
from cmhost.engines.base import EngineError, EngineMaterial, InvalidEngineAttribute
from cmhost.engines.issuance import Issued, open_ledger
from cmhost.engines.node_attributes import PUPPET_NODE_CERT, node_name_problem
from cmhost.engines.statedir import write_atomic

NODES_DIR = "nodes"
CRL_FILE = "crl.pem"
REVOKED_FILE = "revoked.json"
_SUFFIX = ".json"
# A node certificate this close to its end is re-issued when the node associates again.
RENEW_BEFORE = dt.timedelta(days=30)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _dump(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def node_path(root: Path, node_name: str) -> Path:
    """The record file of a node; EngineError for a name that could leave `nodes/`."""
    problem = node_name_problem(node_name)  # the pattern allows no '/' and no NUL
    if problem:
        raise EngineError(problem)
    return root / NODES_DIR / f"{node_name}{_SUFFIX}"


def read_node(root: Path, node_name: str) -> dict[str, Any] | None:
    """The node's record, or None when the node is not associated."""
    try:
        text = node_path(root, node_name).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        raise EngineError(f"The record of node {node_name!r} is damaged.") from None
    if not isinstance(record, dict):
        raise EngineError(f"The record of node {node_name!r} is damaged.")
    return record


def node_names(root: Path) -> list[str]:
    """The associated nodes, sorted; [] when the server has no state."""
    directory = root / NODES_DIR
    if not directory.is_dir():
        return []
    return sorted(
        p.name[: -len(_SUFFIX)]
        for p in directory.iterdir()
        if p.name.endswith(_SUFFIX) and p.is_file()
    )


def _require_state(root: Path) -> None:
    if not (root / NODES_DIR).is_dir():
        raise EngineError(
            "The server's node registry is missing; maintenance or a restore brings it back."
        )


# ------------------------------------------------------------------------------ Chef


def associate_chef(root: Path, node_name: str, organization: str, public_key_pem: str) -> None:
    """Register (or replace) the node's client key: from now on only this key is accepted."""
    _require_state(root)
    key_pem = pki.public_key_pem(pki.load_public_key(public_key_pem))
    old = read_node(root, node_name)
    same = old is not None and old.get("public_key") == key_pem
    record = {
        "name": node_name,
        "family": "Chef",
        "organization": organization,
        "public_key": key_pem,
        "associated_at": str(old["associated_at"]) if same and old else _now().isoformat(),
    }
    write_atomic(node_path(root, node_name), _dump(record))


def accepts_client(root: Path, node_name: str, data: bytes, signature: bytes) -> bool:
    """True when `signature` (RSA PKCS#1 v1.5, SHA-256) of `data` is by the node's key."""
    if node_name_problem(node_name):
        return False
    try:
        record = read_node(root, node_name)
    except EngineError:
        return False
    key = record.get("public_key") if record else None
    return isinstance(key, str) and pki.verify_signature(key, data, signature)


# ---------------------------------------------------------------------------- Puppet


def _revocations(root: Path) -> dict[str, Any]:
    try:
        state = json.loads((root / REVOKED_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"crl_number": 0, "revoked": []}
    except ValueError:
        raise EngineError("The revocation list (revoked.json) is damaged.") from None
    try:
        int(state["crl_number"])
        for entry in state["revoked"]:
            int(entry["serial"])
            dt.datetime.fromisoformat(entry["revoked_at"])
    except (KeyError, TypeError, ValueError):
        raise EngineError("The revocation list (revoked.json) is damaged.") from None
    return state


def _revoked_serials(state: dict[str, Any]) -> set[int]:
    return {int(entry["serial"]) for entry in state["revoked"]}


def _ca(material: EngineMaterial) -> tuple[str, str]:
    """The CA certificate and key that sign node certificates and the CRL."""
    ca_cert, ca_key = material.public.get("ca_cert"), material.secrets.get("ca_key")
    if not ca_cert or not ca_key:
        raise EngineError("The server's engine material lacks its CA certificate or key.")
    return ca_cert, ca_key


def _serial(record: dict[str, Any], node_name: str) -> int | None:
    try:
        return None if record.get("serial") is None else int(record["serial"])
    except (TypeError, ValueError):
        raise EngineError(f"The record of node {node_name!r} is damaged.") from None


def _signed_crl(state: dict[str, Any], material: EngineMaterial,
                revoke: list[tuple[int, str]]) -> tuple[str, str]:
    """(revoked.json, crl.pem) of `state` with the (serial, node) pairs added and the CRL
    number moved on; `state` is changed in place."""
    listed = _revoked_serials(state)
    for serial, node in revoke:
        if serial not in listed:
            listed.add(serial)
            state["revoked"].append(
                {"serial": str(serial), "node": node,
                 "revoked_at": crl.revocation_time().isoformat()}
            )
    state["crl_number"] = int(state["crl_number"]) + 1
    entries = [
        (int(e["serial"]), dt.datetime.fromisoformat(e["revoked_at"])) for e in state["revoked"]
    ]
    ca_cert, ca_key = _ca(material)
    text = crl.build_crl(ca_cert, ca_key, entries, number=state["crl_number"])
    return _dump(state), text


def write_crl(
    root: Path, material: EngineMaterial, *, revoke: tuple[int, str] | None = None
) -> None:
    """Re-sign `crl.pem` from `revoked.json`, first adding (serial, node) when given."""
    revoked_json, text = _signed_crl(_revocations(root), material,
                                     [revoke] if revoke is not None else [])
    # revoked.json is the truth; crl.pem is rebuilt from it, so write it first.
    write_atomic(root / REVOKED_FILE, revoked_json)
    write_atomic(root / CRL_FILE, text)


def _reusable(
    record: dict[str, Any] | None,
    csr_pem: str,
    node_name: str,
    material: EngineMaterial,
    revoked: set[int],
) -> str | None:
    """The node's current certificate when it already certifies the CSR's key and is good."""
    cert = record.get("certificate") if record else None
    if not isinstance(cert, str):
        return None
    csr = pki.load_csr(csr_pem, expected_cn=node_name)
    if not pki.certificate_matches_csr(cert, csr):
        return None
    if not pki.verify_chain(cert, material.public["ca_cert"], at=_now() + RENEW_BEFORE):
        return None
    return None if pki.certificate_serial(cert) in revoked else cert


def associate_puppet(
    root: Path, material: EngineMaterial, node_name: str, csr_pem: str, ledger_dir: Path
) -> list[tuple[str, str]]:
    """Sign the node's CSR with the server's CA; a previous certificate is revoked.

    Associating again with the same key returns the certificate already issued, so a retried
    step gives the node the same certificate. Every new certificate is noted in the CA's
    issuance record (under `ledger_dir`), whose serials it never repeats.
    """
    _require_state(root)
    state = _revocations(root)
    record = read_node(root, node_name)
    ca_cert, ca_key = _ca(material)
    try:
        cert = _reusable(record, csr_pem, node_name, material, _revoked_serials(state))
        if cert is None:
            with open_ledger(ledger_dir, ca_cert) as ledger:
                used = ledger.serials()
                # Serials are random (159 bits): a repeat is only drawn again in theory.
                while cert is None or pki.certificate_serial(cert) in used:
                    cert = pki.sign_csr(ca_cert, ca_key, csr_pem, expected_cn=node_name)
                ledger.record_certificate(cert, node_name)
    except ValueError as exc:
        raise InvalidEngineAttribute(f"PUPPET_NODE_CSR is not acceptable: {exc}") from None
    serial = pki.certificate_serial(cert)
    old_serial = _serial(record, node_name) if record else None
    if old_serial is not None and old_serial != serial:
        write_crl(root, material, revoke=(old_serial, node_name))
    elif not (root / CRL_FILE).exists():
        write_crl(root, material)
    kept = record is not None and record.get("certificate") == cert
    new_record = {
        "name": node_name,
        "family": "Puppet",
        "certificate": cert,
        "serial": str(serial),
        "associated_at": str(record["associated_at"]) if kept and record else _now().isoformat(),
    }
    write_atomic(node_path(root, node_name), _dump(new_record))
    return [(PUPPET_NODE_CERT, cert)]


def is_revoked(root: Path, cert_pem: str) -> bool:
    """True when the server's CRL lists the certificate. ValueError if it is not a PEM cert."""
    try:
        text = (root / CRL_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        pki.certificate_serial(cert_pem)  # still refuse garbage
        return False
    return crl.crl_revokes(text, cert_pem)


# ------------------------------------------------------------------------------ both


def disassociate(root: Path, material: EngineMaterial, node_name: str) -> None:
    """Forget the node (fine if it is unknown); a Puppet node's certificate is revoked first."""
    path = node_path(root, node_name)
    record = read_node(root, node_name)
    if record is None:
        return
    serial = _serial(record, node_name)
    if serial is not None:
        write_crl(root, material, revoke=(serial, node_name))
    path.unlink(missing_ok=True)


def issued_serials(files: dict[str, bytes]) -> dict[int, str]:
    """serial -> node of every certificate a Puppet state (as `read_files` gives it) knows it
    issued: the nodes' current certificates and every revoked one."""
    found: dict[int, str] = {}
    for name, data in files.items():
        if name.startswith(f"{NODES_DIR}/") and name.endswith(_SUFFIX):
            try:
                record = json.loads(data)
                if record.get("serial") is not None:
                    found[int(record["serial"])] = str(record.get("name", ""))
            except (ValueError, TypeError, AttributeError):
                continue
    try:
        revoked = json.loads(files.get(REVOKED_FILE, b'{"revoked": []}'))["revoked"]
        for entry in revoked:
            found.setdefault(int(entry["serial"]), str(entry.get("node", "")))
    except (ValueError, KeyError, TypeError):
        raise EngineError("The revocation list (revoked.json) is damaged.") from None
    return found


def revoke_in_files(files: dict[str, bytes], material: EngineMaterial,
                    revoke: list[Issued]) -> None:
    """Add the certificates to the revocation list and CRL of a state about to be written
    (a restore's files), re-signing the CRL."""
    try:
        state = json.loads(files.get(REVOKED_FILE, b'{"crl_number": 0, "revoked": []}'))
    except ValueError:
        raise EngineError("The revocation list (revoked.json) is damaged.") from None
    revoked_json, text = _signed_crl(state, material, [(e.serial, e.node) for e in revoke])
    files[REVOKED_FILE] = revoked_json.encode()
    files[CRL_FILE] = text.encode()


def registry_problem(root: Path, ca_cert_pem: str) -> str:
    """Why the node registry or the CRL is unusable ("" when it is fine)."""
    if not (root / NODES_DIR).is_dir():
        return "The node registry is missing."
    try:
        text = (root / CRL_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"The certificate revocation list cannot be read: {exc.__class__.__name__}."
    return crl.crl_problem(text, ca_cert_pem)
