"""Certificate revocation lists signed by a server CA."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from cmhost.engines import crl, pki

from .conftest import csr_for


@pytest.fixture(scope="module")
def node_cert(ca: tuple[str, str], rsa_key: rsa.RSAPrivateKey) -> str:
    return pki.sign_csr(ca[0], ca[1], csr_for(rsa_key, "node-1"), expected_cn="node-1")


def test_a_crl_lists_what_it_revokes(ca: tuple[str, str], node_cert: str) -> None:
    serial = pki.certificate_serial(node_cert)
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    text = crl.build_crl(ca[0], ca[1], [(serial, when)], number=7)
    parsed = x509.load_pem_x509_crl(text.encode())
    entry = parsed.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None and entry.revocation_date_utc == when
    assert parsed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    assert crl.crl_revokes(text, node_cert)
    assert not crl.crl_revokes(crl.build_crl(ca[0], ca[1], [], number=8), node_cert)
    assert crl.crl_problem(text, ca[0]) == ""


def test_crl_problems(ca: tuple[str, str], other_ca: tuple[str, str]) -> None:
    foreign = crl.build_crl(other_ca[0], other_ca[1], [], number=1)
    assert "not signed by the server's CA" in crl.crl_problem(foreign, ca[0])
    assert "cannot be read" in crl.crl_problem("garbage", ca[0])
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=3000)
    stale = crl.build_crl(ca[0], ca[1], [], number=1, now=old)
    assert "expired" in crl.crl_problem(stale, ca[0])
    with pytest.raises(ValueError):
        crl.crl_revokes("garbage", ca[0])
