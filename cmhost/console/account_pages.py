"""The console's account pages: sign-in and out, the region, the servers (with their live
list and the create form), the account's backups and attributes."""

from __future__ import annotations

import asyncio
import base64
import hmac
from typing import Any

from cmhost.console.app import (
    CONSOLE_COOKIE,
    PRESIGN_COOKIE,
    REGIONS,
    Console,
    Page,
    route,
)
from cmhost.console.fields import (
    ENGINE_ATTRIBUTES,
    create_server_params,
    operation_fields,
    split_errors,
)
from cmhost.console.http import Response, json_response, redirect
from cmhost.console.operations import Identity, OperationFailed
from cmhost.service.engine_options import DEFAULT_VERSION, ENGINES, MODELS, VERSIONS
from cmhost.service.sessions import CONSOLE

# A failed sign-in answers this much later: a guess costs time even before the guard waits.
FAILURE_DELAY = 0.25
# Pages of DescribeServers / DescribeBackups the lists read (1000 items a page at most).
MAX_PAGES = 10
DONE = {
    "deleting": "The server is being deleted.",
    "backup-deleting": "The backup is being deleted.",
}


async def sign_in_form(console: Console, page: Page) -> Response:
    return _sign_in(console, page, 200, error="", access_key_id="", region=REGIONS[0])


def _sign_in(console: Console, page: Page, status: int, *, error: str, access_key_id: str,
             region: str) -> Response:
    response = Response(status, b"")
    console.presign(page, response, "/console")
    rendered = console.render(page, "signin.html", status=status, error=error,
                              access_key_id=access_key_id, region=region)
    rendered.headers += response.headers
    return rendered


async def sign_in(console: Console, page: Page) -> Response:
    form = page.request.form
    key_id = form.get("AccessKeyId").strip()
    secret = form.get("SecretAccessKey")
    region = form.get("region") or REGIONS[0]
    names = (("address", page.request.client), ("key", key_id))
    wait = console.guard.wait(*names)
    if wait > 0:
        return _sign_in(console, page, 429, access_key_id=key_id, region=region,
                        error=f"Too many failed sign-ins from this address or for this key: "
                              f"try again in {int(wait) + 1} seconds.")
    key = await console.db(console.keys, key_id) if key_id and len(key_id) <= 128 else None
    if key is None or region not in REGIONS or not hmac.compare_digest(
            key.secret_access_key.encode(), secret.encode("utf-8", "surrogateescape")):
        console.guard.failed(*names)
        await asyncio.sleep(FAILURE_DELAY)
        return _sign_in(console, page, 401, access_key_id=key_id, region=region,
                        error="The access key ID or the secret access key is not right.")
    console.guard.succeeded(("key", key_id))
    session_id = await console.db(lambda: console.sessions.start(
        kind=CONSOLE, account=key.account, region=region, principal_arn=key.principal_arn,
        access_key_id=key.access_key_id))
    response = redirect("/console/")
    response.set_cookie(CONSOLE_COOKIE, session_id, path="/console", secure=page.request.tls)
    response.clear_cookie(PRESIGN_COOKIE, path="/console", secure=page.request.tls)
    return response


async def sign_out(console: Console, page: Page) -> Response:
    if page.session_id:
        await console.db(console.sessions.end, page.session_id)
    response = redirect("/console/signin")
    response.clear_cookie(CONSOLE_COOKIE, path="/console", secure=page.request.tls)
    return response


async def choose_region(console: Console, page: Page) -> Response:
    region = page.request.form.get("region")
    if region in REGIONS and page.session_id:
        await console.db(console.sessions.set_region, page.session_id, region)
    return redirect("/console/")


def who(page: Page) -> Identity:
    assert page.who is not None  # routes that need a session have one
    return page.who


async def all_servers(console: Console, page: Page) -> list[dict[str, Any]]:
    servers: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    for _ in range(MAX_PAGES):
        out = await console.ops.call(who(page), "DescribeServers", params)
        servers += out.get("Servers", [])
        if not out.get("NextToken"):
            break
        params = {"NextToken": out["NextToken"]}
    return servers


async def servers_page(console: Console, page: Page) -> Response:
    servers = await all_servers(console, page)
    return console.render(page, "servers.html", servers=servers, nav="servers",
                          done=DONE.get(page.request.query.get("done", ""), ""))


def live_server(server: dict[str, Any]) -> dict[str, Any]:
    """What the pages' live updates need of a server."""
    return {"name": server["ServerName"], "status": server["Status"],
            "statusReason": server.get("StatusReason", ""), "engine": server["Engine"],
            "version": server["EngineVersion"], "endpoint": server["Endpoint"],
            "created": server["CreatedAt"], "maintenance": server.get("MaintenanceStatus", "")}


async def servers_json(console: Console, page: Page) -> Response:
    try:
        servers = await all_servers(console, page)
    except OperationFailed as exc:
        return json_response({"error": exc.code, "message": exc.message}, exc.status)
    return json_response({"servers": [live_server(s) for s in servers]})


async def server_json(console: Console, page: Page) -> Response:
    try:
        out = await console.ops.call(who(page), "DescribeServers", {"ServerName": page.arg(1)})
    except OperationFailed as exc:
        return json_response({"error": exc.code, "message": exc.message},
                             404 if exc.code == "ResourceNotFoundException" else exc.status)
    return json_response({"server": live_server(out["Servers"][0])})


