"""Puppet's CA as puppetserver keeps it: the cadir layout, cmhost's CA client certificate,
and the puppet-ca/v1 HTTP API cmhost signs and revokes node certificates through.

The cadir holds ca_crt.pem, ca_key.pem (0600), ca_pub.pem, ca_crl.pem, serial (hex, at least
four digits), inventory.txt, signed/<certname>.pem and requests/<certname>.pem. puppetserver
accepts a CA it did not make when all of ca_crt.pem, ca_key.pem, ca_crl.pem, inventory.txt and
serial exist ("CA already initialized for SSL").
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import ssl
import tempfile
import urllib.parse
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cmhost.engines import crl, pki
from cmhost.engines.base import EngineError, EngineMaterial
from cmhost.engines.statedir import write_atomic

CA_CERT = "ca_crt.pem"
CA_KEY = "ca_key.pem"
CA_PUB = "ca_pub.pem"
CA_CRL = "ca_crl.pem"
SERIAL = "serial"
INVENTORY = "inventory.txt"
SIGNED = "signed"
REQUESTS = "requests"
_PEM = ".pem"

# Puppet's "pp_cli_auth" extension: the stock auth.conf lets certificates carrying it manage
# the CA (certificate_status, clean). puppetserver refuses to sign CSRs that ask for it, so a
# node can never get one.
PP_CLI_AUTH = x509.ObjectIdentifier("1.3.6.1.4.1.34380.1.3.39")
# The certname of the client certificate cmhost uses against the CA API.
CLIENT_NAME = "cmhost-ca-client"
CLIENT_CERT = "ca_client_cert"  # EngineMaterial.public key
CLIENT_KEY = "ca_client_key"  # EngineMaterial.secrets key


# ------------------------------------------------------------------------- on disk


def install_ca(ca_dir: Path, material: EngineMaterial) -> None:
    """Make `ca_dir` a puppetserver CA for the material's CA (idempotent).

    The certificate and key come from the material (EngineError if the directory holds
    another CA); the CRL, serial and inventory are created only when missing, so signed nodes
    and revocations survive.
    """
    ca_cert, ca_key = material.public.get("ca_cert"), material.secrets.get("ca_key")
    if not ca_cert or not ca_key:
        raise EngineError("The server's engine material lacks its CA certificate or key.")
    try:
        present = (ca_dir / CA_CERT).read_text(encoding="ascii")
    except FileNotFoundError:
        present = ca_cert
    if present != ca_cert:
        raise EngineError("The engine's CA is not the server's CA; restore it from a backup.")
    for sub in (SIGNED, REQUESTS):
        (ca_dir / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(ca_dir, 0o750)
    write_if_changed(ca_dir / CA_CERT, ca_cert)
    write_if_changed(ca_dir / CA_KEY, ca_key, mode=0o600)
    key = serialization.load_pem_private_key(ca_key.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise EngineError("The server's CA key is not an RSA key.")
    write_if_changed(ca_dir / CA_PUB, pki.public_key_pem(key))
    if not (ca_dir / CA_CRL).exists():
        write_atomic(ca_dir / CA_CRL, crl.build_crl(ca_cert, ca_key, [], number=1))
    if not (ca_dir / SERIAL).exists():
        write_atomic(ca_dir / SERIAL, "0001")
    if not (ca_dir / INVENTORY).exists():
        write_atomic(ca_dir / INVENTORY, "")


def write_if_changed(path: Path, data: str, *, mode: int = 0o644) -> bool:
    """Write `data` atomically unless the file already holds it; True when it wrote."""
    try:
        if path.read_text(encoding="utf-8") == data:
            if (path.stat().st_mode & 0o777) != mode:
                os.chmod(path, mode)
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, mode=mode)
    return True


def signed_certificate(ca_dir: Path, name: str) -> str | None:
    """The certificate the CA signed for `name`, or None."""
    try:
        return (ca_dir / SIGNED / f"{name}{_PEM}").read_text(encoding="ascii")
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def signed_names(ca_dir: Path) -> list[str]:
    """Every certname in signed/, sorted (revoked ones too; see `is_revoked`)."""
    directory = ca_dir / SIGNED
    if not directory.is_dir():
        return []
    return sorted(p.name[: -len(_PEM)] for p in directory.iterdir()
                  if p.name.endswith(_PEM) and p.is_file())


def inventory_serials(text: str) -> dict[int, str]:
    """serial -> certname of every line of an inventory.txt ("0x0002 <from> <to> /CN=name")."""
    found: dict[int, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or not parts[0].lower().startswith("0x"):
            continue
        try:
            serial = int(parts[0], 16)
        except ValueError:
            continue
        subject = " ".join(parts[3:])
        found[serial] = subject.rsplit("/CN=", 1)[-1] if "/CN=" in subject else subject
    return found


def issued_serials(files: dict[str, bytes]) -> dict[int, str]:
    """serial -> certname of every certificate a cadir (as the `ca/...` files of a state)
    knows the CA issued: its inventory, its signed certificates and its CRL."""
    found = inventory_serials(files.get(f"ca/{INVENTORY}", b"").decode("utf-8", "replace"))
    for name, data in files.items():
        if name.startswith(f"ca/{SIGNED}/") and name.endswith(_PEM):
            try:
                serial = pki.certificate_serial(data.decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                continue
            found.setdefault(serial, name[len(f"ca/{SIGNED}/"):-len(_PEM)])
    try:
        entries, _ = crl.crl_entries(files.get(f"ca/{CA_CRL}", b"").decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        entries = []
    for serial, _when in entries:
        found.setdefault(serial, "")
    return found


# puppetserver's own serials count up from 1; an embedded server's CA drew random ones (159
# bits), which say nothing about where puppetserver's counter must go.
SEQUENTIAL_LIMIT = 2**63


def serial_text(serial: int) -> str:
    """The `serial` file's content for the next serial (hex, at least four digits)."""
    return f"{serial:04X}"


