"""Backups: CreateBackup, DeleteBackup, DescribeBackups, automated backups and retention."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from cmhost import __version__
from cmhost.service import events, states
from cmhost.service.artifacts import log_url
from cmhost.service.context import Caller
from cmhost.service.errors import (
    InvalidStateException,
    LimitExceededException,
    ResourceNotFoundException,
)
from cmhost.service.pagination import Pager, page_size
from cmhost.service.records import Backup, Server
from cmhost.service.runtime import Runtime
from cmhost.service.tags import tags_to_dict
from cmhost.storage import repo
from cmhost.storage.repo import Row

MANUAL = "MANUAL"
AUTOMATED = "AUTOMATED"


def backup_not_found(backup_id: str) -> ResourceNotFoundException:
    return ResourceNotFoundException(f"A backup with the ID '{backup_id}' does not exist.")


def settings_of(server: Row) -> dict[str, Any]:
    """The server settings a backup keeps (shown by DescribeBackups, used to restore)."""
    return {
        "Engine": server["engine"], "EngineModel": server["engine_model"],
        "EngineVersion": server["engine_version"],
        "InstanceProfileArn": server["instance_profile_arn"],
        "InstanceType": server["instance_type"], "KeyPair": server["key_pair"],
        "PreferredBackupWindow": server["preferred_backup_window"],
        "PreferredMaintenanceWindow": server["preferred_maintenance_window"],
        "SecurityGroupIds": server["security_group_ids"],
        "ServiceRoleArn": server["service_role_arn"], "SubnetIds": server["subnet_ids"],
        "ToolsVersion": f"cmhost-{__version__}",
    }


def _backup_id(name: str, millis: int) -> str:
    """`<ServerName>-yyyyMMddHHmmssSSS` (UTC)."""
    moment = datetime.fromtimestamp(millis / 1000, UTC)
    return f"{name}-{moment:%Y%m%d%H%M%S}{millis % 1000:03d}"


def insert_backup(rt: Runtime, conn: Connection, server: Row, *,
                  backup_type: str, now: float, description: str | None = None,
                  user_arn: str | None = None, tags: Mapping[str, str] | None = None
                  ) -> dict[str, Any]:
    """A new IN_PROGRESS backup row of `server`, with the server's tags (and `tags`)."""
    millis = int(now * 1000)
    row: dict[str, Any] = {}
    while True:  # servers of one name in other accounts may take the same millisecond
        backup_id, created_at = _backup_id(server["name"], millis), millis / 1000
        if repo.get_backup_by_id(conn, backup_id) is None:
            row = _backup_row(server, backup_id, created_at, backup_type, description, user_arn)
            try:
                with conn.begin_nested():
                    repo.insert_backup(conn, row)
                break
            except IntegrityError:
                pass  # taken between the check and the insert (PostgreSQL): try the next one
        millis += 1
    copied = {r["key"]: r["value"] for r in repo.list_tags(conn, server["arn"])}
    copied.update(tags or {})
    repo.put_tags(conn, row["arn"], copied)
    return row


def _backup_row(server: Row, backup_id: str, created_at: float, backup_type: str,
                description: str | None, user_arn: str | None) -> dict[str, Any]:
    return {
        "id": backup_id, "account": server["account"], "region": server["region"],
        "arn": f"arn:aws:opsworks-cm:{server['region']}:{server['account']}:backup/{backup_id}",
        "server_id": server["id"], "server_name": server["name"], "backup_type": backup_type,
        "status": "IN_PROGRESS", "status_description": None, "description": description,
        "user_arn": user_arn, "settings": settings_of(server), "artifact_key": None,
        "artifact_sha256": None, "artifact_size": None, "created_at": created_at,
    }


def _backup_limit(rt: Runtime, account: Row | None) -> int:
    limit = account["backup_limit"] if account is not None else None
    return int(limit) if limit is not None else rt.settings.backup_limit


def create_backup(rt: Runtime, caller: Caller, *, server_name: str, description: str | None,
                  tags: Sequence[tuple[str, str]]) -> Backup:
    extra_tags = tags_to_dict(tags)
    now = rt.clock.now()
    with rt.db.write() as conn:
        server = repo.get_server(conn, caller.account, caller.region, server_name)
        if server is None:
            raise events.server_not_found(server_name)
        states.require("CreateBackup", server_name, server["status"])
        account = repo.lock_account(conn, caller.account, now)
        limit = _backup_limit(rt, account)
        if repo.count_manual_backups(conn, caller.account, caller.region) >= limit:
            raise LimitExceededException(
                f"You have reached the maximum number of manual backups ({limit}) for this "
                f"account in {caller.region}.")
        if not repo.transition_server(conn, server["id"], states.ALLOWED["CreateBackup"],
                                      status=states.BACKING_UP, updated_at=now):
            raise states.changed_meanwhile(server_name)
        row = insert_backup(rt, conn, server, backup_type=MANUAL, now=now,
                            description=description, user_arn=caller.principal_arn,
                            tags=extra_tags)
        events.record(conn, server_id=server["id"], server_name=server_name, at=now,
                      message=f"Backup {row['id']} started.")
        rt.enqueuer.enqueue(conn, kind="backup", server_id=server["id"], now=now,
                            payload={"backup_id": row["id"], "return_status": server["status"]})
    rt.wake_worker()
    return to_record(rt, row)


