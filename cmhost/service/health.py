"""Health monitoring: settled servers are checked every few seconds; changes write events."""

from __future__ import annotations

import logging
import time

from cmhost.engines.base import EngineError
from cmhost.service import events, states
from cmhost.service.records import server_material, server_spec
from cmhost.service.runtime import Runtime
from cmhost.storage import repo

log = logging.getLogger("cmhost.health")

WATCHED = (states.HEALTHY, states.UNHEALTHY, states.CONNECTION_LOST, states.RUNNING)
# An engine must be unreachable on this many checks in a row to be CONNECTION_LOST.
LOST_AFTER = 2


class HealthMonitor:
    """A worker ticker. It runs on real time (engines are real processes), so fast-forwarding
    the virtual clock does not multiply health checks; it never asks the worker to wake."""

    def __init__(self, rt: Runtime, interval: float) -> None:
        self.rt = rt
        self.interval = interval
        self._next = 0.0
        self._resumed: set[str] = set()
        self._unreachable: dict[str, int] = {}

    def next_due(self, now: float) -> float | None:
        return None

    def tick(self, now: float) -> int:
        if time.monotonic() < self._next:
            return 0
        self._next = time.monotonic() + self.interval
        with self.rt.db.read() as conn:
            rows = [r for r in repo.all_servers(conn) if r["status"] in WATCHED]
        changed = 0
        for row in rows:
            try:
                changed += self._check(row)
            except Exception as exc:
                if not self.rt.db.unavailable(exc):  # an outage is logged once, by the database
                    log.exception("health check of server %s failed", row["name"])
        return changed

    def _check(self, row: repo.Row) -> int:
        spec = server_spec(row, self.rt.settings.resolved_public_url)
        driver = self.rt.drivers.for_server(spec.family, row["driver"])
        material = server_material(row, self.rt.box)
        if row["id"] not in self._resumed:
            try:
                driver.resume(spec, material)
            except EngineError as exc:
                log.warning("could not resume the engine of %s: %s", row["name"], exc)
            self._resumed.add(row["id"])
        health = driver.check_health(spec, material)
        status = health.status
        if status == states.CONNECTION_LOST:
            misses = self._unreachable.get(row["id"], 0) + 1
            self._unreachable[row["id"]] = misses
            if misses < LOST_AFTER and row["status"] != states.CONNECTION_LOST:
                return 0  # not lost yet: one missed check can be a restart in progress
        else:
            self._unreachable.pop(row["id"], None)
        if status == row["status"] and (health.reason or None) == row["status_reason"]:
            return 0
        now = self.rt.clock.now()
        with self.rt.db.write() as conn:
            if not repo.transition_server(conn, row["id"], [row["status"]], status=status,
                                          status_reason=health.reason or None, updated_at=now):
                return 0
            if status != row["status"]:
                detail = f": {health.reason}" if health.reason else "."
                events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                              message=f"Health check: the server is {status}{detail}")
        return 1
