"""Chef API request signing: the Mixlib::Authentication protocol, version 1.3 with SHA-256.

A Chef server (goiardi here) authenticates every request by these headers:

    X-Ops-Sign:               algorithm=sha256;version=1.3;
    X-Ops-Userid:             the client or user name
    X-Ops-Timestamp:          UTC, ISO 8601 (2009-01-01T12:00:00Z)
    X-Ops-Content-Hash:       base64(sha256(body))
    X-Ops-Server-API-Version: the API version asked for ("1")
    X-Ops-Authorization-N:    base64 of the RSA PKCS#1 v1.5 SHA-256 signature of the
                              canonical request, cut into 60-character lines, N = 1, 2, ...

The canonical request is seven lines joined by "\\n" (no final newline):

    Method:<METHOD>
    Path:<path, repeated slashes collapsed, no trailing slash, no query>
    X-Ops-Content-Hash:<content hash>
    X-Ops-Sign:version=1.3
    X-Ops-Timestamp:<timestamp>
    X-Ops-UserId:<user id>
    X-Ops-Server-API-Version:<api version>

Versions 1.0 to 1.2 (SHA-1) are not implemented: every Chef server since Chef 12.4, and
goiardi since 0.11.4, accepts 1.3.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGN_VERSION = "1.3"
SIGN_HEADER = "algorithm=sha256;version=1.3;"
SERVER_API_VERSION = "1"
# Chef servers accept a request whose timestamp is this far from their clock (15 minutes).
DEFAULT_SLEW = dt.timedelta(minutes=15)

_LINE = 60
_AUTH_HEADER = re.compile(r"x-ops-authorization-(\d+)", re.IGNORECASE)
_SIGN_VERSION = re.compile(r"version=(\d+\.\d+)")
_SIGN_ALGORITHM = re.compile(r"algorithm=(\w+)")


def content_hash(body: bytes) -> str:
    """X-Ops-Content-Hash of version 1.3: base64 of the body's SHA-256."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def canonical_path(path: str) -> str:
    """The path as signed: no query, repeated slashes collapsed, no trailing slash."""
    path = path.split("?", 1)[0]
    path = re.sub(r"/+", "/", path) or "/"
    return path.rstrip("/") if len(path) > 1 else path


def timestamp(at: dt.datetime | None = None) -> str:
    """X-Ops-Timestamp: UTC to the second, ISO 8601 with a Z."""
    when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_request(
    method: str,
    path: str,
    hashed_body: str,
    stamp: str,
    user_id: str,
    server_api_version: str = SERVER_API_VERSION,
) -> str:
    """The string a version 1.3 signature covers."""
    return "\n".join(
        [
            f"Method:{method.upper()}",
            f"Path:{canonical_path(path)}",
            f"X-Ops-Content-Hash:{hashed_body}",
            f"X-Ops-Sign:version={SIGN_VERSION}",
            f"X-Ops-Timestamp:{stamp}",
            f"X-Ops-UserId:{user_id}",
            f"X-Ops-Server-API-Version:{server_api_version}",
        ]
    )


def load_private_key(private_key_pem: str | bytes) -> rsa.RSAPrivateKey:
    """An unencrypted RSA private key in PEM (PKCS#1 or PKCS#8); ValueError otherwise."""
    data = private_key_pem.encode("ascii") if isinstance(private_key_pem, str) else private_key_pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (TypeError, ValueError):
        raise ValueError("the key is not an unencrypted PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        return key
    raise ValueError("the key is not an RSA key")


def sign_request(
    private_key: str | bytes | rsa.RSAPrivateKey,
    *,
    user_id: str,
    method: str,
    path: str,
    body: bytes = b"",
    at: dt.datetime | None = None,
    server_api_version: str = SERVER_API_VERSION,
) -> dict[str, str]:
    """The X-Ops-* headers that authenticate one request as `user_id`."""
    key = private_key if isinstance(private_key, rsa.RSAPrivateKey) else load_private_key(
        private_key
    )
    hashed = content_hash(body)
    stamp = timestamp(at)
    canonical = canonical_request(method, path, hashed, stamp, user_id, server_api_version)
    signature = key.sign(canonical.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    encoded = base64.b64encode(signature).decode("ascii")
    headers = {
        "X-Ops-Sign": SIGN_HEADER,
        "X-Ops-Userid": user_id,
        "X-Ops-Timestamp": stamp,
        "X-Ops-Content-Hash": hashed,
        "X-Ops-Server-API-Version": server_api_version,
    }
    for number, start in enumerate(range(0, len(encoded), _LINE), start=1):
        headers[f"X-Ops-Authorization-{number}"] = encoded[start : start + _LINE]
    return headers


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return ""


def signature_of(headers: Mapping[str, str]) -> bytes | None:
    """The signature the X-Ops-Authorization-N headers carry (None when absent or broken)."""
    parts: dict[int, str] = {}
    for key, value in headers.items():
        match = _AUTH_HEADER.fullmatch(key)
        if match:
            parts[int(match.group(1))] = value
    if not parts or sorted(parts) != list(range(1, len(parts) + 1)):
        return None
    try:
        return base64.b64decode("".join(parts[n] for n in sorted(parts)), validate=True)
    except ValueError:
        return None


def verify_request(
    public_key_pem: str | bytes,
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes = b"",
    now: dt.datetime | None = None,
    slew: dt.timedelta = DEFAULT_SLEW,
) -> bool:
    """True when the headers are a valid version 1.3 signature of the request by the key
    (content hash, timestamp within `slew` of `now`, signature)."""
    sign = _header(headers, "X-Ops-Sign")
    version = _SIGN_VERSION.search(sign)
    algorithm = _SIGN_ALGORITHM.search(sign)
    if not version or version.group(1) != SIGN_VERSION:
        return False
    if algorithm and algorithm.group(1) != "sha256":
        return False
    hashed = _header(headers, "X-Ops-Content-Hash")
    if not hmac.compare_digest(hashed.encode(), content_hash(body).encode()):
        return False
    stamp = _header(headers, "X-Ops-Timestamp")
    try:
        when = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return False
    if abs((now or dt.datetime.now(dt.UTC)) - when) > slew:
        return False
    signature = signature_of(headers)
    if signature is None:
        return False
    canonical = canonical_request(
        method,
        path,
        hashed,
        stamp,
        _header(headers, "X-Ops-Userid"),
        _header(headers, "X-Ops-Server-API-Version"),
    )
    data = public_key_pem.encode("ascii") if isinstance(public_key_pem, str) else public_key_pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        return False
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(signature, canonical.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True
