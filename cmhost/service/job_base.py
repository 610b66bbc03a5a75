"""What every server job shares: loading its server, its driver, and writing events."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from cmhost.engines.base import EngineDriver, EngineMaterial, Health, ServerSpec
from cmhost.service import events, states
from cmhost.service.records import server_material, server_spec
from cmhost.service.runtime import Runtime
from cmhost.storage import repo
from cmhost.storage.repo import Row
from cmhost.workflows.jobs import Effects, Job, Outcome, goto

# After provisioning, a restore or a maintenance, cmhost keeps asking the engine for its
# health (every 2, 4, 8, then 10 seconds) for this long before settling for what it says: a
# real JVM takes a minute or two to start.
READY_SECONDS = 300.0


def next_check(now: float, checks: int, deadline: float) -> float:
    """When to ask a starting engine for its health again, after `checks` checks."""
    return min(now + min(2.0 ** checks, 10.0), deadline)


def chain(first: Effects | None, then: Effects) -> Effects:
    """`first`, then `then`, in one transaction."""
    if first is None:
        return then

    def both(conn: Connection) -> None:
        first(conn)
        then(conn)
    return both


@dataclass(frozen=True)
class ReadyCheck:
    """One health check of a starting engine, in a job's "ready" step."""

    health: Health
    checks: int  # how many checks so far, this one included
    payload: dict[str, Any]  # the job's payload, counting this check and keeping its health
    next_at: float | None  # when to ask again; None: HEALTHY, or time is up (settle now)

    def again(self, effects: Effects | None = None) -> Outcome:
        """The next "ready" step (only while `next_at` is set)."""
        assert self.next_at is not None
        return goto("ready", at=self.next_at, payload=self.payload, effects=effects)


class ServerJob:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def server(self, job: Job) -> Row | None:
        if job.server_id is None:
            return None
        with self.rt.db.read() as conn:
            return repo.get_server_by_id(conn, job.server_id)

    def spec(self, row: Row) -> ServerSpec:
        return server_spec(row, self.rt.settings.resolved_public_url)

    def driver(self, row: Row) -> EngineDriver:
        return self.rt.drivers.for_server(self.spec(row).family, row["driver"])

    def material(self, row: Row) -> EngineMaterial:
        return server_material(row, self.rt.box)

    def event(self, row: Row, message: str, at: float) -> Effects:
        def effects(conn: Connection) -> None:
            events.record(conn, server_id=row["id"], server_name=row["name"], at=at,
                          message=message)
        return effects

    def material_values(self, row: Row, material: EngineMaterial
                        ) -> dict[str, Any]:
        """Server columns holding `material` (and the attributes DescribeServers shows)."""
        spec = self.spec(row)
        shown = self.driver(row).public_attributes(spec, material)
        return {"engine_public": dict(material.public),
                "engine_secrets_enc": self.rt.box.encrypt(json.dumps(material.secrets),
                                                          row["arn"]),
                "engine_attributes": [list(a) for a in shown]}

    def check_ready(self, job: Job, row: Row, now: float, deadline: float, *,
                    material: EngineMaterial | None = None) -> ReadyCheck:
        """Ask the engine for its health; when it is not HEALTHY and `deadline` is not past,
        the check says when to ask again (the count of checks lives in the payload)."""
        health = self.driver(row).check_health(self.spec(row), material or self.material(row))
        checks = int(job.payload.get("checks", 0)) + 1
        payload = {**job.payload, "checks": checks, "health": health.status}
        waiting = health.status != states.HEALTHY and now < deadline
        return ReadyCheck(health, checks, payload,
                          next_check(now, checks, deadline) if waiting else None)

    def give_up(self, job: Job, error: str) -> Effects | None:
        return None