def is_revoked(ca_dir: Path, cert_pem: str) -> bool:
    """True when the CA's CRL lists the certificate (ValueError if it is not a PEM cert)."""
    try:
        text = (ca_dir / CA_CRL).read_text(encoding="ascii")
    except FileNotFoundError:
        pki.certificate_serial(cert_pem)
        return False
    return crl.crl_revokes(text, cert_pem)


# ------------------------------------------------------------------ client certificate


def issue_client(ca_cert_pem: str, ca_key_pem: str) -> tuple[str, str]:
    """cmhost's client certificate for the CA API (with pp_cli_auth) and its key."""
    ca = x509.load_pem_x509_certificate(ca_cert_pem.encode("ascii"))
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode("ascii"), password=None)
    if not isinstance(ca_key, rsa.RSAPrivateKey):
        raise EngineError("The server's CA key is not an RSA key.")
    key = pki.generate_rsa_key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CLIENT_NAME)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - pki.BACKDATE)
        .not_valid_after(min(now + pki.LEAF_VALIDITY, ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        # The value Puppet writes: a DER UTF8String "true".
        .add_extension(x509.UnrecognizedExtension(PP_CLI_AUTH, b"\x0c\x04true"), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), pki.private_key_pem(key)


def client_needs_renewal(material: EngineMaterial, *, within: dt.timedelta) -> bool:
    """True when the material has no usable CA client certificate for the next `within`."""
    cert, key = material.public.get(CLIENT_CERT), material.secrets.get(CLIENT_KEY)
    if not cert or not key:
        return True
    at = dt.datetime.now(dt.UTC) + within
    return not pki.verify_chain(cert, material.public["ca_cert"], at=at)


# ------------------------------------------------------------------------ HTTP API


class CaRefused(EngineError):
    """The CA answered, and refused (the message is its answer)."""


def tls_context(ca_cert_pem: str, client: tuple[str, str] | None = None) -> ssl.SSLContext:
    """A TLS client context trusting only the server's CA, optionally with a client cert.

    The client key is written to a private temporary file only for as long as loading takes.
    """
    context = ssl.create_default_context(cadata=ca_cert_pem)
    if client is not None:
        cert_pem, key_pem = client
        with tempfile.TemporaryDirectory(prefix="cmhost-ca-") as tmp:
            cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            cert_path.write_text(cert_pem)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(key_pem)
            context.load_cert_chain(str(cert_path), str(key_path))
    return context


class CaClient:
    """The puppet-ca/v1 API of one puppetserver, as cmhost's CA client."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, *,
                 timeout: float = 30.0) -> None:
        self.host, self.port, self.context, self.timeout = host, port, context, timeout

    def _request(self, method: str, path: str, body: bytes | None = None,
                 content_type: str = "text/plain") -> tuple[int, bytes]:
        connection = http.client.HTTPSConnection(self.host, self.port, context=self.context,
                                                 timeout=self.timeout)
        headers = {"Accept": "application/json, text/plain, */*"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    @staticmethod
    def _path(kind: str, name: str) -> str:
        return f"/puppet-ca/v1/{kind}/{urllib.parse.quote(name, safe='')}"

    def _expect(self, status: int, data: bytes, ok: tuple[int, ...], what: str) -> None:
        if status not in ok:
            detail = data.decode("utf-8", "replace").strip()[:300]
            raise CaRefused(f"The Puppet CA refused to {what} (HTTP {status}): {detail}")

    def submit_csr(self, name: str, csr_pem: str) -> None:
        status, data = self._request("PUT", self._path("certificate_request", name),
                                     csr_pem.encode("ascii"))
        self._expect(status, data, (200,), f"accept the CSR of {name}")

    def sign(self, name: str) -> None:
        body = json.dumps({"desired_state": "signed"}).encode()
        status, data = self._request("PUT", self._path("certificate_status", name), body,
                                     "application/json")
        self._expect(status, data, (200, 204), f"sign the certificate of {name}")

    def certificate(self, name: str) -> str:
        status, data = self._request("GET", self._path("certificate", name))
        self._expect(status, data, (200,), f"return the certificate of {name}")
        return data.decode("ascii")

    def status(self, name: str) -> dict[str, object] | None:
        """The CA's record of `name` (state requested/signed/revoked), or None."""
        status, data = self._request("GET", self._path("certificate_status", name))
        if status == 404:
            return None
        self._expect(status, data, (200,), f"show the certificate status of {name}")
        value = json.loads(data)
        return value if isinstance(value, dict) else None

    def revoke(self, name: str) -> None:
        body = json.dumps({"desired_state": "revoked"}).encode()
        status, data = self._request("PUT", self._path("certificate_status", name), body,
                                     "application/json")
        self._expect(status, data, (200, 204, 404), f"revoke the certificate of {name}")

    def delete(self, name: str) -> None:
        """Forget the name's certificate and pending request (fine when there is none)."""
        status, data = self._request("DELETE", self._path("certificate_status", name))
        self._expect(status, data, (200, 204, 404), f"remove the certificate of {name}")
