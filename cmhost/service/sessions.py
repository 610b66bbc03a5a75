"""Sessions of the account console and of the servers' dashboards, kept in the database.

A session id is 32 random bytes handed to the browser once; the database keeps only its
SHA-256, so a copy of the database opens no session. A session ends when it is signed out,
after IDLE_SECONDS without a request, when its access key is deleted (console) and when the
server's admin password changes or the server goes (dashboard). Times are the machine's wall
clock, never the virtual clock: people sign in on real time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from cmhost.storage import console_sessions as store
from cmhost.storage.db import Database
from cmhost.storage.secrets import SecretBox

IDLE_SECONDS = 12 * 3600
# last_seen is written at most this often per session: a page view is a read, not a write.
TOUCH_SECONDS = 60.0
# Expired rows are swept at most this often (at sign-in).
SWEEP_SECONDS = 600.0

CONSOLE = "console"
DASHBOARD = "dashboard"


@dataclass(frozen=True)
class Session:
    """A live session, as a request sees it."""

    kind: str
    account: str | None
    region: str | None
    principal_arn: str | None
    access_key_id: str | None
    server_id: str | None
    credential_check: str | None


def id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).hexdigest()


def credential_check(password_hash: str) -> str:
    """What a dashboard session remembers of the admin password it was opened with."""
    return hashlib.sha256(password_hash.encode()).hexdigest()


class SessionStore:
    def __init__(self, db: Database, box: SecretBox,
                 now: Callable[[], float] = time.time) -> None:
        self._db = db
        self._box = box
        self._now = now
        self._swept_at = 0.0

    def start(self, *, kind: str, account: str | None = None, region: str | None = None,
              principal_arn: str | None = None, access_key_id: str | None = None,
              server_id: str | None = None, check: str | None = None) -> str:
        """A new session; returns its id (the only time it exists outside the browser)."""
        session_id = secrets.token_urlsafe(32)
        now = self._now()
        with self._db.write() as conn:
            if now - self._swept_at > SWEEP_SECONDS:
                self._swept_at = now
                store.delete_sessions_idle_since(conn, now - IDLE_SECONDS)
            store.insert_session(conn, id_hash=id_hash(session_id), kind=kind, account=account,
                                 region=region, principal_arn=principal_arn,
                                 access_key_id=access_key_id, server_id=server_id,
                                 credential_check=check, created_at=now, last_seen=now)
        return session_id

    def get(self, session_id: str | None, kind: str) -> Session | None:
        """The live session of that id and kind (its idle time restarts), else None."""
        if not session_id or len(session_id) > 128:
            return None
        key = id_hash(session_id)
        with self._db.read() as conn:
            row = store.get_session(conn, key)
        if row is None or row["kind"] != kind:
            return None
        now = self._now()
        if now - row["last_seen"] > IDLE_SECONDS:
            self.end(session_id)
            return None
        if now - row["last_seen"] > TOUCH_SECONDS:
            with self._db.write() as conn:
                store.update_session(conn, key, last_seen=now)
        return Session(kind=row["kind"], account=row["account"], region=row["region"],
                       principal_arn=row["principal_arn"], access_key_id=row["access_key_id"],
                       server_id=row["server_id"], credential_check=row["credential_check"])

    def set_region(self, session_id: str, region: str) -> None:
        with self._db.write() as conn:
            store.update_session(conn, id_hash(session_id), region=region)

    def end(self, session_id: str) -> None:
        with self._db.write() as conn:
            store.delete_session(conn, id_hash(session_id))

    def csrf_token(self, secret: str) -> str:
        """The CSRF token of a session (or of a pre-sign-in cookie): a MAC of its id under
        the master key, so it is stored nowhere and cannot be made without the id."""
        return self._box.mac(b"cmhost-console-csrf\x00" + secret.encode()).hex()

    def csrf_matches(self, secret: str | None, token: str | None) -> bool:
        if not secret or not token:
            return False
        return hmac.compare_digest(self.csrf_token(secret).encode(),
                                   token.encode("utf-8", "surrogateescape"))
