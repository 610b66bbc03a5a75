"""The CustomDomain / CustomCertificate / CustomPrivateKey trio of CreateServer."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from cmhost.service.errors import ValidationException


def _names(cert: x509.Certificate) -> list[str]:
    """The DNS names a certificate is for: its SAN names, else its common name."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [name.lower() for name in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        return [str(a.value).lower()
                for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]


def _matches(domain: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        head, _, rest = domain.partition(".")
        return bool(head) and rest == pattern[2:]
    return domain == pattern


def check_custom_domain(domain: str | None, certificate: str | None, private_key: str | None,
                        *, now: float) -> None:
    """Raise ValidationException unless all three are absent, or all present and consistent."""
    given = [v is not None for v in (domain, certificate, private_key)]
    if not any(given):
        return
    if not all(given):
        raise ValidationException(
            "CustomDomain, CustomCertificate and CustomPrivateKey must be specified together.")
    assert certificate is not None and private_key is not None
    try:
        chain = x509.load_pem_x509_certificates(certificate.encode())
    except ValueError:
        raise ValidationException(
            "CustomCertificate is not a valid PEM-encoded certificate or chain.") from None
    try:
        key = serialization.load_pem_private_key(private_key.encode(), password=None)
    except TypeError:
        raise ValidationException("CustomPrivateKey must not be encrypted.") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValidationException("CustomPrivateKey is not a valid PEM-encoded private key.") from None
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    leaf = chain[0]
    if key.public_key().public_bytes(enc, fmt) != leaf.public_key().public_bytes(enc, fmt):
        raise ValidationException(
            "CustomPrivateKey does not match the public key of CustomCertificate.")
    if not leaf.not_valid_before_utc.timestamp() <= now <= leaf.not_valid_after_utc.timestamp():
        raise ValidationException("CustomCertificate is not valid now (see its validity period).")
    assert domain is not None
    if not any(_matches(domain.lower(), name) for name in _names(leaf)):
        raise ValidationException(
            f"CustomCertificate is not for {domain}: its subject alternative names (or common "
            "name) must match CustomDomain.")
