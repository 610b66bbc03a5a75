"""A server's own dashboard at /servers/<ServerName>/dashboard/: sign-in as `admin` with the
server's admin password, then the engine's nodes and objects."""

from __future__ import annotations

import asyncio
from typing import Any

from cmhost.console.app import DASHBOARD_COOKIE, PRESIGN_COOKIE, Console, Page, route
from cmhost.console.http import Response, redirect
from cmhost.service import dashboard
from cmhost.service.sessions import DASHBOARD

NAME = r"([A-Za-z][A-Za-z0-9-]{0,39})"
FAILURE_DELAY = 0.25


def _path(name: str) -> str:
    return f"/servers/{name}/dashboard"


async def _current(console: Console, page: Page) -> dashboard.DashboardServer | None:
    """The server this browser's dashboard session opens, if it is still open."""
    session_id = page.request.cookies.get(DASHBOARD_COOKIE)
    if not session_id:
        return None
    session = await console.db(console.sessions.get, session_id, DASHBOARD)
    if session is None or not session.server_id or not session.credential_check:
        return None
    server = await console.db(dashboard.dashboard_server, console.rt, session.server_id,
                              session.credential_check)
    if server is None or server.name != page.arg(1):
        if server is None:  # the password changed or the server went: the session ends
            await console.db(console.sessions.end, session_id)
        return None
    page.session_id = session_id
    return server


def _sign_in_page(console: Console, page: Page, status: int, error: str) -> Response:
    cookies = Response(status, b"")
    console.presign(page, cookies, _path(page.arg(1)))
    rendered = console.render(page, "dashboard_signin.html", status=status, error=error,
                              server_name=page.arg(1),
                              server_hint=page.request.query.get("server", "")
                              or page.request.form.get("server"))
    rendered.headers += cookies.headers
    return rendered


async def home(console: Console, page: Page) -> Response:
    server = await _current(console, page)
    if server is None:
        return _sign_in_page(console, page, 200, "")
    view = await console.db(dashboard.engine_view, console.rt, server)
    return console.render(page, "dashboard.html", server=server, view=view,
                          base=_path(server.name))


async def sign_in(console: Console, page: Page) -> Response:
    form = page.request.form
    name = page.arg(1)
    names = (("address", page.request.client), ("dashboard", name))
    wait = console.guard.wait(*names)
    if wait > 0:
        return _sign_in_page(console, page, 429, "Too many failed sign-ins: try again in "
                                                 f"{int(wait) + 1} seconds.")
    hint = form.get("server") or None
    server = await console.db(lambda: dashboard.admin_sign_in(
        console.rt, name, form.get("user"), form.get("password"), server_id=hint))
    if server is None:
        console.guard.failed(*names)
        await asyncio.sleep(FAILURE_DELAY)
        return _sign_in_page(console, page, 401, "The user name or password is not right.")
    session_id = await console.db(lambda: console.sessions.start(
        kind=DASHBOARD, server_id=server.id, check=server.check))
    response = redirect(_path(name) + "/")
    response.set_cookie(DASHBOARD_COOKIE, session_id, path=_path(name), secure=page.request.tls)
    response.clear_cookie(PRESIGN_COOKIE, path=_path(name), secure=page.request.tls)
    return response


async def sign_out(console: Console, page: Page) -> Response:
    session_id = page.request.cookies.get(DASHBOARD_COOKIE)
    if session_id:
        await console.db(console.sessions.end, session_id)
    response = redirect(_path(page.arg(1)) + "/")
    response.clear_cookie(DASHBOARD_COOKIE, path=_path(page.arg(1)), secure=page.request.tls)
    return response


async def to_home(console: Console, page: Page) -> Response:
    return redirect(_path(page.arg(1)) + "/")


ROUTES: list[Any] = [
    route("GET", rf"/servers/{NAME}/dashboard", to_home, signed_in=False),
    route("GET", rf"/servers/{NAME}/dashboard/", home, signed_in=False),
    route("POST", rf"/servers/{NAME}/dashboard/signin", sign_in, signed_in=False),
    route("POST", rf"/servers/{NAME}/dashboard/signout", sign_out),
]
