"""Access keys: issuing, listing and deleting them, and finding one for SigV4."""

from __future__ import annotations

import secrets
import string
import threading
import time
from dataclasses import dataclass

from cmhost.storage import repo
from cmhost.storage.db import Database
from cmhost.storage.secrets import SecretBox

DEV_ACCESS_KEY = "test"
DEV_SECRET_KEY = "test"
DEV_ACCOUNT = "000000000000"


@dataclass(frozen=True)
class AccessKey:
    """An access key as SigV4 verification needs it."""

    access_key_id: str
    secret_access_key: str
    account: str
    principal_arn: str


@dataclass(frozen=True)
class IssuedKey:
    access_key_id: str
    secret_access_key: str
    account: str
    principal_arn: str


def _key_context(access_key_id: str) -> str:
    return f"access-key:{access_key_id}"


def issue_key(db: Database, box: SecretBox, *, account: str, user: str, now: float) -> IssuedKey:
    access_key_id = "AKIA" + "".join(
        secrets.choice(string.ascii_uppercase + "234567") for _ in range(16))
    secret = "".join(secrets.choice(string.ascii_letters + string.digits + "+/")
                     for _ in range(40))
    principal = f"arn:aws:iam::{account}:user/{user}"
    with db.write() as conn:
        repo.insert_access_key(conn, access_key_id=access_key_id, account=account,
                               principal_arn=principal,
                               secret_enc=box.encrypt(secret, _key_context(access_key_id)),
                               created_at=now)
    return IssuedKey(access_key_id, secret, account, principal)


def list_keys(db: Database) -> list[dict[str, object]]:
    with db.read() as conn:
        rows = repo.list_access_keys(conn)
    return [{"AccessKeyId": r["access_key_id"], "Account": r["account"],
             "Principal": r["principal_arn"], "CreatedAt": r["created_at"]} for r in rows]


def delete_key(db: Database, access_key_id: str) -> bool:
    with db.write() as conn:
        return repo.delete_access_key(conn, access_key_id)


class KeyDirectory:
    """Finds the secret for an access key: the issued keys, plus the dev key on loopback.

    Found keys are cached for a few seconds (decrypting on every request would be waste);
    a key issued while the service runs is found on its first use, and a deleted key stops
    working within `ttl` seconds.
    """

    def __init__(self, db: Database, box: SecretBox, *, allow_dev_key: bool,
                 ttl: float = 5.0) -> None:
        self._db = db
        self._box = box
        self._allow_dev_key = allow_dev_key
        self._ttl = ttl
        self._cache: dict[str, tuple[float, AccessKey]] = {}
        self._lock = threading.Lock()

    def __call__(self, access_key_id: str) -> AccessKey | None:
        if self._allow_dev_key and access_key_id == DEV_ACCESS_KEY:
            return AccessKey(DEV_ACCESS_KEY, DEV_SECRET_KEY, DEV_ACCOUNT,
                             f"arn:aws:iam::{DEV_ACCOUNT}:root")
        now = time.monotonic()
        cached = self._cache.get(access_key_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        with self._db.read() as conn:
            row = repo.get_access_key(conn, access_key_id)
        if row is None:
            self._cache.pop(access_key_id, None)
            return None
        record = AccessKey(row["access_key_id"],
                           self._box.decrypt(row["secret_enc"], _key_context(access_key_id)),
                           row["account"], row["principal_arn"])
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[access_key_id] = (now + self._ttl, record)
        return record
