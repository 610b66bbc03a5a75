"""A server's pages in the console: overview, events, backups, nodes, settings, tags and
actions, each action one API operation."""

from __future__ import annotations

import base64
from typing import Any

from cmhost.console.account_pages import _backups, one_time_page, who
from cmhost.console.app import Console, Page, route
from cmhost.console.fields import (
    FieldErrors,
    operation_fields,
    parse_tags,
    split_errors,
    update_server_params,
    userdata_params,
)
from cmhost.console.http import Response, redirect, text_download
from cmhost.console.operations import OperationFailed
from cmhost.service import dashboard

NAME = r"([A-Za-z][A-Za-z0-9-]{0,39})"
TABS = ("overview", "events", "backups", "nodes", "settings", "tags", "actions")
EVENTS_PER_PAGE = 20
DONE = {
    "backup": "Backup started.",
    "restore": "Restore started.",
    "settings": "Settings saved.",
    "tagged": "Tags saved.",
    "untagged": "Tag removed.",
    "maintenance": "Maintenance started.",
    "backup-deleting": "The backup is being deleted.",
}


async def _server(console: Console, page: Page) -> dict[str, Any]:
    out = await console.ops.call(who(page), "DescribeServers", {"ServerName": page.arg(1)})
    server: dict[str, Any] = out["Servers"][0]
    return server


async def _tab_data(console: Console, page: Page, tab: str, server: dict[str, Any]
                    ) -> dict[str, Any]:
    name = server["ServerName"]
    if tab == "events":
        params: dict[str, Any] = {"ServerName": name, "MaxResults": EVENTS_PER_PAGE}
        if page.request.query.get("token"):
            params["NextToken"] = page.request.query["token"]
        out = await console.ops.call(who(page), "DescribeEvents", params)
        return {"events": out.get("ServerEvents", []), "next_token": out.get("NextToken"),
                "this_token": params.get("NextToken")}
    if tab == "backups":
        return {"backups": await _backups(console, page, ServerName=name)}
    if tab == "nodes":
        nodes, problem = await console.db(dashboard.server_nodes, console.rt,
                                          who(page).caller(), name)
        return {"nodes": nodes, "engine_problem": problem}
    if tab == "tags":
        out = await console.ops.call(who(page), "ListTagsForResource",
                                     {"ResourceArn": server["ServerArn"]})
        return {"tags": out.get("Tags", [])}
    if tab == "overview":
        downloads = {a["Name"]: base64.b64encode(a["Value"].encode()).decode()
                     for a in server.get("EngineAttributes", [])
                     if a["Value"].startswith("-----BEGIN")}
        return {"downloads": downloads}
    return {}


async def render_tab(console: Console, page: Page, tab: str, *, server: dict[str, Any] | None
                     = None, errors: FieldErrors | None = None, values: dict[str, Any] | None
                     = None, status: int = 200) -> Response:
    server = server or await _server(console, page)
    data = await _tab_data(console, page, tab, server)
    return console.render(page, "server.html", status=status, server=server, tab=tab,
                          tabs=TABS, nav="servers", errors=errors or FieldErrors(),
                          values=values or {}, **data,
                          done=DONE.get(page.request.query.get("done", ""), ""))


def _tab_view(tab: str) -> Any:
    async def view(console: Console, page: Page) -> Response:
        return await render_tab(console, page, tab)
    return view


async def _act(console: Console, page: Page, operation: str, params: dict[str, Any], *,
               tab: str, done: str, fields: list[str] | None = None) -> Response:
    """Run the action; back to its tab with `done`, or the tab again with the errors."""
    try:
        await console.ops.call(who(page), operation, params)
    except OperationFailed as exc:
        if exc.code == "ResourceNotFoundException" and operation != "DeleteBackup":
            return console.error_page(page, exc)
        message = exc.message if exc.code == "ValidationException" else \
            f"{exc.code}: {exc.message}"
        errors = split_errors(message, fields or operation_fields(operation), given=params)
        return await render_tab(console, page, tab, errors=errors, status=exc.status,
                                values={k: page.request.form.get(k)
                                        for k in page.request.form.fields})
    suffix = "" if tab == "overview" else tab
    return redirect(f"/console/servers/{page.arg(1)}/{suffix}?done={done}")


async def create_backup(console: Console, page: Page) -> Response:
    params: dict[str, Any] = {"ServerName": page.arg(1)}
    description = page.request.form.text("Description")
    if description is not None:
        params["Description"] = description
    return await _act(console, page, "CreateBackup", params, tab="backups", done="backup")


async def restore(console: Console, page: Page) -> Response:
    params = {"ServerName": page.arg(1), "BackupId": page.request.form.get("BackupId")}
    return await _act(console, page, "RestoreServer", params, tab="backups", done="restore")


