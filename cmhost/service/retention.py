"""Retention: each server keeps its newest events, and the jobs table its recent finished
jobs, so neither grows forever."""

from __future__ import annotations

import time

from cmhost.service.runtime import Runtime
from cmhost.service.step_logs import owned_by_events
from cmhost.storage import repo
from cmhost.workflows.background import Every


class EventPruner:
    """A worker ticker: every `interval` seconds of real time, trims every server's events to
    the newest `keep` (`--events-per-server`), and deletes the step logs (step_logs.py) that
    no kept event links to any more. A backup's log is the backup's: it stays."""

    def __init__(self, rt: Runtime, keep: int, interval: float = 60.0) -> None:
        self.rt = rt
        self.keep = keep
        self.interval = interval
        self._next = 0.0

    def next_due(self, now: float) -> float | None:
        return None

    def tick(self, now: float) -> int:
        if time.monotonic() < self._next:
            return 0
        self._next = time.monotonic() + self.interval
        with self.rt.db.read() as conn:
            ids = repo.server_ids(conn)
        for server_id in ids:
            # A read finds the few servers over the limit; only those take the writer.
            with self.rt.db.read() as conn:
                boundary = repo.event_prune_boundary(conn, server_id, self.keep)
                orphaned = [] if boundary is None else [
                    key for key in repo.log_keys_only_through(conn, server_id, boundary)
                    if owned_by_events(key, server_id)]
            if boundary is not None:
                # Logs first, then their events: a crash in between leaves events whose
                # links answer 404 (they go on the next pass), never a log nothing links to.
                for key in orphaned:
                    self.rt.blobs.delete(key)
                with self.rt.db.write() as conn:
                    repo.delete_events_through(conn, server_id, boundary)
        return 0  # nothing for the worker to run because of it


# Finished jobs are kept this long (seconds of the job clock) after they finished ...
JOB_HISTORY_SECONDS = 7 * 86400.0
# ... and, however recent, no more than this many of them.
JOB_HISTORY_MAX = 1000
# A write transaction deletes at most this many jobs, so the writer is never held for long
# (the first pass over a database that kept every job since it was made has much to do).
_DELETE_BATCH = 500


class JobPruner:
    """A worker ticker: every `interval` seconds of the job clock, deletes the finished jobs
    past a bounded history.

    The bound. A finished (done or failed) job stays for `keep_seconds` after it finished
    (its last update, by the job clock), and only while it is among the `keep_max` newest
    finished jobs. The age keeps a week of history to look back at when something went
    wrong; the count caps a burst (1,000 CreateServer/DeleteServer cycles in an hour leave
    2,000 finished jobs). One count for the whole table, not one per server: servers come
    and go (every cycle is a new server), and the table is what must stay bounded.

    What it never deletes: a pending job, waiting or leased and running, however old (the
    queries touch only done and failed ones, and the delete checks again). Nothing reads a
    finished job: the worker claims pending jobs only, a step's outcome goes to the server,
    backup or node association rows (DescribeNodeAssociationStatus reads the latter, not
    the job), and a job's `last_error` is in the log as well.
    """

    def __init__(self, rt: Runtime, keep_seconds: float = JOB_HISTORY_SECONDS,
                 keep_max: int = JOB_HISTORY_MAX, interval: float = 600.0) -> None:
        self.rt = rt
        self.keep_seconds = keep_seconds
        self.keep_max = keep_max
        self.interval = interval
        self._every = Every(interval)

    def next_due(self, now: float) -> float | None:
        return None

    def tick(self, now: float) -> int:
        if not self._every.due(now):
            return 0
        while True:
            # A read finds what is past the bound; only then is the writer taken.
            with self.rt.db.read() as conn:
                ids = repo.finished_jobs_past(conn, finished_before=now - self.keep_seconds,
                                              keep_newest=self.keep_max, limit=_DELETE_BATCH)
            if not ids:
                break
            with self.rt.db.write() as conn:
                repo.delete_finished_jobs(conn, ids)
            if len(ids) < _DELETE_BATCH:
                break
        return 0  # nothing for the worker to run because of it
