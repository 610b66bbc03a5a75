"""A CA's issuance record: every serial it issued to a node, and when, kept outside the state
a restore rolls back, so serials never repeat and a restore can revoke what came after.

One JSON file per CA (named by the SHA-256 of its certificate) under data_dir/issuance/: a
server created from another's backup shares that server's CA, and so its record. The file
survives DeleteServer on purpose: a manual backup of the CA may still be restored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cmhost.engines import crl
from cmhost.engines.base import EngineError
from cmhost.engines.statedir import locked, write_atomic

LEDGER_DIR = "issuance"


@dataclass(frozen=True)
class Issued:
    """One certificate the CA issued."""

    serial: int
    node: str
    issued_at: str  # ISO 8601, UTC

    def describe(self) -> str:
        return f"{self.node} (serial {self.serial:#x})"


def _now() -> str:
    # The CRL's time (the wall clock, see crl.revocation_time): a restore compares what
    # was issued with what the CRL revoked, and both must be on one clock.
    return crl.revocation_time().isoformat(timespec="seconds")


def _fingerprint(ca_cert_pem: str) -> str:
    try:
        der = x509.load_pem_x509_certificate(ca_cert_pem.encode("ascii")).public_bytes(
            serialization.Encoding.DER)
    except ValueError:
        raise EngineError("The server's CA certificate cannot be read.") from None
    return hashlib.sha256(der).hexdigest()


class Ledger:
    """The issuance record of one CA, loaded; changes are saved by `open_ledger`."""

    def __init__(self, entries: dict[int, Issued]) -> None:
        self.entries = entries
        self.changed = False

    def record(self, serial: int, node: str, issued_at: str | None = None) -> None:
        """Note that the CA issued `serial` to `node` (a serial already noted keeps its
        first record)."""
        if serial not in self.entries:
            self.entries[serial] = Issued(serial, node, issued_at or _now())
            self.changed = True

    def record_certificate(self, cert_pem: str, node: str) -> int:
        """Note a certificate the CA issued; returns its serial."""
        cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
        self.record(cert.serial_number, node)
        return cert.serial_number

    def serials(self) -> set[int]:
        return set(self.entries)

    def highest(self) -> int:
        return max(self.entries, default=0)

    def issued_except(self, known: Iterable[int]) -> list[Issued]:
        """Every certificate issued but not among `known` (the serials a backup knows),
        oldest first."""
        skip = set(known)
        return sorted((e for s, e in self.entries.items() if s not in skip),
                      key=lambda e: (e.issued_at, e.serial))

    def _dump(self) -> str:
        issued = [{"serial": str(e.serial), "node": e.node, "issued_at": e.issued_at}
                  for e in sorted(self.entries.values(), key=lambda e: e.serial)]
        return json.dumps({"issued": issued, "next_serial": str(self.highest() + 1)},
                          indent=1) + "\n"


def _load(path: Path) -> Ledger:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Ledger({})
    try:
        entries = {}
        for item in json.loads(text)["issued"]:
            serial = int(item["serial"])
            entries[serial] = Issued(serial, str(item["node"]), str(item["issued_at"]))
    except (ValueError, KeyError, TypeError):
        raise EngineError(f"The CA's issuance record ({path.name}) is damaged.") from None
    return Ledger(entries)


@contextlib.contextmanager
def open_ledger(data_dir: Path, ca_cert_pem: str) -> Iterator[Ledger]:
    """The CA's issuance record, locked (threads and processes alike) and saved on leaving
    when it changed. Take it after the server's own lock, never before."""
    directory = data_dir / LEDGER_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{_fingerprint(ca_cert_pem)}.json"
    with locked(path):
        ledger = _load(path)
        yield ledger
        if ledger.changed:
            write_atomic(path, ledger._dump(), mode=0o600)


def revoked_note(revoked: list[Issued]) -> str:
    """The event text for the certificates a restore revoked ("" when none)."""
    if not revoked:
        return ""
    return (f"Restore revoked {len(revoked)} certificate{'s' if len(revoked) != 1 else ''} "
            f"issued after the backup: {', '.join(e.describe() for e in revoked)}.")
