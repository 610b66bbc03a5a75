"""Node credentials for AssociateNode: Chef RSA public keys and Puppet CSRs, made once."""

from __future__ import annotations

import functools

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

NODE_NAMES = ("node-a", "node-b", "node-c")


@functools.cache
def _key(index: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def chef_public_key(index: int) -> str:
    """An RSA-2048 public key in PEM (BEGIN PUBLIC KEY), as a Chef node sends it."""
    return _key(index % 2).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@functools.cache
def puppet_csr(node_name: str, index: int = 0) -> str:
    """A CSR whose CN is the node name, as a Puppet agent sends it."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_name)]))
           .sign(_key(index % 2), hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()
