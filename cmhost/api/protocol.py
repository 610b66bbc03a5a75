"""The AWS JSON 1.1 protocol as an ASGI app: parse, authenticate, throttle, validate, dispatch."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from cmhost.api import errors
from cmhost.api.handlers import Handler, reads_only
from cmhost.api.model import SERVICE, Operation
from cmhost.api.serialize import RawJson
from cmhost.api.sigv4 import SignedRequest, SigV4Verifier
from cmhost.api.throttle import TokenBuckets
from cmhost.api.validate import format_violations, validate_input
from cmhost.service.access_guard import Guard
from cmhost.service.context import Caller
from cmhost.service.errors import ServiceError, ValidationException

log = logging.getLogger("cmhost.api")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# Runs a reads-only handler call on the event loop if it can answer without waiting on the
# database: (True, its result), or (False, None) and the call goes to a worker thread.
InlineReads = Callable[[Callable[[], Any]], tuple[bool, Any]]

MAX_BODY = 1024 * 1024  # 1 MiB
TARGET_PREFIX = SERVICE.metadata.target_prefix + "."
CONTENT_TYPE = b"application/x-amz-json-1.1"
ACCEPTED_CONTENT_TYPES = {"application/x-amz-json-1.1", "application/x-amz-json-1.0",
                          "application/json", ""}


@dataclass
class RequestRecord:
    """What one API request was, for those who watch requests (metrics, logs, audit)."""

    request_id: str
    started: float = field(default_factory=time.perf_counter)
    operation: str | None = None  # once the X-Amz-Target names a known operation
    account: str | None = None  # once the signature is verified
    region: str | None = None
    principal_arn: str | None = None
    target_name: str | None = None  # the operation the X-Amz-Target names, known or not
    caller: Caller | None = None  # once the signature is verified
    params: Mapping[str, Any] | None = None  # once the body is parsed
    status: int = 0  # the HTTP status answered (0: the client left first)
    error_code: str | None = None  # the error's code (`__type`), None for a success
    duration: float = 0.0  # seconds from the start to the answer
    error_message: str | None = None
    # Whether the audit trail has (or will have) its record: set by the API, which records
    # its own calls; a console call's record is the handler table's.
    audited: bool = False


# Runs after a request is authenticated, throttled and validated, before its handler: it may
# raise an ApiError or a ServiceError (which is then the answer) or wait (asyncio.sleep).
BeforeOperation = Callable[[Caller, str, Mapping[str, Any]], Awaitable[None]]


@dataclass
class OperationHooks:
    """Hooks around the operations: `before` (BeforeOperation, in order) and `after`, which see
    every request's record once it is answered; `after` hooks must be quick and never raise
    (a failing one is logged and skipped)."""

    before: list[BeforeOperation] = field(default_factory=list)
    after: list[Callable[[RequestRecord], None]] = field(default_factory=list)


# Request IDs in the UUID form AWS uses: a random per-process part and a counter, so each
# is unique without drawing 16 random bytes per request.
_ID_RANDOM = os.urandom(9).hex()
_ID_HEAD = f"{_ID_RANDOM[:8]}-{_ID_RANDOM[8:12]}-4{_ID_RANDOM[12:15]}-a{_ID_RANDOM[15:18]}-"
_ID_COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))


def new_request_id() -> str:
    return f"{_ID_HEAD}{next(_ID_COUNTER) & 0xFFFFFFFFFFFF:012x}"


_INTEGER = re.compile(r"-?[0-9]{1,20}")


def _unstorable_text(value: Any) -> bool:
    """Whether a string anywhere in a parsed JSON value holds an unpaired surrogate (not
    encodable as UTF-8) or a NUL character (which PostgreSQL text cannot hold)."""
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_unstorable_text(k) or _unstorable_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable_text(v) for v in value)
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class ClientGone(Exception):
    """The client went away before its request's body was complete: nothing is executed."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The request body; RequestEntityTooLarge as soon as it passes `limit` bytes, and
    ClientGone when the connection ends before the body does."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise errors.RequestEntityTooLarge(
                f"The request body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def send_json(send: Send, status: int, payload: Mapping[str, Any] | RawJson,
                    request_id: str, error_type: str | None = None,
                    content_type: bytes = CONTENT_TYPE) -> None:
    body = payload if isinstance(payload, RawJson) else json.dumps(
        payload, separators=(",", ":")).encode()
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
               (b"x-amzn-requestid", request_id.encode())]
    if error_type is not None:
        headers.append((b"x-amzn-errortype", error_type.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, code: str, message: str, request_id: str) -> None:
    await send_json(send, status, {"__type": code, "message": message}, request_id, code)


@dataclass(frozen=True)
class OtherService:
    """Another AWS service's operations answered on the same endpoint (CloudTrail's
    LookupEvents): its X-Amz-Target prefix, SigV4 verifier, handlers and input check."""

    target_prefix: str  # e.g. com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.
    verifier: SigV4Verifier
    handlers: Mapping[str, Handler]
    validate: Callable[[str, Mapping[str, Any]], None]


class AwsJsonApp:
    """Serves `POST /` for the OpsWorks CM operations (and those of `others`)."""

    def __init__(self, handlers: Mapping[str, Handler], verifier: SigV4Verifier,
                 throttle: TokenBuckets | None, executor: Executor, *,
                 inline_reads: InlineReads | None = None,
                 unavailable: Callable[[BaseException], bool] = lambda exc: False,
                 hooks: OperationHooks | None = None, guard: Guard | None = None,
                 others: tuple[OtherService, ...] = (),
                 key_used: Callable[[str], None] | None = None) -> None:
        self.inline_reads = inline_reads
        self.hooks = hooks or OperationHooks()
        # Whether a failure is the store's, for now (locked, unreachable): 503, to retry.
        self.unavailable = unavailable
        # Authorization (before throttling) and the audit record: the guard's. `handlers`
        # are the guard's wrapped ones then (service/access_guard.py).
        self.guard = guard
        self.handlers = dict(handlers)
        self.verifier = verifier
        self.throttle = throttle
        self.executor = executor
        self.others = others
        self.key_used = key_used

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = RequestRecord(request_id=new_request_id())
        try:
            await self._answer(scope, receive, send, record)
        finally:
            record.duration = time.perf_counter() - record.started
            for hook in self.hooks.after:
                try:
                    hook(record)
                except Exception:  # a watcher must not break the answer
                    log.exception("a request hook failed for request %s", record.request_id)

    async def _answer(self, scope: Scope, receive: Receive, send: Send,
                      record: RequestRecord) -> None:
        request_id = record.request_id

        async def fail(status: int, code: str, message: str) -> None:
            record.status, record.error_code, record.error_message = status, code, message
            self._audit_failure(record, code, message)
            await send_error(send, status, code, message, request_id)

        try:
            status, payload = await self._handle(scope, receive, record)
        except ClientGone:
            return  # nobody to answer
        except errors.ApiError as exc:
            await fail(exc.status, exc.code, exc.message)
            return
        except ServiceError as exc:
            await fail(400, exc.code, exc.message)
            return
        except Exception as exc:
            if self.unavailable(exc):
                # The database tells each episode once, when it starts and when it ends (see
                # storage/outage.py): a line per request would bury the log.
                log.debug("request %s: the database is unavailable: %s", request_id, exc)
                await fail(503, "ServiceUnavailable",
                           "The service is unavailable for the moment (its database is "
                           "busy, unreachable or cannot be written); retry the request.")
                return
            log.exception("internal failure in request %s", request_id)
            await fail(500, "InternalFailure",
                       "The request processing has failed because of an unknown error.")
            return
        record.status = status
        await send_json(send, status, payload, request_id)

    def _audit_failure(self, record: RequestRecord, code: str, message: str) -> None:
        """Record a call that failed before its handler ran (the handler table records the
        others); only a verified caller's: an unsigned or forged call is nobody's."""
        if self.guard is None or record.audited or record.account is None:
            return
        record.audited = True
        caller = record.caller or Caller(
            account=record.account, region=record.region or "us-east-1",
            principal_arn=record.principal_arn or "", request_id=record.request_id)
        name = record.operation or record.target_name or "UnknownOperation"
        self.guard.record_failure(caller, name, record.params or {}, code, message)

    def _service_of(self, target: str | None
                    ) -> tuple[str, SigV4Verifier, Mapping[str, Handler], OtherService | None]:
        for other in self.others:
            if target is not None and target.startswith(other.target_prefix):
                return other.target_prefix, other.verifier, other.handlers, other
        return TARGET_PREFIX, self.verifier, self.handlers, None

    async def _handle(self, scope: Scope, receive: Receive, record: RequestRecord
                      ) -> tuple[int, Mapping[str, Any] | RawJson]:
        request_id = record.request_id
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1"))
                   for k, v in scope["headers"]]
        header = dict(headers)
        length = header.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            raise errors.RequestEntityTooLarge(
                f"The request body is larger than the limit of {MAX_BODY} bytes.")
        body = await read_body(receive, MAX_BODY)
        if scope["method"] != "POST":
            raise errors.MethodNotAllowed(
                f"{scope['method']} is not supported; OpsWorks CM requests are POST /.")
        target = header.get("x-amz-target")
        prefix, verifier, handlers, other = self._service_of(target)
        name = target[len(prefix):] if target and target.startswith(prefix) else None
        identity = verifier.verify(SignedRequest(
            method=scope["method"], path=scope.get("raw_path", b"/").decode("latin-1")
            .split("?", 1)[0] or "/", query_string=scope.get("query_string", b"")
            .decode("latin-1"), headers=headers, body=body))
        record.account, record.region = identity.account, identity.region
        record.principal_arn = identity.principal_arn
        if self.key_used is not None:
            self.key_used(identity.access_key_id)
        operation = SERVICE.operations.get(name) if name and other is None else None
        handler = handlers.get(name) if name else None
        known = handler is not None and (operation is not None or other is not None)
        client = scope.get("client")
        caller = record.caller = Caller(
            account=identity.account, region=identity.region,
            principal_arn=identity.principal_arn, request_id=request_id,
            access_key_id=identity.access_key_id, source_ip=client[0] if client else "",
            user_agent=header.get("user-agent", ""),
            secure_transport=scope.get("scheme") == "https",
            authorized=name if known and name and self.guard is not None else "")
        if target:
            record.target_name = (name or target.rsplit(".", 1)[-1])[:128]
        if sum(1 for k, _ in headers if k == "x-amz-target") > 1:
            raise errors.InvalidAction(
                "The request has more than one X-Amz-Target header; name one operation.")
        if not target:
            raise errors.MissingAction(
                "The request has no X-Amz-Target header naming the operation "
                f"(expected {TARGET_PREFIX}<Operation>).")
        if not known or handler is None or name is None:
            raise errors.InvalidAction(f"The operation '{target}' is not valid for this service.")
        record.operation = name
        content_type = header.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type not in ACCEPTED_CONTENT_TYPES:
            raise errors.UnsupportedMediaType(
                f"Content-Type '{content_type}' is not supported; "
                "use application/x-amz-json-1.1.")
        params = self._parse(body)
        query_string = scope.get("query_string", b"")
        if not params and query_string and operation is not None:
            params = self._query_params(operation, query_string)
        record.params = params
        if self.guard is not None:
            # Before throttling: a denied call spends no tokens (and changes nothing).
            await self._authorize(caller, name, params)
        if self.throttle is not None and not self.throttle.allow((identity.account, name)):
            raise errors.ThrottlingException("Rate exceeded")
        if operation is not None:
            problems = validate_input(operation, params)
            if problems:
                raise ValidationException(format_violations(problems))
            for before in self.hooks.before:
                await before(caller, operation.name, params)
        elif other is not None:
            other.validate(name, params)
        record.audited = self.guard is not None  # from here on, the handler table records
        if self.inline_reads is not None and reads_only(handler):
            # A quick local read: a thread hop would cost more than the query itself.
            done, result = self.inline_reads(lambda: handler(caller, params))
            if done:
                return 200, result
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self.executor, handler, caller, params)
        return 200, result

    async def _authorize(self, caller: Caller, name: str, params: Mapping[str, Any]) -> None:
        guard = self.guard
        assert guard is not None
        if guard.access.root_caller(caller):
            return  # the account's root may do everything: nothing to look up
        if self.inline_reads is not None:
            done, _ = self.inline_reads(lambda: guard.check(caller, name, params))
            if done:
                return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, guard.check, caller, name, params)

    @staticmethod
    def _query_params(operation: Operation, query_string: bytes) -> dict[str, Any]:
        """Input from the query string, as a presigned URL carries it (top-level scalars)."""
        params: dict[str, Any] = {}
        for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            if name.startswith("X-Amz-") or name in ("Action", "Version"):
                continue
            member = operation.input.get_member(name)
            if member is None:
                continue
            if _unstorable_text(value):
                raise errors.SerializationException(
                    f"{name} holds a NUL character, which cannot be stored.")
            kind = member.shape.type
            if kind == "integer":
                params[name] = int(value) if _INTEGER.fullmatch(value) else value
            elif kind == "boolean":
                params[name] = {"true": True, "false": False}.get(value.lower(), value)
            elif kind == "string":
                params[name] = value
            else:
                raise errors.SerializationException(
                    f"{name} cannot be passed in the query string; send it in the JSON body.")
        return params

    @staticmethod
    def _parse(body: bytes) -> dict[str, Any]:
        if body == b"{}" or not body.strip():  # what SDKs send for an empty input
            return {}
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.SerializationException("The request body is not valid UTF-8.") from None
        try:
            params = json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            raise errors.SerializationException(
                "The request body is nested too deeply to be parsed.") from None
        except ValueError as exc:
            raise errors.SerializationException(
                f"The request body is not valid JSON: {exc}") from None
        if not isinstance(params, dict):
            raise errors.SerializationException(
                "The request body must be a JSON object (structure).")
        if b"\\u" in body and _unstorable_text(params):  # both come only as \\u escapes
            raise errors.SerializationException(
                "The request body holds a NUL character (\\u0000) or an unpaired UTF-16 "
                "surrogate (\\uD800-\\uDFFF) in a string; neither can be stored.")
        return params
