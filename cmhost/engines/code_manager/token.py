"""The Code Manager's token: made once for the starter kit, kept only as its SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_DIGEST = "code_manager_token_sha256"  # its key in a server's EngineMaterial.public


def new_token() -> tuple[str, str]:
    """A new token and its digest (256 random bits: a fast hash is enough)."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.strip().encode("utf-8", "replace")).hexdigest()


def token_matches(token: str, digest: str) -> bool:
    return bool(digest) and hmac.compare_digest(token_digest(token), digest)
