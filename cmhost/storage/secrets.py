"""Secrets at rest: AES-GCM with a master key that lives in a file outside the database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "v1:"


class MasterKeyError(Exception):
    """The master key is missing, unreadable, malformed, or not this database's key."""


def load_or_create_master_key(path: Path, *, create: bool = True) -> bytes:
    """Read the 32-byte master key (base64 text); create it (mode 0600) if it is absent."""
    env = os.environ.get("CMHOST_MASTER_KEY")
    if env:
        return _decode_key(env.strip(), "CMHOST_MASTER_KEY")
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise MasterKeyError(
                f"master key file {path} is readable by others; run: chmod 600 {path}")
        return _decode_key(path.read_text().strip(), str(path))
    if not create:
        raise MasterKeyError(f"master key file {path} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = AESGCM.generate_key(bit_length=256)
    # Written whole under another name, then linked into place, which fails if the file
    # exists: a process starting at the same moment never reads a half-written key, and
    # the first key linked is everyone's.
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(key).decode() + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return _decode_key(path.read_text().strip(), str(path))
    finally:
        temporary.unlink(missing_ok=True)
    return key


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise MasterKeyError(f"master key in {where} is not base64") from exc
    if len(key) != 32:
        raise MasterKeyError(f"master key in {where} must be 32 bytes, found {len(key)}")
    return key


class SecretBox:
    """Encrypts and decrypts short secrets; `context` binds a ciphertext to its owner."""

    def __init__(self, master_key: bytes) -> None:
        self._aead = AESGCM(hashlib.sha256(b"cmhost-secrets\0" + master_key).digest())
        self._token_key = hashlib.sha256(b"cmhost-tokens\0" + master_key).digest()
        self.fingerprint = hashlib.sha256(b"cmhost-fingerprint\0" + master_key).hexdigest()[:16]

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return PREFIX + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, ciphertext: str, context: str) -> str:
        if not ciphertext.startswith(PREFIX):
            raise MasterKeyError("unknown secret format")
        raw = base64.b64decode(ciphertext[len(PREFIX):])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag as exc:
            raise MasterKeyError("a secret could not be decrypted with this master key") from exc

    def encrypt_bytes(self, data: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        return b"CMHB1" + nonce + self._aead.encrypt(nonce, data, context.encode())

    def decrypt_bytes(self, sealed: bytes, context: str) -> bytes:
        if not sealed.startswith(b"CMHB1") or len(sealed) < 5 + 12 + 16:
            raise MasterKeyError("unknown encrypted blob format")
        nonce, body = sealed[5:17], sealed[17:]
        try:
            return self._aead.decrypt(nonce, body, context.encode())
        except InvalidTag as exc:
            raise MasterKeyError("a blob could not be decrypted with this master key") from exc

    def mac(self, data: bytes) -> bytes:
        """An HMAC (for pagination tokens and the like) under a key derived from the master."""
        return hmac.new(self._token_key, data, hashlib.sha256).digest()
