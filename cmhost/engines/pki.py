"""Keys, an X.509 CA, certificates, CSR signing and password hashing, all with `cryptography`."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import re
import secrets
import string
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidKey, InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(days=3652)
LEAF_VALIDITY = dt.timedelta(days=1826)
# Certificates start a little in the past so a client whose clock runs behind accepts them.
BACKDATE = dt.timedelta(minutes=5)

_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCRYPT_LENGTH = 32


# ---------------------------------------------------------------------------- keys


class CredentialSupply(Protocol):
    """Credentials made ahead of time (the service's pool): each is handed out once.

    Either method returns None when it has nothing to give; the caller then makes its own.
    """

    def rsa_key(self) -> rsa.RSAPrivateKey | None: ...

    def password(self, kind: str) -> tuple[str, str] | None:
        """A generated password of `kind` ("chef", "puppet") and its `hash_password` hash."""
        ...

    def done(self) -> None:
        """The block that used the supply ended: give back what it took and did not use."""
        ...


_SUPPLY: ContextVar[CredentialSupply | None] = ContextVar("cmhost_credential_supply",
                                                          default=None)


@contextmanager
def supplied_by(supply: CredentialSupply | None) -> Iterator[None]:
    """Within the block, new 2048-bit keys and generated passwords come from `supply` first."""
    token = _SUPPLY.set(supply)
    try:
        yield
    finally:
        _SUPPLY.reset(token)
        if supply is not None:
            supply.done()


def make_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A freshly generated RSA private key (public exponent 65537), never a supplied one."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def generate_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A new RSA private key (public exponent 65537): from the supply in effect, if any."""
    supply = _SUPPLY.get()
    if supply is not None and bits == 2048:
        key = supply.rsa_key()
        if key is not None:
            return key
    return make_rsa_key(bits)


def generated_password(kind: str, generate: Callable[[], str]) -> tuple[str, str]:
    """A new password and its hash: from the supply in effect, else `generate()` hashed here."""
    supply = _SUPPLY.get()
    if supply is not None:
        pair = supply.password(kind)
        if pair is not None:
            return pair
    password = generate()
    return password, hash_password(password)


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    """The key as unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY")."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_key_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """The public half as SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY")."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key(pem_or_base64: str | bytes) -> rsa.RSAPublicKey:
    """Parse an RSA public key given as PEM, as base64 of a PEM, or as base64 of DER.

    Raises ValueError (without echoing the input) for anything else, including private keys
    and public keys of other algorithms.
    """
    raw = (
        pem_or_base64.encode("ascii", "replace")
        if isinstance(pem_or_base64, str)
        else pem_or_base64
    )
    raw = raw.strip()
    if not raw:
        raise ValueError("the public key is empty")
    if b"PRIVATE KEY" in raw:
        raise ValueError("a private key was given where the public key is expected")
    if not raw.startswith(b"-----BEGIN"):
        try:
            decoded = base64.b64decode(b"".join(raw.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the public key is neither PEM nor base64") from None
        if b"PRIVATE KEY" in decoded:
            raise ValueError("a private key was given where the public key is expected")
        raw = decoded.strip() if decoded.lstrip().startswith(b"-----BEGIN") else decoded
    try:
        if raw.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(raw)
        else:
            key = serialization.load_der_public_key(raw)
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("the public key could not be parsed") from None
    return _rsa_public_key(key, "the public key")


def _rsa_public_key(key: object, what: str) -> rsa.RSAPublicKey:
    if isinstance(key, rsa.RSAPublicKey):
        return key
    raise ValueError(f"{what} does not carry an RSA key")


def _load_private_key(key_pem: str | bytes) -> rsa.RSAPrivateKey:
    """One of cmhost's own keys (a server's CA key): it comes out of authenticated
    encryption, so OpenSSL's RSA consistency check (~50 ms a load) is skipped."""
    data = key_pem.encode("ascii") if isinstance(key_pem, str) else key_pem
    key = serialization.load_pem_private_key(data, password=None,
                                             unsafe_skip_rsa_key_validation=True)
    if isinstance(key, rsa.RSAPrivateKey):
        return key
    raise ValueError("the private key is not an RSA key")


# ---------------------------------------------------------------------- certificates


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]{1,253}")
# RFC 5280's upper bound for a common name; `cryptography` refuses to write a longer one.
MAX_COMMON_NAME = 64


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:MAX_COMMON_NAME])])


