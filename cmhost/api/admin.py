"""cmhost's own endpoints under /_cmhost/: health, the clock, and backup logs.

Who may do what. On a loopback bind everything answers everyone (only this machine reaches
it). On any other bind, what changes anything (moving the clock) answers only to the holder
of the admin token (`Authorization: Bearer <--admin-token>`), and health tells only its
status unless the token is given; a wrong token is refused everywhere. Reading the clock
stays open, and a backup log answers to the signature its S3LogUrl carries.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable
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
from cmhost.workflows.clock import Clock

JSON = b"application/json"


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

    def _token_given(self, scope: Scope) -> str | None:
        """The bearer token of the request, if it has one."""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").strip().partition(" ")
                if scheme.lower() == "bearer":
                    return token.strip()
        return None

    def _token_matches(self, token: str) -> bool:
        return self.admin_token is not None and hmac.compare_digest(
            token.encode("utf-8", "surrogateescape"),
            self.admin_token.encode("utf-8", "surrogateescape"))

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
            token = self._token_given(scope)
            if token is not None:
                if not self._token_matches(token):
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