def start_automated_backup(rt: Runtime, conn: Connection, server: Row,
                           now: float) -> str | None:
    """The scheduled backup of a server (in the scheduler's transaction), if it can run."""
    if not states.allowed("CreateBackup", server["status"]):
        events.record(conn, server_id=server["id"], server_name=server["name"], at=now,
                      message=f"Automated backup skipped: the server is {server['status']}.")
        return None
    if not repo.transition_server(conn, server["id"], states.ALLOWED["CreateBackup"],
                                  status=states.BACKING_UP, updated_at=now):
        return None
    row = insert_backup(rt, conn, server, backup_type=AUTOMATED, now=now)
    events.record(conn, server_id=server["id"], server_name=server["name"], at=now,
                  message=f"Automated backup {row['id']} started.")
    rt.enqueuer.enqueue(conn, kind="backup", server_id=server["id"], now=now,
                        payload={"backup_id": row["id"], "return_status": server["status"]})
    return str(row["id"])


def mark_for_deletion(rt: Runtime, conn: Connection, backup: Row, now: float
                      ) -> None:
    """DELETING now; the job removes the artifact, the log, then the row."""
    repo.update_backup(conn, backup["id"], status="DELETING")
    rt.enqueuer.enqueue(conn, kind="delete_backup", server_id=None, now=now,
                        payload={"backup_id": backup["id"]})


def enforce_retention(rt: Runtime, conn: Connection, server: Row, now: float
                      ) -> list[str]:
    """Delete the oldest automated backups beyond BackupRetentionCount; returns their IDs."""
    kept = repo.automated_backups(conn, server["id"])
    excess = list(kept[int(server["backup_retention_count"]):])
    for backup in excess:
        mark_for_deletion(rt, conn, backup, now)
        events.record(conn, server_id=server["id"], server_name=server["name"], at=now,
                      message=f"Automated backup {backup['id']} deleted (retention "
                              f"{server['backup_retention_count']}).")
    return [b["id"] for b in excess]


def delete_backup(rt: Runtime, caller: Caller, *, backup_id: str) -> None:
    now = rt.clock.now()
    with rt.db.write() as conn:
        backup = repo.get_backup(conn, caller.account, caller.region, backup_id)
        if backup is None:
            raise backup_not_found(backup_id)
        if backup["status"] == "DELETING":
            raise InvalidStateException(f"The backup '{backup_id}' is already being deleted.")
        if backup["status"] == "IN_PROGRESS":
            raise InvalidStateException(
                f"The backup '{backup_id}' is still in progress and cannot be deleted yet.")
        mark_for_deletion(rt, conn, backup, now)
    rt.wake_worker()


def describe_backups(rt: Runtime, pager: Pager, caller: Caller, *, backup_id: str | None,
                     server_name: str | None, max_results: int | None,
                     next_token: str | None) -> tuple[list[Backup], str | None]:
    if backup_id is not None:
        with rt.db.read() as conn:
            row = repo.get_backup(conn, caller.account, caller.region, backup_id)
        if row is None or (server_name is not None and row["server_name"] != server_name):
            raise backup_not_found(backup_id)
        return [to_record(rt, row)], None
    scope = f"DescribeBackups|{caller.account}|{caller.region}|{server_name or ''}"
    before: tuple[float, str] | None = None
    if next_token is not None:
        cursor = pager.decode(next_token, scope)
        try:
            before = (float(cursor[0]), str(cursor[1]))
        except (IndexError, TypeError, ValueError):
            pager.decode("", scope)  # raises InvalidNextTokenException
    limit = page_size(max_results)
    with rt.db.read() as conn:
        rows = repo.list_backups(conn, caller.account, caller.region, server_name=server_name,
                                 before=before, limit=limit + 1)
        if (server_name is not None and not rows and before is None
                and repo.get_server(conn, caller.account, caller.region, server_name) is None):
            raise events.server_not_found(server_name)
    token = None
    if len(rows) > limit:
        rows = rows[:limit]
        token = pager.encode(scope, [rows[-1]["created_at"], rows[-1]["id"]])
    return [to_record(rt, r) for r in rows], token


def to_record(rt: Runtime, row: Row) -> Backup:
    from cmhost.service.artifacts import log_key

    url = log_url(rt.settings.resolved_public_url, rt.box, log_key(row))
    return Backup.from_row(row, url)


def server_of(rt: Runtime, server_id: str) -> Server | None:
    with rt.db.read() as conn:
        row = repo.get_server_by_id(conn, server_id)
    return Server.from_row(row) if row else None