def _leaf_subject(common_name: str) -> x509.Name:
    """A CN subject, or an empty one for a name too long to be a CN (a long endpoint host):
    the subjectAltName, made critical in that case, then names the holder (RFC 5280 4.2.1.6).
    """
    if len(common_name) > MAX_COMMON_NAME:
        return x509.Name([])
    return _name(common_name)


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _load_cert(cert_pem: str | bytes) -> x509.Certificate:
    data = cert_pem.encode("ascii") if isinstance(cert_pem, str) else cert_pem
    return x509.load_pem_x509_certificate(data)


def _san_entries(names: Iterable[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for name in names:
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def generate_ca(common_name: str) -> tuple[str, str]:
    """A self-signed CA valid for ten years: (certificate PEM, private key PEM)."""
    key = generate_rsa_key()
    now = _now()
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _cert_pem(cert), private_key_pem(key)


def _sign_leaf(
    ca_cert: x509.Certificate,
    ca_key: rsa.RSAPrivateKey,
    subject: x509.Name,
    public_key: rsa.RSAPublicKey,
    san: Sequence[str],
    usages: Sequence[x509.ObjectIdentifier],
) -> x509.Certificate:
    now = _now()
    not_after = min(now + LEAF_VALIDITY, ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    entries = _san_entries(san)
    if entries:
        critical = len(subject) == 0
        builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=critical)
    elif len(subject) == 0:
        raise ValueError("a certificate needs a common name or a subjectAltName")
    return builder.sign(ca_key, hashes.SHA256())


def issue_certificate(
    ca_cert_pem: str,
    ca_key_pem: str,
    common_name: str,
    dns_names: Sequence[str],
    *,
    server: bool = True,
    client_auth: bool = False,
) -> tuple[str, str]:
    """A new key and a certificate for it signed by the CA: (certificate PEM, key PEM).

    `dns_names` become the subjectAltName (IP literals as IP addresses); `server` selects the
    extended key usage serverAuth, otherwise clientAuth. `client_auth` adds clientAuth to a
    server certificate: a Puppet server's certificate is also the client certificate that
    puppetserver presents to its PuppetDB (Puppet's own CA issues them with both usages).
    """
    ca_cert = _load_cert(ca_cert_pem)
    ca_key = _load_private_key(ca_key_pem)
    key = generate_rsa_key()
    if not server:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    elif client_auth:
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    else:
        usages = [ExtendedKeyUsageOID.SERVER_AUTH]
    subject = _leaf_subject(common_name)
    cert = _sign_leaf(ca_cert, ca_key, subject, key.public_key(), dns_names, usages)
    return _cert_pem(cert), private_key_pem(key)


def has_client_auth(cert_pem: str) -> bool:
    """Whether the certificate may be used as a TLS client's (its extended key usage names
    clientAuth, or it has none). ValueError when it is not a PEM certificate."""
    try:
        usage = _load_cert(cert_pem).extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.CLIENT_AUTH in usage.value


def load_csr(csr_pem: str, *, expected_cn: str) -> x509.CertificateSigningRequest:
    """Parse a node's CSR and check its signature, its key and that its CN is `expected_cn`.

    Raises ValueError with a message fit for the caller (it never repeats the CSR).
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem.strip().encode("ascii", "replace"))
    except ValueError:
        raise ValueError("the certificate signing request is not a PEM CSR") from None
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise ValueError("the certificate signing request has an invalid signature")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns:
        raise ValueError("the certificate signing request has no common name (CN)")
    cn = cns[0].value
    if cn != expected_cn:
        raise ValueError(
            f"the certificate signing request is for CN {str(cn)[:128]!r}, expected {expected_cn!r}"
        )
    public_key = _rsa_public_key(csr.public_key(), "the certificate signing request")
    if public_key.key_size < 2048:
        raise ValueError("the certificate signing request key must be at least 2048 bits")
    return csr


def csr_to_pem(csr: x509.CertificateSigningRequest) -> str:
    """The CSR as PEM ("BEGIN CERTIFICATE REQUEST")."""
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def sign_csr(ca_cert_pem: str, ca_key_pem: str, csr_pem: str, *, expected_cn: str) -> str:
    """Sign a node's CSR after checking it with `load_csr`.

    Only the subject and the public key are taken from the CSR; extensions it requests are
    ignored. Raises ValueError with a message fit for the caller.
    """
    csr = load_csr(csr_pem, expected_cn=expected_cn)
    public_key = _rsa_public_key(csr.public_key(), "the certificate signing request")
    ca_cert = _load_cert(ca_cert_pem)
    ca_key = _load_private_key(ca_key_pem)
    # The CSR's own CN attribute, as it was encoded (a rebuilt one could be refused as long).
    subject = x509.Name(csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[:1])
    # A node name that is a host name is also a subjectAltName; others (Unicode, ':') are not.
    san = [expected_cn] if _HOST_NAME.fullmatch(expected_cn) else []
    cert = _sign_leaf(
        ca_cert,
        ca_key,
        subject,
        public_key,
        san,
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    return _cert_pem(cert)


def certificate_serial(cert_pem: str) -> int:
    """The serial number of a PEM certificate (ValueError if it is not one)."""
    return _load_cert(cert_pem).serial_number


def certificate_not_after(cert_pem: str) -> dt.datetime:
    """When a PEM certificate expires (UTC)."""
    return _load_cert(cert_pem).not_valid_after_utc


def certificate_names(cert_pem: str) -> list[str]:
    """The DNS names and IP addresses of a certificate's subjectAltName."""
    cert = _load_cert(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return list(san.get_values_for_type(x509.DNSName)) + ips


def certificate_matches_csr(cert_pem: str, csr: x509.CertificateSigningRequest) -> bool:
    """True when the certificate certifies the CSR's public key."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    try:
        cert_key = _load_cert(cert_pem).public_key().public_bytes(der, spki)
    except ValueError:
        return False
    return cert_key == csr.public_key().public_bytes(der, spki)


def verify_signature(public_key_pem: str, data: bytes, signature: bytes) -> bool:
    """True when `signature` is an RSA PKCS#1 v1.5 SHA-256 signature of `data` by the key."""
    try:
        key = load_public_key(public_key_pem)
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except (ValueError, InvalidSignature):
        return False
    return True


def verify_chain(cert_pem: str, ca_cert_pem: str, *, at: dt.datetime | None = None) -> bool:
    """True when `cert_pem` was issued and signed by the CA and both are valid at `at` (now)."""
    try:
        cert = _load_cert(cert_pem)
        ca = _load_cert(ca_cert_pem)
        cert.verify_directly_issued_by(ca)
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    if not constraints.ca:
        return False
    when = at or _now()
    return all(c.not_valid_before_utc <= when <= c.not_valid_after_utc for c in (cert, ca))


# ------------------------------------------------------------------------- passwords


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(pw: str) -> str:
    """An scrypt hash of the password: `scrypt$n$r$p$salt_b64$hash_b64`."""
    salt = secrets.token_bytes(16)
    kdf = Scrypt(salt=salt, length=_SCRYPT_LENGTH, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    digest = kdf.derive(pw.encode("utf-8"))
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(pw: str, stored: str) -> bool:
    """True when `pw` matches a hash made by `hash_password` (constant-time comparison)."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        return False
    # Refuse parameters no hash of ours carries, so a corrupt row cannot eat the memory.
    if not (1 < n <= 2**20 and 0 < r <= 32 and 0 < p <= 16 and 0 < len(digest) <= 64):
        return False
    try:
        Scrypt(salt=salt, length=len(digest), n=n, r=r, p=p).verify(pw.encode("utf-8"), digest)
    except (InvalidKey, ValueError):
        return False
    return True


def random_password(
    length: int = 24,
    alphabet: str = string.ascii_letters + string.digits,
    *,
    required: Sequence[str] = (),
) -> str:
    """A random password of `length` characters from `alphabet` (with `secrets`).

    Each string in `required` is a character class the password must draw at least one
    character from.
    """
    if length < len(required):
        raise ValueError("length is shorter than the number of required character classes")
    rng = secrets.SystemRandom()
    chars = [secrets.choice(group) for group in required]
    chars += [secrets.choice(alphabet) for _ in range(length - len(chars))]
    rng.shuffle(chars)
    return "".join(chars)
