"""Backup artifacts and logs in the blob store: encrypted, checksummed, verified on read;
the signed links that serve logs (S3LogUrl, LogUrl)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import quote

from cmhost.storage.blobs import BlobNotFound, BlobStore
from cmhost.storage.repo import Row
from cmhost.storage.secrets import MasterKeyError, SecretBox


class ArtifactError(Exception):
    """A backup artifact is missing, corrupted, or cannot be decrypted."""


def artifact_key(backup: Row) -> str:
    return f"backups/{backup['account']}/{backup['region']}/{backup['id']}.tar.gz.enc"


def log_key(backup: Row) -> str:
    return f"logs/{backup['account']}/{backup['region']}/{backup['id']}.log"


def store_artifact(blobs: BlobStore, box: SecretBox, backup: Row,
                   artifact: bytes) -> tuple[str, str, int]:
    """Encrypt and store; returns (key, sha256 of the stored bytes, size)."""
    sealed = box.encrypt_bytes(artifact, backup["arn"])
    key = artifact_key(backup)
    blobs.put(key, sealed)
    return key, hashlib.sha256(sealed).hexdigest(), len(sealed)


def load_artifact(blobs: BlobStore, box: SecretBox, backup: Row) -> bytes:
    """The decrypted artifact, after checking it is the one that was stored."""
    key = backup["artifact_key"]
    if not key:
        raise ArtifactError(f"Backup {backup['id']} has no artifact.")
    try:
        sealed = blobs.get(key)
    except BlobNotFound:
        raise ArtifactError(f"The artifact of backup {backup['id']} is missing.") from None
    if hashlib.sha256(sealed).hexdigest() != backup["artifact_sha256"]:
        raise ArtifactError(
            f"The artifact of backup {backup['id']} is corrupted (checksum mismatch).")
    try:
        return box.decrypt_bytes(sealed, backup["arn"])
    except MasterKeyError:
        raise ArtifactError(
            f"The artifact of backup {backup['id']} cannot be decrypted.") from None


def verify_artifact(blobs: BlobStore, backup: Row) -> bool:
    """Whether the stored artifact is present and matches its checksum."""
    try:
        sealed = blobs.get(backup["artifact_key"])
    except (BlobNotFound, ValueError, TypeError):
        return False
    return hashlib.sha256(sealed).hexdigest() == backup["artifact_sha256"]


@dataclass(frozen=True)
class LogLinks:
    """Signed links to the logs in the blob store, at this cmhost's public URL."""

    public_url: str
    box: SecretBox

    def url(self, key: str) -> str:
        return log_url(self.public_url, self.box, key)


def log_url(public_url: str, box: SecretBox, key: str) -> str:
    """A URL of cmhost that serves the log; the signature makes it unguessable."""
    return f"{public_url}/_cmhost/logs/{quote(key)}?sig={sign_key(box, key)}"


def sign_key(box: SecretBox, key: str) -> str:
    return box.mac(b"log:" + key.encode()).hex()[:32]
