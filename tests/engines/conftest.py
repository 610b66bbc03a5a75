"""Shared, module-reused keys and server specs for the engine tests (RSA keygen is slow)."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cmhost.engines import pki
from cmhost.engines.base import EngineFamily, ServerSpec


@pytest.fixture(scope="session")
def ca() -> tuple[str, str]:
    """A CA: (certificate PEM, key PEM)."""
    return pki.generate_ca("test CA")


@pytest.fixture(scope="session")
def other_ca() -> tuple[str, str]:
    """A second, unrelated CA."""
    return pki.generate_ca("other CA")


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return pki.generate_rsa_key()


def spki(key: Any) -> bytes:
    """The DER SubjectPublicKeyInfo of a public key, a private key or a certificate."""
    public = key.public_key() if hasattr(key, "public_key") else key
    return bytes(
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def csr_for(key: rsa.RSAPrivateKey, cn: str) -> str:
    """A PEM CSR for `cn` signed by `key`, as a Puppet agent makes one."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def make_spec(family: EngineFamily = "Chef", **overrides: str) -> ServerSpec:
    values: dict[str, str] = {
        "server_id": "6f1c2a4e-0000-4000-8000-000000000001",
        "name": "MyServer",
        "account": "000000000000",
        "region": "us-east-1",
        "engine": "Chef" if family == "Chef" else "Puppet",
        "engine_version": "12.11.1" if family == "Chef" else "2019-08",
        "endpoint": "myserver-abcdefghijklmnop.us-east-1.opsworks-cm.io",
        "api_endpoint": "http://127.0.0.1:4580",
    }
    values.update(overrides)
    return ServerSpec(family=family, **values)


@pytest.fixture
def chef_spec() -> ServerSpec:
    return make_spec("Chef")


@pytest.fixture
def puppet_spec() -> ServerSpec:
    return make_spec("Puppet")
