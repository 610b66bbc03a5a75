"""Durable jobs: what a job is, what a step returns, and how jobs are enqueued."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection

from cmhost.storage import repo

Effects = Callable[[Connection], None]


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    server_id: str | None
    payload: Mapping[str, Any]
    step: str
    attempts: int


@dataclass(frozen=True)
class Outcome:
    """What a step did. `effects` run in the same transaction that records the outcome.

    next_step None means the job is finished (status `done`, or `failed` with `failed=True`).
    """

    next_step: str | None = None
    run_at: float | None = None
    effects: Effects | None = None
    failed: bool = False
    payload: Mapping[str, Any] | None = None  # replaces the payload when given


def finish(effects: Effects | None = None) -> Outcome:
    return Outcome(effects=effects)


def goto(step: str, *, at: float | None = None, effects: Effects | None = None,
         payload: Mapping[str, Any] | None = None) -> Outcome:
    return Outcome(next_step=step, run_at=at, effects=effects, payload=payload)


class JobHandler(Protocol):
    def run(self, job: Job) -> Outcome:
        """Run the job's current step (idempotently) and say what comes next."""
        ...

    def give_up(self, job: Job, error: str) -> Effects | None:
        """Called when the job failed too often; returns effects that leave things clean."""
        ...


@dataclass
class Enqueuer:
    """Writes jobs in the caller's transaction, then wakes the worker after commit."""

    wake: Callable[[], None] = field(default=lambda: None)

    def enqueue(self, conn: Connection, *, kind: str, server_id: str | None, now: float,
                payload: Mapping[str, Any] | None = None, step: str = "start",
                run_at: float | None = None) -> int:
        return repo.insert_job(conn, kind=kind, server_id=server_id, payload=payload or {},
                               step=step, run_at=now if run_at is None else run_at, now=now)
