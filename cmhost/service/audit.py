"""The audit trail: a CloudTrail record of every call, written in the same transaction as the
change it describes.

A call that changes something carries its record (`CallRecord`) in a context variable while
its handler runs; the first write transaction the handler commits inserts the record (a
hook of `Database.write`, just before the commit), so a crash leaves both or neither. The
call's outcome (its response or error) is added a moment later. A call that changes nothing
(a read, a denied or failed call) is written by the trail's background writer within a
second, in batches: a crash may lose the last second of those, never a change's record.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from cmhost.storage import audit as store
from cmhost.storage.db import Database
from cmhost.workflows.background import BackgroundLoop

log = logging.getLogger("cmhost.audit")

EVENT_VERSION = "1.09"
OPSWORKS_CM_SOURCE = "opsworks-cm.amazonaws.com"
IAM_SOURCE = "iam.amazonaws.com"
CLOUDTRAIL_SOURCE = "cloudtrail.amazonaws.com"
HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"  # CloudTrail's word for a redacted value
# Records of calls that changed nothing, waiting for the writer: beyond this many (the
# database out for long), the oldest are dropped and the loss is logged.
MAX_PENDING = 100_000


def event_time_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def root_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:root"


def user_arn(account: str, name: str) -> str:
    return f"arn:aws:iam::{account}:user/{name}"


def user_identity(account: str, principal_arn: str, *, user_name: str | None,
                  user_id: str | None, access_key_id: str | None) -> dict[str, Any]:
    """CloudTrail's userIdentity of an account's root or of one of its users."""
    if user_name is None:
        identity: dict[str, Any] = {"type": "Root", "principalId": account,
                                    "arn": principal_arn, "accountId": account}
    else:
        identity = {"type": "IAMUser", "principalId": user_id or user_name,
                    "arn": principal_arn, "accountId": account}
    if access_key_id:
        identity["accessKeyId"] = access_key_id
    if user_name is not None:
        identity["userName"] = user_name
    return identity


@dataclass(frozen=True)
class Resource:
    type: str  # AWS::OpsWorksCM::Server, AWS::OpsWorksCM::Backup, AWS::IAM::User ...
    name: str  # a server's name, a backup's id, a user's name
    arn: str | None = None


@dataclass(slots=True)
class CallRecord:
    """One call as CloudTrail records it; `stored` once a committed transaction holds it.

    Stored as columns (`row`), not as the record's JSON: every call is a row, and the JSON
    (`record_of`) is made only when someone reads it (LookupEvents, a delivery file)."""

    account: str
    region: str
    event_source: str
    event_name: str
    event_time: float
    principal_arn: str
    user_name: str  # LookupEvents' Username: the user's name, or "root"
    user_id: str | None
    access_key_id: str | None
    source_ip: str
    user_agent: str
    request_id: str
    read_only: bool
    request_parameters: Mapping[str, Any] | None = None
    response_elements: Mapping[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    resources: tuple[Resource, ...] = ()
    console: bool = False
    additional: Mapping[str, Any] | None = None
    invoked_by: str | None = None  # a change made by cmhost itself (the CLI)
    event_id: str = field(default_factory=lambda: new_event_id())
    stored: bool = False
    seq: int | None = None  # its row, once inserted

    def record(self) -> dict[str, Any]:
        """The CloudTrail record (what LookupEvents' CloudTrailEvent and the files hold)."""
        return record_of(self.row(complete=True))

    def outcome(self) -> dict[str, Any]:
        """The columns a call's outcome sets."""
        detail: dict[str, Any] = {}
        arns = [r for r in self.resources if r.arn]
        if arns:
            detail["resources"] = [{"accountId": self.account, "type": r.type, "ARN": r.arn}
                                   for r in arns]
        if self.console:
            detail["console"] = True
        if self.additional:
            detail["additionalEventData"] = self.additional
        if self.invoked_by:
            detail["invokedBy"] = self.invoked_by
        return {"error_code": self.error_code, "error_message": self.error_message,
                "response_elements": _json(self.response_elements),
                "detail": _json(detail) if detail else None}

    def row(self, *, complete: bool) -> dict[str, Any]:
        first = self.resources[0] if self.resources else None
        return {"event_id": self.event_id, "account": self.account, "region": self.region,
                "event_time": self.event_time, "event_source": self.event_source,
                "event_name": self.event_name, "user_name": self.user_name,
                "access_key_id": self.access_key_id, "read_only": self.read_only,
                "resource_type": first.type if first else None,
                "resource_name": first.name if first else None,
                "principal_arn": self.principal_arn, "user_id": self.user_id,
                "source_ip": self.source_ip, "user_agent": self.user_agent,
                "request_id": self.request_id,
                "request_parameters": _json(self.request_parameters),
                **self.outcome(), "complete": complete}


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def record_of(row: Any) -> dict[str, Any]:
    """The CloudTrail record of a stored row."""
    account = row["account"]
    detail = json.loads(row["detail"]) if row["detail"] else {}
    root = row["principal_arn"] == root_arn(account)
    identity = user_identity(account, row["principal_arn"],
                             user_name=None if root else row["user_name"],
                             user_id=row["user_id"], access_key_id=row["access_key_id"])
    if detail.get("invokedBy"):
        identity["invokedBy"] = detail["invokedBy"]
    out: dict[str, Any] = {
        "eventVersion": EVENT_VERSION, "userIdentity": identity,
        "eventTime": event_time_text(row["event_time"]), "eventSource": row["event_source"],
        "eventName": row["event_name"], "awsRegion": row["region"],
        "sourceIPAddress": row["source_ip"], "userAgent": row["user_agent"]}
    if row["error_code"] is not None:
        out["errorCode"] = row["error_code"]
        out["errorMessage"] = row["error_message"] or ""
    out["requestParameters"] = (json.loads(row["request_parameters"])
                                if row["request_parameters"] else None)
    out["responseElements"] = (json.loads(row["response_elements"])
                               if row["response_elements"] else None)
    if detail.get("additionalEventData"):
        out["additionalEventData"] = detail["additionalEventData"]
    out.update({"requestID": row["request_id"], "eventID": row["event_id"],
                "readOnly": bool(row["read_only"])})
    if detail.get("resources"):
        out["resources"] = detail["resources"]
    out.update({"eventType": "AwsApiCall", "managementEvent": True,
                "recipientAccountId": account, "eventCategory": "Management"})
    if detail.get("console"):
        out["sessionCredentialFromConsole"] = "true"
    return out


def record_text(row: Any) -> str:
    return json.dumps(record_of(row), separators=(",", ":"))


# Event ids in the UUID form: a random per-process part and a counter (unique without
# drawing random bytes for every call, which every call is).
_ID_RANDOM = os.urandom(9).hex()
_ID_HEAD = f"{_ID_RANDOM[:8]}-{_ID_RANDOM[8:12]}-4{_ID_RANDOM[12:15]}-b{_ID_RANDOM[15:18]}-"
_ID_COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))


