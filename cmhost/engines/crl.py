"""Certificate revocation lists: a server CA's signed list of the node certificates it revoked."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# Puppet's own CA gives its CRL a long life too; maintenance re-signs it well before the end.
CRL_VALIDITY = dt.timedelta(days=1826)


def _load_cert(cert_pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert_pem.encode("ascii"))


def _load_crl(crl_pem: str) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(crl_pem.encode("ascii"))


def _load_ca_key(ca_key_pem: str) -> rsa.RSAPrivateKey:
    # The server's own CA key, out of authenticated encryption: no RSA consistency check.
    key = serialization.load_pem_private_key(ca_key_pem.encode("ascii"), password=None,
                                             unsafe_skip_rsa_key_validation=True)
    if isinstance(key, rsa.RSAPrivateKey):
        return key
    raise ValueError("the CA key is not an RSA key")


def revocation_time() -> dt.datetime:
    """The time CRLs, revocations and a CA's issuance record are stamped with: the wall
    clock, under `--clock virtual` too. Real clients (puppet agent, openssl) judge a CRL's
    lastUpdate and nextUpdate, and certificates' validity, against the real time: virtual
    dates would make a CRL "not yet valid" to them once the virtual clock has moved on."""
    return dt.datetime.now(dt.UTC)


def build_crl(
    ca_cert_pem: str,
    ca_key_pem: str,
    revoked: Sequence[tuple[int, dt.datetime]],
    *,
    number: int,
    now: dt.datetime | None = None,
) -> str:
    """A CRL signed by the CA listing the (serial, revocation time) pairs, as PEM."""
    ca_cert = _load_cert(ca_cert_pem)
    ca_key = _load_ca_key(ca_key_pem)
    when = now or revocation_time()
    next_update = min(when + CRL_VALIDITY, ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(when)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    for serial, revoked_at in sorted(revoked):
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(revoked_at)
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(ca_key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM).decode("ascii")


def crl_problem(crl_pem: str, ca_cert_pem: str, *, at: dt.datetime | None = None) -> str:
    """Why the CRL is unusable with this CA ("" when it is fine)."""
    try:
        crl = _load_crl(crl_pem)
        ca_cert = _load_cert(ca_cert_pem)
    except ValueError:
        return "The certificate revocation list (crl.pem) cannot be read."
    public_key = ca_cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        return "The server's CA does not carry an RSA key."
    try:
        signed = crl.issuer == ca_cert.subject and crl.is_signature_valid(public_key)
    except (TypeError, ValueError, InvalidSignature, UnsupportedAlgorithm):
        signed = False
    if not signed:
        return "The certificate revocation list is not signed by the server's CA."
    when = at or revocation_time()
    if crl.next_update_utc is not None and crl.next_update_utc < when:
        return "The certificate revocation list has expired; maintenance renews it."
    return ""


def crl_revokes(crl_pem: str, cert_pem: str) -> bool:
    """True when the CRL lists the certificate (same issuer, same serial).

    Raises ValueError when either is not PEM of its kind.
    """
    crl = _load_crl(crl_pem)
    cert = _load_cert(cert_pem)
    if cert.issuer != crl.issuer:
        return False
    return crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None


def crl_entries(crl_pem: str) -> tuple[list[tuple[int, dt.datetime]], int]:
    """The (serial, revocation time) pairs of a CRL and its CRL number (0 without one).

    Raises ValueError when it is not a PEM CRL.
    """
    revocations = _load_crl(crl_pem)
    try:
        number = int(revocations.extensions.get_extension_for_class(x509.CRLNumber)
                     .value.crl_number)
    except x509.ExtensionNotFound:
        number = 0
    return [(e.serial_number, e.revocation_date_utc) for e in revocations], number
