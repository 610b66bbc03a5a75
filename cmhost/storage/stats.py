"""Counts over the whole database for the metrics scrape: servers, backups, the job queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select

from cmhost.storage.tables import backups, jobs, servers

# Built once, with bind parameters (see repo._BUILT: building a statement costs more than
# running it).
_SERVERS = (select(servers.c.engine, servers.c.driver, servers.c.status, func.count())
            .group_by(servers.c.engine, servers.c.driver, servers.c.status))
_BACKUPS = (select(backups.c.status, backups.c.backup_type, func.count(),
                   func.coalesce(func.sum(backups.c.artifact_size), 0))
            .group_by(backups.c.status, backups.c.backup_type))
_NOW: Any = bindparam("now")
# Due and waiting for a worker: what `repo.claim_next_job` could take now.
_WAITING = and_(jobs.c.run_at <= _NOW,
                or_(jobs.c.lease_until.is_(None), jobs.c.lease_until <= _NOW))
_JOBS = (select(jobs.c.kind, func.count(),
                func.count().filter(jobs.c.run_at <= _NOW),
                func.min(jobs.c.run_at).filter(_WAITING))
         .where(jobs.c.status == "pending").group_by(jobs.c.kind))


@dataclass(frozen=True)
class JobQueue:
    """The pending jobs of one kind."""

    pending: int  # all of them, those scheduled for later included
    due: int  # due now: waiting for a worker, or being run
    oldest_waiting_since: float | None  # run_at of the oldest due job no worker holds


def server_counts(conn: Connection) -> dict[tuple[str, str, str], int]:
    """(engine, driver, status) -> servers."""
    return {(engine, driver, status): int(n)
            for engine, driver, status, n in conn.execute(_SERVERS).all()}


def backup_counts(conn: Connection) -> dict[tuple[str, str], tuple[int, int]]:
    """(status, backup type) -> (backups, bytes of their stored artifacts)."""
    return {(status, kind): (int(n), int(size))
            for status, kind, n, size in conn.execute(_BACKUPS).all()}


def job_queue(conn: Connection, now: float) -> dict[str, JobQueue]:
    """Kind -> its pending jobs at `now` (the service clock's time)."""
    return {kind: JobQueue(int(pending), int(due), None if oldest is None else float(oldest))
            for kind, pending, due, oldest in conn.execute(_JOBS, {"now": now}).all()}
