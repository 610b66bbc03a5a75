"""The worker: due jobs run step by step, failures retry then give up, leases protect jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from cmhost.storage import repo
from cmhost.storage.db import Database
from cmhost.workflows.clock import VirtualClock
from cmhost.workflows.jobs import Effects, Enqueuer, Job, Outcome, finish, goto
from cmhost.workflows.worker import MAX_ATTEMPTS, Worker
from tests.support import fresh_database_url


@pytest.fixture()
def db(tmp_path: Path) -> Database:
    database = Database(fresh_database_url(tmp_path))  # SQLite, or PostgreSQL in CI's 2nd pass
    database.upgrade()
    return database


class Steps:
    """start -> later (at +60 s) -> done, recording each step and writing meta effects."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.fail_times = 0
        self.gave_up: list[str] = []

    def run(self, job: Job) -> Outcome:
        self.ran.append(job.step)
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("boom")
        if job.step == "start":
            return goto("later", at=float(job.payload["t0"]) + 60)

        def effects(conn: Connection) -> None:
            repo.set_meta(conn, f"done-{job.id}", "yes")
        return finish(effects)

    def give_up(self, job: Job, error: str) -> Effects | None:
        self.gave_up.append(error)

        def effects(conn: Connection) -> None:
            repo.set_meta(conn, f"gave-up-{job.id}", error)
        return effects


def _enqueue(db: Database, clock: VirtualClock) -> int:
    with db.write() as conn:
        return Enqueuer().enqueue(conn, kind="steps", server_id=None, now=clock.now(),
                                  payload={"t0": clock.now()})


def _meta(db: Database, key: str) -> Any:
    with db.read() as conn:
        return repo.get_meta(conn, key)


def test_steps_run_when_due(db: Database) -> None:
    clock = VirtualClock()
    steps = Steps()
    worker = Worker(db, clock, {"steps": steps})
    job_id = _enqueue(db, clock)
    assert worker.run_due() == 1
    assert steps.ran == ["start"]
    assert worker.run_due() == 0  # "later" is 60 s away
    clock.advance_to(clock.now() + 61)
    assert worker.run_due() == 1
    assert steps.ran == ["start", "later"]
    assert _meta(db, f"done-{job_id}") == "yes"
    with db.read() as conn:
        assert repo.get_job(conn, job_id)["status"] == "done"  # type: ignore[index]


def test_failures_retry_with_backoff_then_give_up(db: Database) -> None:
    clock = VirtualClock()
    steps = Steps()
    steps.fail_times = 100
    worker = Worker(db, clock, {"steps": steps})
    job_id = _enqueue(db, clock)
    for _ in range(MAX_ATTEMPTS):
        worker.run_due()
        clock.advance_to(clock.now() + 120)
    assert len(steps.ran) == MAX_ATTEMPTS
    assert steps.gave_up and "boom" in steps.gave_up[0]
    assert "boom" in _meta(db, f"gave-up-{job_id}")
    with db.read() as conn:
        assert repo.get_job(conn, job_id)["status"] == "failed"  # type: ignore[index]


def test_a_leased_job_is_not_run_twice_and_is_resumed_after_the_lease(db: Database) -> None:
    clock = VirtualClock()
    _enqueue(db, clock)
    # Another worker claimed it and died: the lease keeps this worker away until it expires.
    with db.write() as conn:
        assert repo.claim_next_job(conn, owner="dead", now=clock.now(),
                              lease_until=clock.now() + 300) is not None
    steps = Steps()
    worker = Worker(db, clock, {"steps": steps})
    assert worker.run_due() == 0
    clock.advance_to(clock.now() + 301)
    assert worker.run_due() == 2 and steps.ran == ["start", "later"]  # both are due by now


def test_a_dead_workers_lease_is_when_the_job_is_next_due(db: Database) -> None:
    """The virtual clock's advance steps through next_due: a job a dead worker leased is due
    when the lease ends (not at its run_at, which has passed), so an advance runs it then and
    its later steps at their own times, not once at the end."""
    clock = VirtualClock()
    _enqueue(db, clock)
    t0 = clock.now()
    with db.write() as conn:
        assert repo.claim_next_job(conn, owner="dead", now=t0, lease_until=t0 + 300)
    steps = Steps()
    worker = Worker(db, clock, {"steps": steps})
    assert worker.next_due() == pytest.approx(t0 + 300)
    clock.advance_to(t0 + 300)
    assert worker.run_due() == 2 and steps.ran == ["start", "later"]  # a lease ends at its time
    assert worker.next_due() is None


def test_a_restarted_sqlite_worker_takes_back_its_leases(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'only-sqlite.db'}")  # the rule is SQLite's own
    db.upgrade()
    clock = VirtualClock()
    _enqueue(db, clock)
    with db.write() as conn:
        repo.claim_next_job(conn, owner="crashed", now=clock.now(),
                       lease_until=clock.now() + 300)
    steps = Steps()
    worker = Worker(db, clock, {"steps": steps}, poll_seconds=0.05)
    worker.start()  # SQLite: only one process works the database, so leases are released
    try:
        import time

        deadline = time.monotonic() + 10
        while not steps.ran and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
    assert steps.ran[:1] == ["start"]


def test_outcome_is_not_recorded_when_the_lease_was_lost(db: Database) -> None:
    clock = VirtualClock()
    job_id = _enqueue(db, clock)

    class Thief(Steps):
        def run(self, job: Job) -> Outcome:
            with db.write() as conn:  # the lease expires and another worker takes the job
                repo.finish_job_step(conn, job.id, worker.owner, clock.now())
                repo.claim_next_job(conn, owner="other", now=clock.now(),
                               lease_until=clock.now() + 300)
            return finish(lambda conn: repo.set_meta(conn, "stolen-effects", "ran"))

    worker = Worker(db, clock, {"steps": Thief()})
    worker.run_due()
    assert _meta(db, "stolen-effects") is None
    with db.read() as conn:
        row = repo.get_job(conn, job_id)
    assert row is not None and row["status"] == "pending" and row["lease_owner"] == "other"


def test_a_full_disk_outside_the_database_is_the_steps_failure(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """ENOSPC from the blob store or an engine (the database is fine) is retried with backoff,
    counted, logged, and the job fails at last: not a database outage that strands the job
    and runs it again every second, silently, forever."""
    import errno

    clock = VirtualClock()

    class FullDisk(Steps):
        def run(self, job: Job) -> Outcome:
            self.ran.append(job.step)
            raise OSError(errno.ENOSPC, "No space left on device")

    steps = FullDisk()
    worker = Worker(db, clock, {"steps": steps})
    job_id = _enqueue(db, clock)
    with caplog.at_level("WARNING", logger="cmhost.worker"):
        for _ in range(MAX_ATTEMPTS + 3):
            worker.run_due()
            clock.advance_to(clock.now() + 120)
    assert len(steps.ran) == MAX_ATTEMPTS
    assert steps.gave_up and "No space left on device" in steps.gave_up[0]
    assert not db.outage_active
    with db.read() as conn:
        assert repo.get_job(conn, job_id)["status"] == "failed"  # type: ignore[index]
    assert sum("No space left on device" in r.getMessage() for r in caplog.records) \
        == MAX_ATTEMPTS
