"""The CustomDomain / CustomCertificate / CustomPrivateKey trio of CreateServer."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from cmhost.service.errors import ValidationException


def check_custom_domain(domain: str | None, certificate: str | None, private_key: str | None
                        ) -> None:
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
    if key.public_key().public_bytes(enc, fmt) != chain[0].public_key().public_bytes(enc, fmt):
        raise ValidationException(
            "CustomPrivateKey does not match the public key of CustomCertificate.")
