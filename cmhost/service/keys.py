"""Access keys: issuing (an account's root key, or a user's), listing, activating and
deactivating and deleting them, and finding one for SigV4."""

from __future__ import annotations

import secrets
import string
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from cmhost.service.audit import root_arn, user_arn
from cmhost.service.audit_changes import key_resource, record_change
from cmhost.storage import iam, repo
from cmhost.storage.db import Database
from cmhost.storage.secrets import SecretBox

DEV_ACCESS_KEY = "test"
DEV_SECRET_KEY = "test"
DEV_ACCOUNT = "000000000000"
MAX_KEYS_PER_USER = 2  # as IAM allows
ACTIVE, INACTIVE = "Active", "Inactive"
# A key's last use is written at most this often (seconds): not a write per request.
LAST_USED_EVERY = 60.0


class KeyProblem(ValueError):
    """A key operation that cannot be done (said in one line)."""


@dataclass(frozen=True)
class AccessKey:
    """An access key as SigV4 verification needs it."""

    access_key_id: str
    secret_access_key: str
    account: str
    principal_arn: str
    user_name: str | None = None  # None: the account's root key


@dataclass(frozen=True)
class IssuedKey:
    access_key_id: str
    secret_access_key: str
    account: str
    principal_arn: str
    user_name: str | None = None


def _key_context(access_key_id: str) -> str:
    return f"access-key:{access_key_id}"


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def issue_key(db: Database, box: SecretBox, *, account: str, user: str | None = None,
              now: float, audit: bool = True) -> IssuedKey:
    """A new Active key: the account's root key (`user` None) or the user's (at most two)."""
    access_key_id = "AKIA" + "".join(
        secrets.choice(string.ascii_uppercase + "234567") for _ in range(16))
    secret = "".join(secrets.choice(string.ascii_letters + string.digits + "+/")
                     for _ in range(40))
    principal = root_arn(account) if user is None else user_arn(account, user)
    with db.write() as conn:
        if user is not None:
            if iam.get_user(conn, account, user) is None:
                raise KeyProblem(f"no user {user} in account {account} (create it with "
                                f"`cmhost users create {user} --account {account}`)")
            if iam.count_user_keys(conn, account, user) >= MAX_KEYS_PER_USER:
                raise KeyProblem(f"user {user} has {MAX_KEYS_PER_USER} access keys already, "
                                "the most a user may have: delete one first")
        repo.insert_access_key(conn, access_key_id=access_key_id, account=account,
                               principal_arn=principal,
                               secret_enc=box.encrypt(secret, _key_context(access_key_id)),
                               created_at=now)
        iam.insert_key_owner(conn, access_key_id=access_key_id, account=account,
                             user_name=user, status=ACTIVE, last_used_at=None)
        if audit:
            params = {"userName": user} if user is not None else {}
            record_change(conn, account=account, event_name="CreateAccessKey", now=now,
                          params=params, resource=key_resource(access_key_id),
                          response={"accessKey": {"accessKeyId": access_key_id,
                                                  "status": ACTIVE,
                                                  "userName": user or "root",
                                                  "createDate": _iso(now)}})
    return IssuedKey(access_key_id, secret, account, principal, user)


def _listed(row: Any) -> dict[str, object]:
    return {"AccessKeyId": row["access_key_id"], "Account": row["account"],
            "UserName": row["user_name"] or "(root)", "Principal": row["principal_arn"],
            "Status": row["status"] or ACTIVE, "CreatedAt": _iso(row["created_at"]),
            "LastUsedAt": _iso(row["last_used_at"])}


def list_keys(db: Database, account: str | None = None) -> list[dict[str, object]]:
    with db.read() as conn:
        rows = iam.list_keys(conn, account)
    return [_listed(r) for r in rows]


def _owned(conn: Connection, access_key_id: str) -> Any:
    row = iam.get_key(conn, access_key_id)
    if row is None:
        raise KeyProblem(f"no access key {access_key_id}")
    return row


