"""The console's ASGI app: routes /console/... and /servers/<ServerName>/dashboard/..., keeps
the sessions and the CSRF check in one place, and renders pages with Jinja2."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from cmhost.api.errors import RequestEntityTooLarge
from cmhost.api.protocol import ClientGone, OperationHooks, Receive, Scope, Send
from cmhost.console.guard import SignInGuard
from cmhost.console.http import Request, Response, read_request, redirect
from cmhost.console.operations import Identity, OperationFailed, Operations
from cmhost.service.keys import KeyDirectory
from cmhost.service.runtime import Runtime
from cmhost.service.sessions import CONSOLE, Session, SessionStore

log = logging.getLogger("cmhost.console")

HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}
# The regions of OpsWorks CM, offered in the header.
REGIONS = ("us-east-1", "us-east-2", "us-west-1", "us-west-2", "ap-northeast-1",
           "ap-southeast-1", "ap-southeast-2", "eu-central-1", "eu-west-1")
CONSOLE_COOKIE = "cmhost_console"
PRESIGN_COOKIE = "cmhost_presign"  # before sign-in: what the sign-in form's CSRF token binds to
DASHBOARD_COOKIE = "cmhost_dashboard"
DASHBOARD_PATH = re.compile(r"/servers/([^/]+)/dashboard(/.*)?")


def when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return dt.datetime.fromtimestamp(float(epoch), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class Page:
    """A request that reached a handler, with its session and identity when signed in."""

    request: Request
    session_id: str | None = None
    session: Session | None = None
    who: Identity | None = None
    match: re.Match[str] | None = None

    def arg(self, index: int) -> str:
        assert self.match is not None
        return self.match.group(index)


Handler = Callable[["Console", Page], Awaitable[Response]]


class Console:
    """Everything the pages use: the operations, the sessions, the templates."""

    def __init__(self, runtime: Runtime, ops: Operations, keys: KeyDirectory) -> None:
        self.rt = runtime
        self.ops = ops
        self.keys = keys
        self.sessions = SessionStore(runtime.db, runtime.box)
        self.guard = SignInGuard()
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(default=True),
                                     trim_blocks=True, lstrip_blocks=True)
        self.templates.filters["when"] = when
        self.templates.globals["regions"] = REGIONS

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A blocking call (the database, scrypt) off the event loop."""
        return await self.ops.run_service(fn, *args)

    def csrf(self, page: Page) -> str:
        secret = page.session_id or "pre:" + page.request.cookies.get(PRESIGN_COOKIE, "")
        return self.sessions.csrf_token(secret)

    def render(self, page: Page, template: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("me", page.who)
        context.setdefault("session", page.session)
        context["csrf"] = self.csrf(page)
        context["path"] = page.request.path
        body = self.templates.get_template(template).render(**context)
        return Response(status, body.encode())

    def error_page(self, page: Page, exc: OperationFailed) -> Response:
        status = exc.status if exc.code != "ResourceNotFoundException" else 404
        return self.render(page, "error.html", status=status, error=exc)

    def presign(self, page: Page, response: Response, path: str) -> None:
        """Give a browser without one the cookie a sign-in form's CSRF token is bound to."""
        if not page.request.cookies.get(PRESIGN_COOKIE):
            value = secrets.token_urlsafe(24)
            page.request.cookies[PRESIGN_COOKIE] = value
            response.set_cookie(PRESIGN_COOKIE, value, path=path, secure=page.request.tls)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    signed_in: bool = True  # else: open to everyone (sign-in pages, static files)


def route(method: str, pattern: str, handler: Handler, *, signed_in: bool = True) -> Route:
    return Route(method, re.compile(pattern), handler, signed_in)


class ConsoleApp:
    """Serves the console and the dashboards on the API's port."""

    def __init__(self, runtime: Runtime, handlers: Any, keys: KeyDirectory, executor: Executor,
                 hooks: OperationHooks) -> None:
        from cmhost.console import account_pages, dashboard_pages, server_pages

        ops = Operations(handlers, hooks, executor, runtime.db.unavailable)
        self.console = Console(runtime, ops, keys)
        self.routes: list[Route] = [
            route("GET", r"/console/static/([a-z0-9_-]+\.[a-z]+)", _static, signed_in=False),
            *account_pages.ROUTES, *server_pages.ROUTES]
        self.dashboard_routes: list[Route] = dashboard_pages.ROUTES

    @staticmethod
    def serves(path: str) -> bool:
        return (path == "/console" or path.startswith("/console/")
                or DASHBOARD_PATH.fullmatch(path) is not None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            request = await read_request(scope, receive)
        except ClientGone:
            return
        except RequestEntityTooLarge as exc:
            await Response(413, exc.message.encode(), content_type="text/plain").send(send)
            return
        try:
            response = await self._answer(request)
        except OperationFailed as exc:  # the database, for instance, is unavailable
            response = self.console.error_page(Page(request), exc)
        except Exception:
            log.exception("internal failure in console page %s", request.path)
            response = self.console.error_page(Page(request), OperationFailed(
                "InternalFailure", "The page could not be made because of an unknown error.",
                500))
        await response.send(send)

    async def _answer(self, request: Request) -> Response:
        if request.path == "/console":
            return redirect("/console/")
        dashboard = DASHBOARD_PATH.fullmatch(request.path)
        routes = self.dashboard_routes if dashboard else self.routes
        for candidate in routes:
            match = candidate.pattern.fullmatch(request.path)
            if match is None:
                continue
            if candidate.method != request.method:
                continue
            page = Page(request, match=match)
            if request.method == "POST" and not self._csrf_ok(
                    page, DASHBOARD_COOKIE if dashboard else CONSOLE_COOKIE,
                    before_sign_in=not candidate.signed_in):
                return Response(403, b"The form's CSRF token is missing or wrong: reload the "
                                b"page and send the form again.", content_type="text/plain")
            if candidate.signed_in and dashboard is None:
                signed_in = await self._signed_in(page)
                if not signed_in:
                    return self._to_sign_in(request)
            return await candidate.handler(self.console, page)
        known = any(c.pattern.fullmatch(request.path) for c in routes)
        if known:
            return Response(405, b"Method not allowed.", content_type="text/plain")
        return self.console.render(Page(request), "not_found.html", status=404)

    def _csrf_ok(self, page: Page, cookie: str, *, before_sign_in: bool) -> bool:
        """Every form carries the token of its session (a sign-in form: of the pre-sign-in
        cookie); the token is a MAC of that secret, compared in constant time."""
        cookies = page.request.cookies
        secret = ("pre:" + cookies[PRESIGN_COOKIE] if before_sign_in and cookies.get(
            PRESIGN_COOKIE) else None if before_sign_in else cookies.get(cookie))
        return self.console.sessions.csrf_matches(secret, page.request.form.get("csrf"))

    async def _signed_in(self, page: Page) -> bool:
        """Find the console session; it ends when its key was deleted."""
        session_id = page.request.cookies.get(CONSOLE_COOKIE)
        if not session_id:
            return False
        console = self.console
        session = await console.db(console.sessions.get, session_id, CONSOLE)
        if session is None or session.access_key_id is None:
            return False
        key = await console.db(console.keys, session.access_key_id)
        if key is None or key.account != session.account:
            await console.db(console.sessions.end, session_id)
            return False
        page.session_id, page.session = session_id, session
        page.who = Identity(account=str(session.account), region=str(session.region),
                            principal_arn=str(session.principal_arn),
                            access_key_id=str(session.access_key_id),
                            source_ip=page.request.client,
                            user_agent=page.request.headers.get("user-agent", ""),
                            secure=page.request.tls)
        return True

    @staticmethod
    def _to_sign_in(request: Request) -> Response:
        if request.path.startswith("/console/api/"):
            return Response(401, b'{"error":"signed out"}', content_type="application/json")
        return redirect("/console/signin")


async def _static(console: Console, page: Page) -> Response:
    name = page.arg(1)
    path = STATIC / name
    kind = STATIC_TYPES.get(path.suffix)
    if kind is None or not path.is_file():
        return console.render(page, "not_found.html", status=404)
    body = await asyncio.to_thread(path.read_bytes)
    return Response(200, body, content_type=kind, cache="public, max-age=300")

