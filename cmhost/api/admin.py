"""cmhost's own endpoints under /_cmhost/: health, the clock, faults, keys and backup logs.

Who may do what. On a loopback bind everything answers everyone (only this machine reaches
it). On any other bind, what changes anything (moving the clock, arming or clearing faults,
issuing a key) answers only to the holder of the admin token (`Authorization: Bearer
<--admin-token>`), and health tells only its status unless the token is given; a wrong token
is refused everywhere. Listing the faults needs the token too (they say which accounts and
servers someone is testing). Reading the clock stays open, and a backup log answers to the
signature its S3LogUrl carries.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any
from urllib.parse import parse_qs, unquote

from cmhost.api.errors import RequestEntityTooLarge
from cmhost.api.protocol import (
    ClientGone,
    Receive,
    Scope,
    Send,
    new_request_id,
    read_body,
    send_json,
)
from cmhost.api.scrape import bearer_token, token_matches
from cmhost.service.errors import ServiceError, ValidationException
from cmhost.service.faults import Faults
from cmhost.service.keys import IssuedKey
from cmhost.workflows.clock import Clock

JSON = b"application/json"
FAULTS = "/_cmhost/faults"
MAX_ADMIN_BODY = 64 * 1024
_ACCOUNT = re.compile(r"[0-9]{12}")
_USER = re.compile(r"[A-Za-z0-9+=,.@_-]{1,64}")
# Issues an access key: (account, user name) -> the key.
IssueKey = Callable[[str, str], IssuedKey]
_STATUS = {"ResourceNotFoundException": 404, "MethodNotAllowed": 405}
# An admin tool's endpoint: (scope, receive) -> (HTTP status, JSON answer).
Endpoint = Callable[[Scope, Receive], Awaitable[tuple[int, dict[str, Any]]]]


class AdminApp:
    def __init__(self, clock: Clock, advance: Callable[[float, bool], None],
                 health: Callable[[], dict[str, Any]], executor: Executor,
                 read_log: Callable[[str, str], bytes | None], *, loopback: bool = True,
                 admin_token: str | None = None) -> None:
        self.read_log = read_log
        self.loopback = loopback
        self.admin_token = admin_token
        self.clock = clock
        self.advance = advance
        self.health = health
        self.executor = executor
        self.faults: Faults | None = None
        self.issue_key: IssueKey | None = None

    def attach(self, faults: Faults, issue_key: IssueKey) -> None:
        """Serve /_cmhost/faults with `faults`, and /_cmhost/keys with `issue_key`."""
        self.faults = faults
        self.issue_key = issue_key

    def _how_to_authorise(self) -> str:
        if self.admin_token is None:
            return ("this cmhost has no admin token: start it with --admin-token "
                    "(CMHOST_ADMIN_TOKEN) and send Authorization: Bearer <token>, or listen "
                    "on 127.0.0.1")
        return "send Authorization: Bearer <the token cmhost was started with (--admin-token)>"

    def _clock_state(self) -> dict[str, Any]:
        return {"now": round(self.clock.now(), 3), "mode": self.clock.mode}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        path, method = scope["path"], scope["method"]

        async def reply(status: int, payload: dict[str, Any]) -> None:
            await send_json(send, status, payload, request_id, content_type=JSON)

        async def error(status: int, code: str, message: str) -> None:
            await send_json(send, status, {"__type": code, "message": message}, request_id,
                            code, content_type=JSON)

        loop = asyncio.get_running_loop()
        privileged = self.loopback
        if not privileged:
            token = bearer_token(scope)
            if token is not None:
                if not token_matches(token, self.admin_token):
                    await error(403, "AccessDeniedException",
                                f"The admin token is not valid; {self._how_to_authorise()}.")
                    return
                privileged = True
        if path == "/_cmhost/health" and method == "GET":
            state = await loop.run_in_executor(self.executor, self.health)
            status = 200 if state.get("status") == "ok" else 503
            # Versions, counts and uptime help whoever probes a public address, not a
            # load balancer: they are for the admin.
            await reply(status, state if privileged else {"status": state.get("status")})
            return
        if path == "/_cmhost/clock" and method == "GET":
            await reply(200, self._clock_state())
            return
        if path == "/_cmhost/clock" and method == "POST":
            if not privileged:
                await error(403, "AccessDeniedException",
                            "Moving the clock of a cmhost that listens beyond loopback needs "
                            f"the admin token; {self._how_to_authorise()}.")
                return
            if self.clock.mode != "virtual":
                await error(400, "InvalidClockMode",
                            "The clock is real; start cmhost with --clock virtual to advance it.")
                return
            try:
                raw = await read_body(receive, 64 * 1024)
            except ClientGone:
                return
            except RequestEntityTooLarge as exc:
                await error(exc.status, exc.code, exc.message)
                return
            try:
                body = json.loads(raw or b"{}")
                seconds = body["advance"]
                run = body.get("run", True)
                if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
                        or not 0 <= seconds <= 10 * 365 * 86400 or not isinstance(run, bool):
                    raise ValueError
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                await error(400, "ValidationException",
                            'Expected a JSON body {"advance": <seconds, 0 to 10 years>} '
                            '(optionally "run": false to only move the clock).')
                return
            await loop.run_in_executor(self.executor, self.advance, float(seconds), run)
            await reply(200, self._clock_state())
            return
        tool = self._tool(path, method)
        if tool is not None:
            if not privileged:
                await error(403, "AccessDeniedException",
                            f"{tool[0]} on a cmhost that listens beyond loopback needs the "
                            f"admin token; {self._how_to_authorise()}.")
                return
            try:
                status, payload = await tool[1](scope, receive)
            except ClientGone:
                return
            except RequestEntityTooLarge as exc:
                await error(exc.status, exc.code, exc.message)
                return
            except ServiceError as exc:
                await error(_STATUS.get(exc.code, 400), exc.code, exc.message)
                return
            await reply(status, payload)
            return
        if path.startswith("/_cmhost/logs/") and method == "GET":
            key = unquote(path.removeprefix("/_cmhost/logs/"))
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            signature = (query.get("sig") or [""])[0]
            data = await loop.run_in_executor(self.executor, self.read_log, key, signature)
            if data is None:
                await error(404, "NotFound", "No such log, or the link is not valid.")
                return
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(data)).encode()),
                (b"x-amzn-requestid", request_id.encode())]})
            await send({"type": "http.response.body", "body": data})
            return
        await error(404, "NotFound", f"No cmhost endpoint {method} {path}.")

    def _tool(self, path: str, method: str) -> tuple[str, Endpoint] | None:
        """The admin tool at `path` (what it is, for a refusal, and its endpoint), if any."""
        if (path == FAULTS or path.startswith(FAULTS + "/")) and self.faults is not None:
            return "Faults", self._faults
        if path == "/_cmhost/keys" and method == "POST" and self.issue_key is not None:
            return "Issuing keys", self._keys
        return None

    async def _faults(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        """POST (arm), GET (list), DELETE (clear) /_cmhost/faults; DELETE .../<id>."""
        faults = self.faults
        assert faults is not None
        loop = asyncio.get_running_loop()
        path, method = scope["path"], scope["method"]
        fault_id = unquote(path.removeprefix(FAULTS + "/")) if path != FAULTS else None
        if fault_id is None and method == "POST":
            body = _json_object(await read_body(receive, MAX_ADMIN_BODY))
            if body is None:
                raise ValidationException(
                    "Expected a JSON object describing the fault, with at least \"kind\".")
            return 201, await loop.run_in_executor(self.executor, faults.arm, body)
        if fault_id is None and method == "GET":
            return 200, {"faults": await loop.run_in_executor(self.executor, faults.listing)}
        if fault_id is None and method == "DELETE":
            return 200, {"cleared": await loop.run_in_executor(self.executor, faults.clear)}
        if fault_id and method == "DELETE":
            await loop.run_in_executor(self.executor, faults.remove, fault_id)
            return 200, {"removed": fault_id}
        raise MethodNotAllowed(f"No cmhost endpoint {method} {path}: faults are POST (arm), "
                               f"GET (list) and DELETE (clear) {FAULTS}, and DELETE "
                               f"{FAULTS}/<id>.")

    async def _keys(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        """POST /_cmhost/keys: issue an access key, as `cmhost keys create` does."""
        issue_key = self.issue_key
        assert issue_key is not None
        body = _json_object(await read_body(receive, MAX_ADMIN_BODY)) or {}
        account, user = body.get("account"), body.get("user", "admin")
        if not isinstance(account, str) or not _ACCOUNT.fullmatch(account) \
                or not isinstance(user, str) or not _USER.fullmatch(user):
            raise ValidationException('Expected a JSON body {"account": "<12 digits>"} '
                                      '(optionally "user": "<IAM user name>", default '
                                      '"admin").')
        issued = await asyncio.get_running_loop().run_in_executor(
            self.executor, issue_key, account, user)
        return 201, {"AccessKeyId": issued.access_key_id,
                     "SecretAccessKey": issued.secret_access_key,
                     "Account": issued.account, "Principal": issued.principal_arn}


class MethodNotAllowed(ServiceError):
    code = "MethodNotAllowed"


def _json_object(raw: bytes) -> dict[str, Any] | None:
    """The body as a JSON object; None if it is not one."""
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None
