"""Tags on servers and backups: TagResource, UntagResource, ListTagsForResource."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import Connection

from cmhost.service import states
from cmhost.service.context import Caller
from cmhost.service.errors import (
    InvalidNextTokenException,
    InvalidStateException,
    ResourceNotFoundException,
    ValidationException,
)
from cmhost.service.pagination import Pager, page_size
from cmhost.storage import repo
from cmhost.storage.db import Database
from cmhost.storage.repo import Row

MAX_TAGS = 50  # per resource, as the user guide states


def check_tag_keys(keys: Sequence[str]) -> None:
    for key in keys:
        if key.lower().startswith("aws:"):
            raise ValidationException(
                f"Tag key '{key}' is not allowed: the prefix 'aws:' is reserved.")


def tags_to_dict(tags: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Tags as a dict; leading and trailing white space is trimmed (as the SDK documents)."""
    trimmed = [(key.strip(), value.strip()) for key, value in tags]
    check_tag_keys([k for k, _ in trimmed])
    result: dict[str, str] = {}
    for key, value in trimmed:
        if not key:
            raise ValidationException("A tag key must not be empty or only white space.")
        if key in result:
            raise ValidationException(f"Tag key '{key}' is given more than once.")
        result[key] = value
    if len(result) > MAX_TAGS:
        raise ValidationException(f"A resource can have at most {MAX_TAGS} tags.")
    return result


def _resource(conn: Connection, caller: Caller, arn: str) -> Row:
    """The server or backup behind an ARN, if it is the caller's; else ResourceNotFound."""
    not_found = ResourceNotFoundException(f"The resource '{arn}' does not exist.")
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "opsworks-cm":
        raise not_found
    if parts[3] != caller.region or parts[4] != caller.account:
        raise not_found
    if parts[5].startswith("server/"):
        row = repo.get_server_by_arn(conn, arn)
    elif parts[5].startswith("backup/"):
        row = repo.get_backup_by_arn(conn, arn)
    else:
        row = None
    if row is None or row["account"] != caller.account or row["region"] != caller.region:
        raise not_found
    return row


def _check_taggable(row: Row, operation: str) -> None:
    # Servers follow the state table; a backup is refused while it is being deleted.
    if row["status"] == states.DELETING or (
            row["status"] in states.ALL and not states.allowed(operation, row["status"])):
        raise InvalidStateException(
            f"The resource '{row['arn']}' is being deleted; its tags cannot change.")


def tag_resource(db: Database, caller: Caller, arn: str, tags: Sequence[tuple[str, str]]) -> None:
    new = tags_to_dict(tags)
    with db.write() as conn:
        # Tag writes of an account are serialized (on PostgreSQL too): the 50-tag limit and
        # the replace-by-key below hold under concurrent calls.
        repo.lock_account(conn, caller.account, time.time())
        row = _resource(conn, caller, arn)
        _check_taggable(row, "TagResource")
        existing = {r["key"] for r in repo.list_tags(conn, arn)}
        if len(existing | set(new)) > MAX_TAGS:
            raise ValidationException(
                f"A resource can have at most {MAX_TAGS} tags; this request would leave "
                f"{len(existing | set(new))}.")
        repo.put_tags(conn, arn, new)


def untag_resource(db: Database, caller: Caller, arn: str, keys: Sequence[str]) -> None:
    with db.write() as conn:
        repo.lock_account(conn, caller.account, time.time())
        row = _resource(conn, caller, arn)
        _check_taggable(row, "UntagResource")
        repo.delete_tags(conn, arn, [key.strip() for key in keys])


def list_tags(db: Database, pager: Pager, caller: Caller, arn: str, *,
              max_results: int | None, next_token: str | None
              ) -> tuple[list[tuple[str, str]], str | None]:
    limit = page_size(max_results)
    scope = f"ListTagsForResource|{arn}"
    after = None
    with db.read() as conn:
        _resource(conn, caller, arn)  # first: another account's ARN is not found, whatever
        if next_token is not None:
            try:
                cursor = pager.decode(next_token, scope)
            except InvalidNextTokenException as exc:
                # ListTagsForResource declares no InvalidNextTokenException.
                raise ValidationException(exc.message) from None
            after = str(cursor[0]) if cursor else None
        rows = repo.list_tags(conn, arn, after_key=after, limit=limit + 1)
    token = None
    if len(rows) > limit:
        rows = rows[:limit]
        token = pager.encode(scope, [rows[-1]["key"]])
    return [(r["key"], r["value"]) for r in rows], token
