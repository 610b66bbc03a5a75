"""Server events: writing them at every step, and DescribeEvents (newest first, paged)."""

from __future__ import annotations

from sqlalchemy import Connection

from cmhost.service.context import Caller
from cmhost.service.errors import ResourceNotFoundException
from cmhost.service.pagination import Pager, page_size
from cmhost.service.records import Event
from cmhost.storage import repo
from cmhost.storage.db import Database


def record(conn: Connection, *, server_id: str, server_name: str, at: float, message: str,
           log_url: str | None = None) -> None:
    repo.insert_event(conn, server_id=server_id, server_name=server_name, created_at=at,
                      message=message, log_url=log_url)


def server_not_found(name: str) -> ResourceNotFoundException:
    return ResourceNotFoundException(f"A server with the name '{name}' does not exist.")


def describe_events(db: Database, pager: Pager, caller: Caller, *, server_name: str,
                    max_results: int | None, next_token: str | None
                    ) -> tuple[list[Event], str | None]:
    limit = page_size(max_results)
    with db.read() as conn:
        server = repo.get_server(conn, caller.account, caller.region, server_name)
        if server is None:
            raise server_not_found(server_name)
        scope = f"DescribeEvents|{server['id']}"
        before: tuple[float, int] | None = None
        if next_token is not None:
            cursor = pager.decode(next_token, scope)
            try:
                before = (float(cursor[0]), int(cursor[1]))
            except (IndexError, TypeError, ValueError):
                before = None
            if before is None:
                pager.decode("", scope)  # raises InvalidNextTokenException
        rows = repo.list_events(conn, server["id"], before=before, limit=limit + 1)
    token = None
    if len(rows) > limit:
        rows = rows[:limit]
        token = pager.encode(scope, [rows[-1]["created_at"], rows[-1]["id"]])
    return [Event(server_name=r["server_name"], created_at=r["created_at"],
                  message=r["message"], log_url=r["log_url"]) for r in rows], token
