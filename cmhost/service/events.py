"""Server events: writing them at every step, and DescribeEvents (newest first, paged)."""

from __future__ import annotations

from sqlalchemy import Connection

from cmhost.service.artifacts import LogLinks
from cmhost.service.context import Caller
from cmhost.service.errors import ResourceNotFoundException
from cmhost.service.pagination import Pager, page_size
from cmhost.service.records import Event
from cmhost.storage import repo
from cmhost.storage.db import Database


def record(conn: Connection, *, server_id: str, server_name: str, at: float, message: str,
           log_key: str | None = None) -> None:
    """An event of the server; `log_key`: the blob key of the log of the step it tells of."""
    repo.insert_event(conn, server_id=server_id, server_name=server_name, created_at=at,
                      message=message, log_key=log_key)


def server_not_found(name: str) -> ResourceNotFoundException:
    return ResourceNotFoundException(f"A server with the name '{name}' does not exist.")


def describe_events(db: Database, pager: Pager, caller: Caller, *, server_name: str,
                    max_results: int | None, next_token: str | None,
                    links: LogLinks | None = None) -> tuple[list[Event], str | None]:
    """A page of a server's events, newest first. Two indexed reads on the raw read path:
    the server's id by name, then the page after the token's (created_at, id) cursor.

    An event with a log gets its LogUrl from `links`, made now (with the public URL of
    the moment, as a backup's S3LogUrl is); without `links`, no event has one."""
    limit = page_size(max_results)
    found = db.fetch(repo.SERVER_REVISION_BY_NAME, {
        "account": caller.account, "region": caller.region, "name": server_name})
    if not found:
        raise server_not_found(server_name)
    server_id = found[0][0]
    scope = f"DescribeEvents|{server_id}"
    if next_token is None:
        rows = db.fetch(repo.EVENTS_PAGE, {"server_id": server_id, "limit": limit + 1})
    else:
        cursor = pager.decode(next_token, scope)
        try:
            at, event_id = float(cursor[0]), int(cursor[1])
        except (IndexError, TypeError, ValueError):
            pager.decode("", scope)  # raises InvalidNextTokenException
            raise
        rows = db.fetch(repo.EVENTS_PAGE_BEFORE, {"server_id": server_id, "at": at,
                                                  "id": event_id, "limit": limit + 1})
    token = None
    if len(rows) > limit:
        rows = rows[:limit]
        token = pager.encode(scope, [rows[-1][2], rows[-1][0]])
    return [Event(server_name=name, created_at=created_at, message=message,
                  log_url=links.url(log_key) if links is not None and log_key else None)
            for _, name, created_at, message, log_key in rows], token