def new_event_id() -> str:
    return f"{_ID_HEAD}{next(_ID_COUNTER) & 0xFFFFFFFFFFFF:012x}"


_CURRENT: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar(
    "cmhost_audit_record", default=None)


def write_now(conn: Connection, record: CallRecord) -> None:
    """Insert a whole record in the caller's transaction (a change made outside any request,
    such as the CLI's: the same transaction as the change)."""
    record.seq = store.insert_event(conn, record.row(complete=True))
    record.stored = True


class AuditTrail(BackgroundLoop):
    """Records calls: in the transaction of their first write (see the module), or through a
    background writer that flushes every `interval` seconds."""

    thread_name = "cmhost-audit"

    def __init__(self, db: Database, *, interval: float = 0.5,
                 last_used: Callable[[], dict[str, float]] | None = None,
                 write_last_used: Callable[[Connection, dict[str, float]], None] | None = None
                 ) -> None:
        super().__init__()
        self.db = db
        self.interval = interval
        self._pending: list[CallRecord] = []
        self._lock = threading.Lock()
        self._dropped = 0
        # Keys' last use, written by the same writer (keys.KeyDirectory collects them).
        self._last_used = last_used
        self._write_last_used = write_last_used
        db.commit_hooks.append(self._in_transaction)

    # --- a call's record ------------------------------------------------------------

    @contextmanager
    def carrying(self, record: CallRecord) -> Iterator[None]:
        """Within it, the first write transaction committed on this thread inserts `record`."""
        token = _CURRENT.set(record)
        try:
            yield
        finally:
            _CURRENT.reset(token)

    def _in_transaction(self, conn: Connection) -> Callable[[], None] | None:
        record = _CURRENT.get()
        if record is None or record.stored:
            return None
        self._insert_pending(conn, record)
        return lambda: self._mark_stored(record)

    def _insert_pending(self, conn: Connection, record: CallRecord) -> None:
        """The record of the change `conn`'s transaction makes, in that transaction (its
        outcome follows once the call is over)."""
        record.seq = store.insert_event(conn, record.row(complete=False))

    def _mark_stored(self, record: CallRecord) -> None:
        record.stored = True

    def finish(self, record: CallRecord) -> None:
        """The call is over (its outcome is in `record`): written within `interval`."""
        with self._lock:
            self._pending.append(record)
            if len(self._pending) > MAX_PENDING:
                drop = len(self._pending) - MAX_PENDING
                del self._pending[:drop]
                self._dropped += drop

    # --- the writer -----------------------------------------------------------------

    def start(self) -> None:
        self._start_thread()

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self.flush()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sleep(self.interval)
            try:
                self.flush()
            except Exception as exc:
                if not self.db.unavailable(exc):
                    log.exception("writing audit records failed; retrying")

    def flush(self) -> int:
        """Write what is pending; how many records. On failure they stay pending."""
        with self._lock:
            batch, self._pending = self._pending, []
            dropped, self._dropped = self._dropped, 0
        used = self._last_used() if self._last_used is not None else {}
        if dropped:
            log.error("%d audit records of calls that changed nothing were dropped: the "
                      "database could not take them for too long", dropped)
        if not batch and not used:
            return 0
        try:
            with self.db.write() as conn:
                store.insert_events(conn, [r.row(complete=True) for r in batch
                                           if not r.stored])
                for r in batch:
                    if r.stored and r.seq is not None:
                        store.complete_event(conn, r.seq, r.outcome())
                if used and self._write_last_used is not None:
                    self._write_last_used(conn, used)
        except BaseException:
            with self._lock:
                self._pending[:0] = batch
            raise
        for r in batch:
            r.stored = True
        return len(batch)

