"""The handler table's guard: every operation, from the API or the console, is authorized
(unless the API did it already, before throttling) and recorded in the audit trail, its
record riding along with the call's first write transaction (service/audit.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from cmhost.service.access import Access, Principal, Target
from cmhost.service.audit import (
    CLOUDTRAIL_SOURCE,
    OPSWORKS_CM_SOURCE,
    AuditTrail,
    CallRecord,
    Resource,
)
from cmhost.service.context import Caller
from cmhost.service.errors import ServiceError
from cmhost.storage.db import WouldBlock

log = logging.getLogger("cmhost.audit")

Handler = Callable[[Caller, Any], Any]
# Operations of another service served on the same endpoint: (IAM action prefix, eventSource).
OTHER_SERVICES = {"LookupEvents": ("cloudtrail", CLOUDTRAIL_SOURCE)}
SERVER_TYPE, BACKUP_TYPE = "AWS::OpsWorksCM::Server", "AWS::OpsWorksCM::Backup"


class CallDescriber(Protocol):
    """What the API layer knows of a call's wire shapes: the parameters and response as the
    record shows them, every sensitive member redacted."""

    def request(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any] | None: ...

    def response(self, operation: str, result: Any) -> dict[str, Any] | None: ...


def action_of(operation: str) -> str:
    prefix = OTHER_SERVICES.get(operation, ("opsworks-cm", ""))[0]
    return f"{prefix}:{operation}"


def source_of(operation: str) -> str:
    """The eventSource of an operation's records."""
    return OTHER_SERVICES.get(operation, ("", OPSWORKS_CM_SOURCE))[1]


def read_only(operation: str) -> bool:
    return operation.startswith(("Describe", "List", "Lookup", "Get"))


def _resources(operation: str, params: Mapping[str, Any], target: Target | None,
               result: Any) -> tuple[Resource, ...]:
    """What a call was about, as LookupEvents' Resources and the record's resources."""
    arn = target.arn if target is not None and target.arn != "*" and "*" not in target.arn \
        else None
    if isinstance(result, Mapping):
        for key, arn_key in (("Server", "ServerArn"), ("Backup", "BackupArn")):
            found = result.get(key)
            if isinstance(found, Mapping) and isinstance(found.get(arn_key), str):
                arn = found[arn_key]
    name = params.get("ServerName")
    backup = params.get("BackupId")
    given_arn = params.get("ResourceArn")
    if operation in ("DeleteBackup", "DescribeBackups") and isinstance(backup, str):
        return (Resource(BACKUP_TYPE, backup, arn),)
    if operation == "CreateBackup" and arn is not None and ":backup/" in arn:
        return (Resource(BACKUP_TYPE, arn.rsplit("/", 1)[1], arn),
                Resource(SERVER_TYPE, str(name)))
    if isinstance(name, str):
        return (Resource(SERVER_TYPE, name, arn if arn and ":server/" in arn else None),)
    if isinstance(given_arn, str):
        parts = given_arn.split(":", 5)
        rest = parts[5] if len(parts) == 6 else ""
        if rest.startswith("server/"):
            return (Resource(SERVER_TYPE, rest.split("/")[1], given_arn),)
        if rest.startswith("backup/"):
            return (Resource(BACKUP_TYPE, rest.split("/", 1)[1], given_arn),)
    return ()