async def delete_backup(console: Console, page: Page) -> Response:
    params = {"BackupId": page.request.form.get("BackupId")}
    return await _act(console, page, "DeleteBackup", params, tab="backups",
                      done="backup-deleting")


async def update_settings(console: Console, page: Page) -> Response:
    params = update_server_params(page.arg(1), page.request.form)
    return await _act(console, page, "UpdateServer", params, tab="settings", done="settings")


async def tag(console: Console, page: Page) -> Response:
    server = await _server(console, page)
    tags = parse_tags(page.request.form.get("Tags"))
    params = {"ResourceArn": server["ServerArn"], "Tags": tags}
    return await _act(console, page, "TagResource", params, tab="tags", done="tagged")


async def untag(console: Console, page: Page) -> Response:
    server = await _server(console, page)
    params = {"ResourceArn": server["ServerArn"], "TagKeys": [page.request.form.get("Key")]}
    return await _act(console, page, "UntagResource", params, tab="tags", done="untagged")


async def start_maintenance(console: Console, page: Page) -> Response:
    params: dict[str, Any] = {"ServerName": page.arg(1)}
    if page.request.form.checked("CHEF_MAJOR_UPGRADE"):
        params["EngineAttributes"] = [{"Name": "CHEF_MAJOR_UPGRADE", "Value": "true"}]
    return await _act(console, page, "StartMaintenance", params, tab="actions",
                      done="maintenance", fields=["ServerName", "EngineAttributes"])


async def reset_credential(console: Console, page: Page) -> Response:
    form = page.request.form
    params: dict[str, Any] = {"ServerName": page.arg(1), "AttributeName": form.get("AttributeName")}
    value = form.text("AttributeValue")
    if value is not None:
        params["AttributeValue"] = value
    try:
        out = await console.ops.call(who(page), "UpdateServerEngineAttributes", params)
    except OperationFailed as exc:
        errors = split_errors(exc.message if exc.code == "ValidationException"
                              else f"{exc.code}: {exc.message}",
                              operation_fields("UpdateServerEngineAttributes"))
        return await render_tab(console, page, "actions", errors=errors, status=exc.status)
    return one_time_page(console, page, out["Server"], "reset")


async def export_userdata(console: Console, page: Page) -> Response:
    params = userdata_params(page.arg(1), page.request.form)
    try:
        out = await console.ops.call(who(page), "ExportServerEngineAttribute", params)
    except OperationFailed as exc:
        errors = split_errors(exc.message if exc.code == "ValidationException"
                              else f"{exc.code}: {exc.message}",
                              ["RunList", "OrganizationName", "NodeEnvironment",
                               "NodeClientVersion", "InputAttributes"])
        return await render_tab(console, page, "actions", errors=errors, status=exc.status,
                                values={k: page.request.form.get(k)
                                        for k in page.request.form.fields})
    script = base64.b64decode(out["EngineAttribute"]["Value"])
    return text_download(script, f"{page.arg(1)}-userdata.sh", "text/x-shellscript")


async def delete_server(console: Console, page: Page) -> Response:
    name = page.arg(1)
    if page.request.form.get("confirm") != name:
        errors = FieldErrors(by_field={"confirm": [
            f"Type the server's name, {name}, to confirm that it is to be deleted."]})
        return await render_tab(console, page, "actions", errors=errors, status=400)
    try:
        await console.ops.call(who(page), "DeleteServer", {"ServerName": name})
    except OperationFailed as exc:
        errors = FieldErrors(by_field={"confirm": [f"{exc.code}: {exc.message}"]})
        if exc.code == "ResourceNotFoundException":
            return console.error_page(page, exc)
        return await render_tab(console, page, "actions", errors=errors, status=exc.status)
    return redirect("/console/?done=deleting")


def _base(name: str) -> str:
    return rf"/console/servers/{NAME}/{name}"


async def _with_slash(console: Console, page: Page) -> Response:
    return redirect(f"/console/servers/{page.arg(1)}/")


ROUTES = [
    route("GET", rf"/console/servers/{NAME}", _with_slash),
    route("GET", rf"/console/servers/{NAME}/", _tab_view("overview")),
    *[route("GET", _base(tab), _tab_view(tab)) for tab in TABS if tab != "overview"],
    route("POST", _base("backups"), create_backup),
    route("POST", _base("backups/delete"), delete_backup),
    route("POST", _base("restore"), restore),
    route("POST", _base("settings"), update_settings),
    route("POST", _base("tags"), tag),
    route("POST", _base("tags/delete"), untag),
    route("POST", _base("maintenance"), start_maintenance),
    route("POST", _base("credentials"), reset_credential),
    route("POST", _base("userdata"), export_userdata),
    route("POST", _base("delete"), delete_server),
]