async def _backups(console: Console, page: Page, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        out = await console.ops.call(who(page), "DescribeBackups", params)
        found += out.get("Backups", [])
        if not out.get("NextToken"):
            break
        params = {**params, "NextToken": out["NextToken"]}
    return sorted(found, key=lambda b: b.get("CreatedAt", 0), reverse=True)


def _create_defaults(identity: Identity) -> dict[str, Any]:
    return {
        "Engine": "Chef", "InstanceType": "m5.large", "AssociatePublicIpAddress": "on",
        "InstanceProfileArn": f"arn:aws:iam::{identity.account}:instance-profile/"
                              "aws-opsworks-cm-ec2-role",
        "ServiceRoleArn": f"arn:aws:iam::{identity.account}:role/aws-opsworks-cm-service-role",
    }


async def create_form(console: Console, page: Page) -> Response:
    values = _create_defaults(who(page))
    backup_id = page.request.query.get("backup")
    if backup_id:
        values["BackupId"] = backup_id
    return await _render_create(console, page, values, None, 200)


async def _render_create(console: Console, page: Page, values: dict[str, Any],
                         errors: Any, status: int) -> Response:
    try:
        backups = [b for b in await _backups(console, page) if b.get("Status") == "OK"]
    except OperationFailed:
        backups = []
    return console.render(page, "create.html", status=status, nav="servers", values=values,
                          errors=errors, backups=backups, engines=ENGINES, models=MODELS,
                          versions=VERSIONS, default_version=DEFAULT_VERSION,
                          engine_attributes=ENGINE_ATTRIBUTES)


async def create(console: Console, page: Page) -> Response:
    form = page.request.form
    params, sources = create_server_params(form)
    try:
        out = await console.ops.call(who(page), "CreateServer", params)
    except OperationFailed as exc:
        fields = operation_fields("CreateServer") + [
            f"EngineAttributes.{name}" for family in ENGINE_ATTRIBUTES.values()
            for name, _ in family]
        errors = split_errors(f"{exc.code}: {exc.message}" if exc.code != "ValidationException"
                              else exc.message, fields, {"EngineAttributes": sources}, params)
        values = {name: form.get(name) for name in form.fields}
        # Secrets typed into the form are not sent back into the page.
        for name in list(values):
            if "PASSWORD" in name or "PRIVATE_KEY" in name or name == "CustomPrivateKey":
                values.pop(name)
        return await _render_create(console, page, values, errors, 400)
    server = out["Server"]
    return one_time_page(console, page, server, "created")


def one_time_page(console: Console, page: Page, server: dict[str, Any], reason: str
                  ) -> Response:
    """The one page that shows credentials handed out once (CreateServer, a reset): in this
    response only. Nothing of them is kept: the downloads are data: URLs inside the page."""
    shown = [(a["Name"], a["Value"]) for a in server.get("EngineAttributes", [])]
    kits = [(name, value) for name, value in shown if name.endswith("_STARTER_KIT")]
    public = {"PUPPET_API_CA_CERT", "CHEF_MAJOR_UPGRADE_AVAILABLE"}
    credentials = [(n, v) for n, v in shown if n not in public and not n.endswith("_STARTER_KIT")]
    lines = [f"# {server['ServerName']} ({server['Engine']}): shown once by cmhost", ""]
    for name, value in credentials:
        lines += [f"{name}:", value.strip(), ""]
    credentials_file = base64.b64encode("\n".join(lines).encode()).decode()
    return console.render(page, "one_time.html", server=server, reason=reason, kits=kits,
                          credentials=credentials, credentials_file=credentials_file,
                          nav="servers")


async def backups_page(console: Console, page: Page) -> Response:
    backups = await _backups(console, page)
    return console.render(page, "backups.html", backups=backups, nav="backups",
                          done=DONE.get(page.request.query.get("done", ""), ""), error=None)


async def delete_backup(console: Console, page: Page) -> Response:
    back = page.request.form.get("next")
    if not back.startswith("/console/") or "//" in back:
        back = "/console/backups"
    try:
        await console.ops.call(who(page), "DeleteBackup", {"BackupId": page.arg(1)})
    except OperationFailed as exc:
        return console.error_page(page, exc)
    return redirect(back + ("&" if "?" in back else "?") + "done=backup-deleting")


async def account_page(console: Console, page: Page) -> Response:
    out = await console.ops.call(who(page), "DescribeAccountAttributes", {})
    return console.render(page, "account.html", attributes=out.get("Attributes", []),
                          nav="account")


ROUTES = [
    route("GET", r"/console/signin", sign_in_form, signed_in=False),
    route("POST", r"/console/signin", sign_in, signed_in=False),
    route("POST", r"/console/signout", sign_out),
    route("POST", r"/console/region", choose_region),
    route("GET", r"/console/", servers_page),
    route("GET", r"/console/api/servers", servers_json),
    route("GET", r"/console/api/servers/([A-Za-z][A-Za-z0-9-]{0,39})", server_json),
    route("GET", r"/console/servers/new", create_form),
    route("POST", r"/console/servers/new", create),
    route("GET", r"/console/backups", backups_page),
    route("POST", r"/console/backups/([^/]{1,79})/delete", delete_backup),
    route("GET", r"/console/account", account_page),
]