class Guard:
    def __init__(self, access: Access, trail: AuditTrail, now: Callable[[], float],
                 describer: CallDescriber, *, unavailable: Callable[[BaseException], bool],
                 key_used: Callable[[str], None] | None = None) -> None:
        self.access = access
        self.trail = trail
        self.now = now
        self.describer = describer
        self.unavailable = unavailable
        self.key_used = key_used
        # Request ids of console calls the guard recorded: the console's after hook asks,
        # and records those that failed before reaching the handler table.
        self._console_seen: set[str] = set()
        self._root = Principal(account="", user_name=None)  # what records need of a root
        self._lock = threading.Lock()

    # --- authorization --------------------------------------------------------------

    def check(self, caller: Caller, operation: str, params: Mapping[str, Any]
              ) -> tuple[Principal, Target | None]:
        """Authorize the call (AccessDeniedException when denied)."""
        return self.access.authorize(caller, action_of(operation), operation, params)

    # --- the table ------------------------------------------------------------------

    def wrap(self, table: Mapping[str, Handler], *, console: bool = False
             ) -> dict[str, Handler]:
        return {name: self._guarded(name, handler, console) for name, handler in table.items()}

    def _guarded(self, operation: str, handler: Handler, console: bool) -> Handler:
        reads = read_only(operation)
        source = source_of(operation)

        def guarded(caller: Caller, params: Mapping[str, Any]) -> Any:
            if console:
                self._saw_console_call(caller.request_id)
                if caller.access_key_id and self.key_used is not None:
                    self.key_used(caller.access_key_id)
            target = None
            if caller.authorized != operation:
                try:
                    target = self.check(caller, operation, params)[1]
                except WouldBlock:
                    raise
                except ServiceError as exc:
                    self.record_failure(caller, operation, params, exc.code, exc.message,
                                        console=console)
                    raise
            record = self.new_record(caller, operation, params, console=console,
                                     target=target, source=source, reads=reads)
            try:
                if reads:  # a read changes nothing: its record needs no transaction
                    result = handler(caller, params)
                else:
                    with self.trail.carrying(record):
                        result = handler(caller, params)
            except WouldBlock:
                raise  # asked again off the event loop: recorded then
            except BaseException as exc:
                record.error_code, record.error_message = self._error_of(exc)
                self.trail.finish(record)
                raise
            if not reads:
                record.response_elements = self.describer.response(operation, result)
                record.resources = _resources(operation, params, target, result)
            self.trail.finish(record)
            return result

        for marker in ("__cmhost_operation__", "__cmhost_reads_only__"):
            if hasattr(handler, marker):
                setattr(guarded, marker, getattr(handler, marker))
        guarded.__name__ = getattr(handler, "__name__", operation)
        return guarded

    def _error_of(self, exc: BaseException) -> tuple[str, str]:
        code = getattr(exc, "code", None)
        message = getattr(exc, "message", None)
        if isinstance(code, str) and isinstance(message, str):
            return code, message
        if isinstance(exc, Exception) and self.unavailable(exc):
            return "ServiceUnavailable", "The service is unavailable for the moment."
        return "InternalFailure", "The request processing has failed because of an unknown error."

    def _saw_console_call(self, request_id: str) -> None:
        with self._lock:
            if len(self._console_seen) > 10_000:  # only a console that never answers
                self._console_seen.clear()
            self._console_seen.add(request_id)

    def console_call_recorded(self, request_id: str) -> bool:
        with self._lock:
            if request_id in self._console_seen:
                self._console_seen.discard(request_id)
                return True
            return False

    # --- records --------------------------------------------------------------------

    def new_record(self, caller: Caller, operation: str, params: Mapping[str, Any], *,
                   console: bool = False, target: Target | None = None,
                   source: str | None = None, reads: bool | None = None) -> CallRecord:
        if self.access.root_caller(caller):
            principal = self._root
        else:
            try:
                principal = self.access.principal(caller)
            except Exception as exc:
                if not self.unavailable(exc):
                    raise
                principal = self._root  # the database out: the record says less
        return CallRecord(
            account=caller.account, region=caller.region,
            event_source=source or source_of(operation),
            event_name=operation, event_time=self.now(), principal_arn=caller.principal_arn,
            user_name=principal.user_name or "root", user_id=principal.user_id,
            access_key_id=caller.access_key_id or None,
            source_ip=caller.source_ip or ("unknown" if console else ""),
            user_agent=caller.user_agent or ("cmhost-console" if console else ""),
            request_id=caller.request_id,
            read_only=read_only(operation) if reads is None else reads,
            request_parameters=self.describer.request(operation, params) if params else None,
            resources=_resources(operation, params, target, None) if params else (),
            console=console)

    def record_failure(self, caller: Caller, operation: str, params: Mapping[str, Any],
                       code: str, message: str, *, console: bool = False) -> None:
        """A call that failed before its handler ran (denied, throttled, invalid)."""
        try:
            record = self.new_record(caller, operation, params, console=console)
        except Exception:
            log.exception("could not record the failed call %s", caller.request_id)
            return
        record.error_code, record.error_message = code, message
        self.trail.finish(record)