def set_status(db: Database, access_key_id: str, status: str, *, now: float) -> None:
    """Make a key Active or Inactive (an Inactive key is refused as an unknown one)."""
    with db.write() as conn:
        row = _owned(conn, access_key_id)
        if row["status"] is None:  # cannot happen after migration 0010; a row makes it so
            iam.insert_key_owner(conn, access_key_id=access_key_id, account=row["account"],
                                 user_name=None, status=status, last_used_at=None)
        else:
            iam.set_key_status(conn, access_key_id, status)
        params: dict[str, Any] = {"accessKeyId": access_key_id, "status": status}
        if row["user_name"] is not None:
            params["userName"] = row["user_name"]
        record_change(conn, account=row["account"], event_name="UpdateAccessKey", now=now,
                      params=params, resource=key_resource(access_key_id))


def delete_key(db: Database, access_key_id: str, *, now: float | None = None) -> bool:
    with db.write() as conn:
        row = iam.get_key(conn, access_key_id)
        if row is None:
            return False
        iam.delete_key(conn, access_key_id)
        params: dict[str, Any] = {"accessKeyId": access_key_id}
        if row["user_name"] is not None:
            params["userName"] = row["user_name"]
        record_change(conn, account=row["account"], event_name="DeleteAccessKey",
                      now=time.time() if now is None else now, params=params,
                      resource=key_resource(access_key_id))
    return True


class KeyDirectory:
    """Finds the secret for an access key: the issued Active keys, plus the dev key on
    loopback.

    Found keys are cached for a few seconds (decrypting on every request would be waste);
    a key issued while the service runs is found on its first use, and a deleted or
    deactivated key (or one whose user was deleted) stops working within `ttl` seconds.
    Each key's last use is kept here and written at most every LAST_USED_EVERY seconds
    (`take_last_used`, by the audit trail's writer).
    """

    def __init__(self, db: Database, box: SecretBox, *, allow_dev_key: bool,
                 ttl: float = 5.0) -> None:
        self._db = db
        self._box = box
        self._allow_dev_key = allow_dev_key
        self._ttl = ttl
        self._cache: dict[str, tuple[float, AccessKey | None]] = {}
        self._lock = threading.Lock()
        self._used: dict[str, float] = {}  # to write
        self._noted: dict[str, float] = {}  # when each key's use was last queued

    def __call__(self, access_key_id: str) -> AccessKey | None:
        if self._allow_dev_key and access_key_id == DEV_ACCESS_KEY:
            return AccessKey(DEV_ACCESS_KEY, DEV_SECRET_KEY, DEV_ACCOUNT, root_arn(DEV_ACCOUNT))
        now = time.monotonic()
        cached = self._cache.get(access_key_id)
        if cached is not None and cached[0] > now and cached[1] is not None:
            return cached[1]
        with self._db.read() as conn:
            row = iam.get_key(conn, access_key_id)
        if row is None or (row["status"] or ACTIVE) != ACTIVE:
            self._cache.pop(access_key_id, None)
            return None
        record = AccessKey(row["access_key_id"],
                           self._box.decrypt(row["secret_enc"], _key_context(access_key_id)),
                           row["account"], row["principal_arn"], row["user_name"])
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[access_key_id] = (now + self._ttl, record)
        return record

    def used(self, access_key_id: str) -> None:
        """A request signed with the key was verified: its last use, now and then."""
        now = time.time()
        if now - self._noted.get(access_key_id, 0.0) < LAST_USED_EVERY:
            return
        if access_key_id == DEV_ACCESS_KEY and self._allow_dev_key:
            return
        with self._lock:
            if len(self._noted) > 100_000:
                self._noted.clear()
            self._noted[access_key_id] = now
            self._used[access_key_id] = now

    def take_last_used(self) -> dict[str, float]:
        with self._lock:
            used, self._used = self._used, {}
        return used


def write_last_used(conn: Connection, used: dict[str, float]) -> None:
    iam.set_keys_last_used(conn, used)
