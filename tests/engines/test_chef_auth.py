"""Chef request signing (Mixlib::Authentication 1.3, SHA-256) against the gem's own vector."""

from __future__ import annotations

import datetime as dt

import pytest

from cmhost.engines import chef_auth, pki

# The test vector of chef/mixlib-authentication (spec/mixlib/authentication/
# mixlib_authentication_spec.rb): its throwaway key, request and expected 1.3 signature.
PRIVATE_KEY = """-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEA0ueqo76MXuP6XqZBILFziH/9AI7C6PaN5W0dSvkr9yInyGHS
z/IR1+4tqvP2qlfKVKI4CP6BFH251Ft9qMUBuAsnlAVQ1z0exDtIFFOyQCdR7iXm
jBIWMSS4buBwRQXwDK7id1OxtU23qVJv+xwEV0IzaaSJmaGLIbvRBD+qatfUuQJB
MU/04DdJIwvLtZBYdC2219m5dUBQaa4bimL+YN9EcsDzD9h9UxQo5ReK7b3cNMzJ
BKJWLzFBcJuePMzAnLFktr/RufX4wpXe6XJxoVPaHo72GorLkwnQ0HYMTY8rehT4
mDi1FI969LHCFFaFHSAaRnwdXaQkJmSfcxzCYQIDAQABAoIBAQCW3I4sKN5B9jOe
xq/pkeWBq4OvhW8Ys1yW0zFT8t6nHbB1XrwscQygd8gE9BPqj3e0iIEqtdphbPmj
VHqTYbC0FI6QDClifV7noTwTBjeIOlgZ0NSUN0/WgVzIOxUz2mZ2vBZUovKILPqG
TOi7J7RXMoySMdcXpP1f+PgvYNcnKsT72UcWaSXEV8/zo+Zm/qdGPVWwJonri5Mp
DVm5EQSENBiRyt028rU6ElXORNmoQpVjDVqZ1gipzXkifdjGyENw2rt4V/iKYD7V
5iqXOsvP6Cemf4gbrjunAgDG08S00kiUgvVWcdXW+dlsR2nCvH4DOEe3AYYh/aH8
DxEE7FbtAoGBAPcNO8fJ56mNw0ow4Qg38C+Zss/afhBOCfX4O/SZKv/roRn5+gRM
KRJYSVXNnsjPI1plzqR4OCyOrjAhtuvL4a0DinDzf1+fiztyNohwYsW1vYmqn3ti
EN0GhSgE7ppZjqvLQ3f3LUTxynhA0U+k9wflb4irIlViTUlCsOPkrNJDAoGBANqL
Q+vvuGSsmRLU/Cenjy+Mjj6+QENg51dz34o8JKuVKIPKU8pNnyeLa5fat0qD2MHm
OB9opeQOcw0dStodxr6DB3wi83bpjeU6BWUGITNiWEaZEBrQ0aiqNJJKrrHm8fAZ
9o4l4oHc4hI0kYVYYDuxtKuVJrzZiEapTwoOcYiLAoGBAI/EWbeIHZIj9zOjgjEA
LHvm25HtulLOtyk2jd1njQhlHNk7CW2azIPqcLLH99EwCYi/miNH+pijZ2aHGCXb
/bZrSxM0ADmrZKDxdB6uGCyp+GS2sBxjEyEsfCyvwhJ8b3Q100tqwiNO+d5FCglp
HICx2dgUjuRVUliBwOK93nx1AoGAUI8RhIEjOYkeDAESyhNMBr0LGjnLOosX+/as
qiotYkpjWuFULbibOFp+WMW41vDvD9qrSXir3fstkeIAW5KqVkO6mJnRoT3Knnra
zjiKOITCAZQeiaP8BO5o3pxE9TMqb9VCO3ffnPstIoTaN4syPg7tiGo8k1SklVeH
2S8lzq0CgYAKG2fljIYWQvGH628rp4ZcXS4hWmYohOxsnl1YrszbJ+hzR+IQOhGl
YlkUQYXhy9JixmUUKtH+NXkKX7Lyc8XYw5ETr7JBT3ifs+G7HruDjVG78EJVojbd
8uLA+DdQm5mg4vd1GTiSK65q/3EeoBlUaVor3HhLFki+i9qpT8CBsg==
-----END RSA PRIVATE KEY-----
"""
USER_ID = "spec-user"
BODY = b"Spec Body"
PATH = "/organizations/clownco"
AT = dt.datetime(2009, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
HASHED_BODY_SHA256 = "hDlKNZhIhgso3Fs0S0pZwJ0xyBWtR1RBaeHs1DrzOho="
CANONICAL = (
    "Method:POST\n"
    "Path:/organizations/clownco\n"
    "X-Ops-Content-Hash:hDlKNZhIhgso3Fs0S0pZwJ0xyBWtR1RBaeHs1DrzOho=\n"
    "X-Ops-Sign:version=1.3\n"
    "X-Ops-Timestamp:2009-01-01T12:00:00Z\n"
    "X-Ops-UserId:spec-user\n"
    "X-Ops-Server-API-Version:1"
)
AUTHORIZATION_LINES = [
    "FZOmXAyOBAZQV/uw188iBljBJXOm+m8xQ/8KTGLkgGwZNcRFxk1m953XjE3W",
    "VGy1dFT76KeaNWmPCNtDmprfH2na5UZFtfLIKrPv7xm80V+lzEzTd9WBwsfP",
    "42dZ9N+V9I5SVfcL/lWrrlpdybfceJC5jOcP5tzfJXWUITwb6Z3Erg3DU3Uh",
    "H9h9E0qWlYGqmiNCVrBnpe6Si1gU/Jl+rXlRSNbLJ4GlArAPuL976iTYJTzE",
    "MmbLUIm3JRYi00Yb01IUCCKdI90vUq1HHNtlTEu93YZfQaJwRxXlGkCNwIJe",
    "fy49QzaCIEu1XiOx5Jn+4GmkrZch/RrK9VzQWXgs+w==",
]


def _signed() -> dict[str, str]:
    return chef_auth.sign_request(PRIVATE_KEY, user_id=USER_ID, method="post", path=PATH,
                                  body=BODY, at=AT)


def _public() -> str:
    return pki.public_key_pem(chef_auth.load_private_key(PRIVATE_KEY))


def test_content_hash_and_canonical_request_match_the_gem() -> None:
    assert chef_auth.content_hash(BODY) == HASHED_BODY_SHA256
    canonical = chef_auth.canonical_request("post", PATH, HASHED_BODY_SHA256,
                                            "2009-01-01T12:00:00Z", USER_ID, "1")
    assert canonical == CANONICAL


def test_signed_headers_are_the_gems_expected_result() -> None:
    expected = {
        "X-Ops-Content-Hash": HASHED_BODY_SHA256,
        "X-Ops-Userid": USER_ID,
        "X-Ops-Sign": "algorithm=sha256;version=1.3;",
        "X-Ops-Timestamp": "2009-01-01T12:00:00Z",
        "X-Ops-Server-API-Version": "1",
    }
    expected.update({f"X-Ops-Authorization-{n}": line
                     for n, line in enumerate(AUTHORIZATION_LINES, start=1)})
    assert _signed() == expected


@pytest.mark.parametrize(("given", "canonical"), [
    ("/", "/"), ("//nodes//web1/", "/nodes/web1"), ("/nodes?x=1", "/nodes"), ("", "/"),
])
def test_canonical_path(given: str, canonical: str) -> None:
    assert chef_auth.canonical_path(given) == canonical


def _verifies(public: str, headers: dict[str, str], *, body: bytes = BODY,
              method: str = "POST", now: dt.datetime = AT) -> bool:
    return chef_auth.verify_request(public, method=method, path=PATH, headers=headers,
                                    body=body, now=now)


def test_verify_accepts_the_signature_and_refuses_any_change() -> None:
    headers = _signed()
    public = _public()
    assert _verifies(public, headers)
    assert not _verifies(public, headers, body=b"Spec Body!")
    assert not _verifies(public, {**headers, "X-Ops-Userid": "other"})
    assert not _verifies(public, headers, method="PUT")
    assert not _verifies(public, headers, now=AT + dt.timedelta(minutes=16))
    assert not _verifies(public, {k: v for k, v in headers.items()
                                  if k != "X-Ops-Authorization-3"})
    assert not _verifies(pki.public_key_pem(pki.generate_rsa_key()), headers)


def test_header_names_are_case_insensitive_when_verifying() -> None:
    lowered = {k.lower(): v for k, v in _signed().items()}
    assert chef_auth.verify_request(_public(), method="POST", path=PATH, headers=lowered,
                                    body=BODY, now=AT)


def test_a_pkcs8_key_signs_the_same() -> None:
    pkcs8 = pki.private_key_pem(chef_auth.load_private_key(PRIVATE_KEY))
    assert chef_auth.sign_request(pkcs8, user_id=USER_ID, method="POST", path=PATH, body=BODY,
                                  at=AT) == _signed()


def test_unusable_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        chef_auth.load_private_key(_public())
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        chef_auth.load_private_key("garbage")
