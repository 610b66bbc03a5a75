"""The X.509 CA, certificates, CSR signing, key parsing and password hashing."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cmhost.engines import pki

from .conftest import spki


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _csr(key: rsa.RSAPrivateKey, cn: str, *, ask_for_ca: bool = False) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if ask_for_ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


# ------------------------------------------------------------------------------ keys


def test_private_key_pem_is_unencrypted_pkcs8(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = pki.private_key_pem(rsa_key)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    loaded = serialization.load_pem_private_key(pem.encode(), password=None)
    assert spki(loaded) == spki(rsa_key)


def test_public_key_pem_is_subject_public_key_info(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = pki.public_key_pem(rsa_key)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert pki.public_key_pem(rsa_key.public_key()) == pem


def test_generate_rsa_key_has_requested_size() -> None:
    assert pki.generate_rsa_key(3072).key_size == 3072


@pytest.mark.parametrize("form", ["pem", "pkcs1_pem", "base64_pem", "base64_der", "wrapped"])
def test_load_public_key_accepts_pem_and_base64(rsa_key: rsa.RSAPrivateKey, form: str) -> None:
    public = rsa_key.public_key()
    pem = pki.public_key_pem(rsa_key)
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    given = {
        "pem": pem,
        "pkcs1_pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        ).decode(),
        "base64_pem": base64.b64encode(pem.encode()).decode(),
        "base64_der": base64.b64encode(der).decode(),
        "wrapped": base64.encodebytes(der).decode(),  # base64 with line breaks
    }[form]
    loaded = pki.load_public_key(given)
    assert spki(loaded) == spki(public)


@pytest.mark.parametrize("given", ["", "   ", "not a key", "-----BEGIN PUBLIC KEY-----\nAAAA\n"])
def test_load_public_key_refuses_garbage(given: str) -> None:
    with pytest.raises(ValueError):
        pki.load_public_key(given)


def test_load_public_key_refuses_private_key_without_echoing_it(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    private = pki.private_key_pem(rsa_key)
    for given in (private, base64.b64encode(private.encode()).decode()):
        with pytest.raises(ValueError, match="private key") as info:
            pki.load_public_key(given)
        assert private.splitlines()[1] not in str(info.value)


def test_load_public_key_refuses_non_rsa_keys() -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="RSA"):
        pki.load_public_key(pem.decode())


# ---------------------------------------------------------------------------- the CA


def test_ca_is_a_self_signed_ten_year_ca(ca: tuple[str, str]) -> None:
    cert = _cert(ca[0])
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=3650) <= lifetime <= dt.timedelta(days=3653)
    assert cert.not_valid_before_utc <= dt.datetime.now(dt.UTC)


def test_ca_key_matches_certificate_and_serials_differ(
    ca: tuple[str, str], other_ca: tuple[str, str]
) -> None:
    key = serialization.load_pem_private_key(ca[1].encode(), password=None)
    assert spki(key) == spki(_cert(ca[0]))
    assert _cert(ca[0]).serial_number != _cert(other_ca[0]).serial_number


# ---------------------------------------------------------------------------- leaves


def test_server_certificate_chains_and_names_its_hosts(ca: tuple[str, str]) -> None:
    cert_pem, key_pem = pki.issue_certificate(
        ca[0], ca[1], "chef.example.com", ["chef.example.com", "alt.example.com", "127.0.0.1"]
    )
    assert pki.verify_chain(cert_pem, ca[0])
    cert = _cert(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["chef.example.com", "alt.example.com"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = _cert(ca[0]).extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert spki(key) == spki(cert)


def test_client_certificate_is_for_client_auth(ca: tuple[str, str]) -> None:
    cert_pem, _ = pki.issue_certificate(ca[0], ca[1], "admin", [], server=False)
    eku = _cert(cert_pem).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert pki.verify_chain(cert_pem, ca[0])


def test_a_server_certificate_may_also_be_a_client_certificate(ca: tuple[str, str]) -> None:
    """A Puppet server's certificate is puppetserver's client certificate towards PuppetDB."""
    both, _ = pki.issue_certificate(ca[0], ca[1], "puppet", ["puppet"], client_auth=True)
    eku = _cert(both).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert pki.has_client_auth(both)
    server_only, _ = pki.issue_certificate(ca[0], ca[1], "chef", ["chef"])
    assert not pki.has_client_auth(server_only)
    client, _ = pki.issue_certificate(ca[0], ca[1], "admin", [], server=False)
    assert pki.has_client_auth(client)
    with pytest.raises(ValueError):
        pki.has_client_auth("garbage")


def test_verify_chain_refuses_other_ca_expiry_and_garbage(
    ca: tuple[str, str], other_ca: tuple[str, str]
) -> None:
    cert_pem, _ = pki.issue_certificate(ca[0], ca[1], "host", ["host"])
    assert not pki.verify_chain(cert_pem, other_ca[0])
    far_future = dt.datetime.now(dt.UTC) + dt.timedelta(days=365 * 20)
    assert not pki.verify_chain(cert_pem, ca[0], at=far_future)
    assert not pki.verify_chain("garbage", ca[0])
    # A leaf is not a CA even if it signed something with its key.
    assert not pki.verify_chain(cert_pem, cert_pem)


# ------------------------------------------------------------------------------ CSRs


def test_sign_csr_issues_a_certificate_for_the_node(
    ca: tuple[str, str], rsa_key: rsa.RSAPrivateKey
) -> None:
    cert_pem = pki.sign_csr(ca[0], ca[1], _csr(rsa_key, "node-1"), expected_cn="node-1")
    cert = _cert(cert_pem)
    assert pki.verify_chain(cert_pem, ca[0])
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "node-1"
    assert spki(cert) == spki(rsa_key)


def test_sign_csr_ignores_requested_extensions(
    ca: tuple[str, str], rsa_key: rsa.RSAPrivateKey
) -> None:
    cert_pem = pki.sign_csr(
        ca[0], ca[1], _csr(rsa_key, "node-1", ask_for_ca=True), expected_cn="node-1"
    )
    assert not _cert(cert_pem).extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_sign_csr_refuses_wrong_common_name(
    ca: tuple[str, str], rsa_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(ValueError, match="expected 'node-1'"):
        pki.sign_csr(ca[0], ca[1], _csr(rsa_key, "evil"), expected_cn="node-1")


def test_sign_csr_refuses_bad_signature(ca: tuple[str, str], rsa_key: rsa.RSAPrivateKey) -> None:
    pem = _csr(rsa_key, "node-1")
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte belongs to the signature
    tampered = base64.encodebytes(bytes(der)).decode()
    tampered_pem = (
        f"-----BEGIN CERTIFICATE REQUEST-----\n{tampered}-----END CERTIFICATE REQUEST-----\n"
    )
    with pytest.raises(ValueError, match="invalid signature"):
        pki.sign_csr(ca[0], ca[1], tampered_pem, expected_cn="node-1")


def test_sign_csr_refuses_garbage(ca: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="not a PEM CSR"):
        pki.sign_csr(ca[0], ca[1], "hello", expected_cn="node-1")


# ------------------------------------------------------------------------- passwords


def test_password_hash_round_trip() -> None:
    stored = pki.hash_password("Secret#123")
    assert stored.startswith("scrypt$16384$8$1$")
    assert len(stored.split("$")) == 6
    assert "Secret#123" not in stored
    assert pki.verify_password("Secret#123", stored)
    assert not pki.verify_password("Secret#124", stored)
    assert pki.hash_password("Secret#123") != stored  # salted


@pytest.mark.parametrize(
    "stored", ["", "plain", "scrypt$1$2$3", "bcrypt$16384$8$1$AAAA$AAAA", "scrypt$x$8$1$AA$AA"]
)
def test_verify_password_refuses_malformed_hashes(stored: str) -> None:
    assert not pki.verify_password("anything", stored)


def test_random_password_honours_length_alphabet_and_classes() -> None:
    for _ in range(50):
        pw = pki.random_password(8, "abc123", required=("abc", "123"))
        assert len(pw) == 8
        assert set(pw) <= set("abc123")
        assert set(pw) & set("abc") and set(pw) & set("123")
    with pytest.raises(ValueError):
        pki.random_password(1, "ab", required=("a", "b"))


def test_helpers_for_node_certificates_and_keys(
    ca: tuple[str, str], rsa_key: rsa.RSAPrivateKey
) -> None:
    node_cert = pki.sign_csr(ca[0], ca[1], _csr(rsa_key, "node-1"), expected_cn="node-1")
    other = pki.generate_rsa_key()
    assert pki.certificate_matches_csr(node_cert, pki.load_csr(_csr(rsa_key, "n"), expected_cn="n"))
    assert not pki.certificate_matches_csr(
        node_cert, pki.load_csr(_csr(other, "n"), expected_cn="n")
    )
    assert pki.certificate_names(node_cert) == ["node-1"]
    assert pki.certificate_names(ca[0]) == []
    public = pki.public_key_pem(rsa_key)
    signature = rsa_key.sign(b"data", padding.PKCS1v15(), hashes.SHA256())
    assert pki.verify_signature(public, b"data", signature)
    assert not pki.verify_signature(public, b"other", signature)
    assert not pki.verify_signature(pki.public_key_pem(other), b"data", signature)
    assert not pki.verify_signature("garbage", b"data", signature)


def test_a_host_too_long_for_a_common_name_is_named_by_a_critical_san(
    ca: tuple[str, str],
) -> None:
    host = "ab9-" * 10 + "abcdefghijklmnop.us-east-1.opsworks-cm.io"
    assert len(host) > pki.MAX_COMMON_NAME
    cert_pem, _ = pki.issue_certificate(ca[0], ca[1], host, [host])
    cert = _cert(cert_pem)
    assert len(cert.subject) == 0
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.DNSName) == [host]
    assert pki.verify_chain(cert_pem, ca[0])
    short_pem, _ = pki.issue_certificate(ca[0], ca[1], "short.example", ["short.example"])
    short = _cert(short_pem)
    assert short.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "short.example"
    assert not short.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


@pytest.mark.parametrize("node", ["ノード-1", "host:8140"])
def test_node_names_that_are_not_host_names_get_no_san(
    ca: tuple[str, str], rsa_key: rsa.RSAPrivateKey, node: str
) -> None:
    cert = _cert(pki.sign_csr(ca[0], ca[1], _csr(rsa_key, node), expected_cn=node))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == node
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
