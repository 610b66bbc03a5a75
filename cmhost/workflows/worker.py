"""The worker: claims due jobs under a lease, runs their steps, and records the outcome."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from cmhost.logs import job_fields
from cmhost.messages import caller_message
from cmhost.storage import repo
from cmhost.storage.db import Database
from cmhost.workflows.background import BackgroundLoop
from cmhost.workflows.clock import Clock
from cmhost.workflows.jobs import Job, JobHandler, Outcome

log = logging.getLogger("cmhost.worker")

MAX_ATTEMPTS = 5


class Ticker(Protocol):
    """Something time-driven besides jobs (the scheduler): fired from the worker loop."""

    def tick(self, now: float) -> int: ...

    def next_due(self, now: float) -> float | None: ...


@dataclass(frozen=True)
class StepRecord:
    """What one job step did, for those who watch the worker (metrics, logs)."""

    job: Job
    # next (the job goes on), done, failed (the step ended the job as failed), retry (the step
    # raised and runs again later), gave_up (it raised too often), lease_lost (another worker
    # holds the job now: nothing was recorded)
    outcome: str
    duration: float  # seconds the step ran, on the wall clock
    finished: str | None = None  # the job's end: "done" or "failed"; None while it goes on
    age: float | None = None  # a finished job's seconds since it was enqueued (service clock)
    error: str | None = None  # what a step that raised said


StepWatcher = Callable[[StepRecord], None]
_FINISHED = {"done": "done", "failed": "failed", "gave_up": "failed"}


class _LeaseLost(Exception):
    """Raised inside a transaction to roll it back: another worker owns the job now."""


class Worker(BackgroundLoop):
    thread_name = "cmhost-worker"

    def __init__(self, db: Database, clock: Clock, handlers: Mapping[str, JobHandler], *,
                 tickers: Sequence[Ticker] = (), lease_seconds: float = 300.0,
                 poll_seconds: float = 1.0, watchers: Sequence[StepWatcher] = ()) -> None:
        super().__init__()
        self.db = db
        # Told of every step once its outcome is recorded; quick, and must not raise (a
        # failing one is logged and skipped).
        self.watchers = list(watchers)
        self.tickers = list(tickers)
        self.clock = clock
        self.handlers = dict(handlers)
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._run_lock = threading.Lock()
        # Jobs claimed by this worker whose step could not finish because the database was
        # in an outage (its file read-only, its disk full, its server unreachable): their
        # leases are handed back as soon as it takes writes again, so they run at once
        # rather than after lease_seconds.
        self._stranded: list[Job] = []
        # Held by the background loop while it ticks and runs jobs, and by whoever drives the
        # worker by hand (the virtual clock's advance), so the two never interleave.
        self._exclusive = threading.Lock()

    # --- running ----------------------------------------------------------------------

    def run_due(self, max_jobs: int = 1000) -> int:
        """Run every job step that is due now; returns how many steps ran."""
        ran = 0
        with self._run_lock:
            self._release_stranded()
            while ran < max_jobs and self._run_next():
                ran += 1
        return ran

    def _run_next(self) -> bool:
        """Claim the first due job and run its step; False when no job is due."""
        now = self.clock.now()
        with self.db.statement() as conn:
            row = repo.claim_next_job(conn, owner=self.owner, now=now,
                                      lease_until=now + self.lease_seconds)
        if row is None:
            return False
        job = Job(id=row["id"], kind=row["kind"], server_id=row["server_id"],
                  payload=row["payload"] or {}, step=row["step"], attempts=row["attempts"])
        try:
            # Every line logged while the step runs names the job (JSON logs).
            with job_fields(job_id=job.id, job_kind=job.kind, server_id=job.server_id,
                            attempt=job.attempts, step=job.step):
                self._run_claimed(job, enqueued_at=float(row["created_at"]))
        except Exception:
            if self._database_out():
                self._stranded.append(job)
            raise
        return True

    def _database_out(self) -> bool:
        """Whether the database itself is in an outage: then a job cut short by it is not at
        fault. A full or read-only disk met elsewhere (the blob store, an engine) is the
        step's own failure: retried with backoff, counted, logged, failed at last."""
        return self.db.outage_active

    def _run_claimed(self, job: Job, enqueued_at: float) -> None:
        started = time.perf_counter()
        handler = self.handlers.get(job.kind)
        if handler is None:
            error = f"no handler for job kind {job.kind!r}"
            recorded = self._record_failure(job, error, final=True)
            self._tell(job, "failed" if recorded else "lease_lost", started, enqueued_at,
                       error)
            return
        try:
            outcome = handler.run(job)
        except Exception as exc:  # a step failed: retry, then give up cleanly
            if self.db.unavailable(exc) and self._database_out():
                raise  # not the step's failure: it runs again once the database is back
            detail = f"{type(exc).__name__}: {caller_message(exc)}"  # shown to callers
            log.warning("job %s (%s/%s) failed: %s\n%s", job.id, job.kind, job.step, detail,
                        traceback.format_exc())
            final = job.attempts >= MAX_ATTEMPTS
            recorded = self._record_failure(job, detail, final=final)
            self._tell(job, ("gave_up" if final else "retry") if recorded else "lease_lost",
                       started, enqueued_at, detail)
            return
        recorded = self._record(job, outcome)
        if not recorded:
            said = "lease_lost"
        elif outcome.next_step is not None:
            said = "next"
        else:
            said = "failed" if outcome.failed else "done"
        self._tell(job, said, started, enqueued_at, None)

    def _tell(self, job: Job, outcome: str, started: float, enqueued_at: float,
              error: str | None) -> None:
        if not self.watchers:
            return
        finished = _FINISHED.get(outcome)
        record = StepRecord(job=job, outcome=outcome, duration=time.perf_counter() - started,
                            finished=finished, error=error,
                            age=self.clock.now() - enqueued_at if finished else None)
        for watcher in self.watchers:
            try:
                watcher(record)
            except Exception:  # a watcher must not break the worker
                log.exception("a job step watcher failed for job %s", job.id)

    def _release_stranded(self) -> None:
        """Hand back the leases of stranded jobs, due now, without counting the attempt the
        outage cost them (a step is idempotent: it runs again whole)."""
        while self._stranded:
            job = self._stranded[0]
            now = self.clock.now()
            with self.db.write() as conn:
                repo.finish_job_step(conn, job.id, self.owner, now, run_at=now,
                                     attempts=max(0, job.attempts - 1))
            self._stranded.pop(0)

    def _record(self, job: Job, outcome: Outcome) -> bool:
        """Whether the outcome was recorded (False: the lease was lost)."""
        now = self.clock.now()
        try:
            self._record_in_transaction(job, outcome, now)
        except _LeaseLost:
            log.warning("job %s: lease lost before its outcome was recorded", job.id)
            return False
        return True

    def _record_in_transaction(self, job: Job, outcome: Outcome, now: float) -> None:
        with self.db.write() as conn:
            if outcome.next_step is None:
                values: dict[str, object] = {"status": "failed" if outcome.failed else "done"}
            else:
                values = {"step": outcome.next_step, "attempts": 0,
                          "run_at": now if outcome.run_at is None else outcome.run_at}
            if outcome.payload is not None:
                values["payload"] = dict(outcome.payload)
            if not repo.finish_job_step(conn, job.id, self.owner, now, **values):
                raise _LeaseLost()
            if outcome.effects is not None:
                outcome.effects(conn)

    def _record_failure(self, job: Job, error: str, *, final: bool) -> bool:
        """Whether the failure was recorded (False: the lease was lost)."""
        now = self.clock.now()
        try:
            self._record_failure_in_transaction(job, error, final, now)
        except _LeaseLost:
            log.warning("job %s: lease lost before its failure was recorded", job.id)
            return False
        return True

    def _record_failure_in_transaction(self, job: Job, error: str, final: bool, now: float
                                       ) -> None:
        with self.db.write() as conn:
            if not final:
                backoff = min(60.0, 2.0 ** job.attempts)
                repo.finish_job_step(conn, job.id, self.owner, now, last_error=error,
                                     run_at=now + backoff)
                return
            if not repo.finish_job_step(conn, job.id, self.owner, now, last_error=error,
                                        status="failed"):
                raise _LeaseLost()
            handler = self.handlers.get(job.kind)
            effects = handler.give_up(job, error) if handler is not None else None
            if effects is not None:
                effects(conn)

    # --- background thread ------------------------------------------------------------

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Keep the background loop still while the caller ticks and runs jobs itself."""
        with self._exclusive:
            yield

    def tick(self) -> int:
        """Let every ticker fire what is due now."""
        now = self.clock.now()
        return sum(ticker.tick(now) for ticker in self.tickers)

    def next_due(self) -> float | None:
        """The earliest time a job or a ticker has something to do."""
        now = self.clock.now()
        with self.db.read() as conn:
            times = [repo.next_job_time(conn)]
        times += [ticker.next_due(now) for ticker in self.tickers]
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def start(self) -> None:
        if self.db.is_sqlite:
            # Only one process works a SQLite database: leases left by a crashed run are ours.
            with self.db.write() as conn:
                repo.release_all_leases(conn)
        self._start_thread()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self._exclusive:
                    self.tick()
                    self.run_due()
                due = self.next_due()
            except Exception as exc:  # keep the worker alive through database hiccups
                if not self.db.unavailable(exc):  # the database logs its own outages, once
                    log.exception("worker loop error")
                due = None
            wait = self.poll_seconds
            if due is not None:
                wait = max(0.0, min(wait, due - self.clock.now()))
            self._sleep(wait)
