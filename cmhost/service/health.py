"""Health monitoring: settled servers are checked every few seconds; changes write events.

Engine crashes are seen at once, not on the next checks: the supervisors of the drivers leave
a notice for each engine process they restarted, which the monitor drains on every worker
tick into an event with the exit status and, on a settled server, the status UNHEALTHY. A
restarted engine is then checked every second until it answers (HEALTHY, with an event); it
stays UNHEALTHY, not CONNECTION_LOST, while it comes up. The supervisors run in the process
that starts the engines: the worker (`cmhost worker`, or `serve` without --no-worker), where
this ticker runs too; an API-only process starts none and so has no notices."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from cmhost.engines.base import EngineError, EngineEvent
from cmhost.engines.supervisor import RestartNotice, Supervisor
from cmhost.service import events, states
from cmhost.service.records import server_material, server_spec
from cmhost.service.runtime import Runtime
from cmhost.storage import repo

log = logging.getLogger("cmhost.health")

WATCHED = (states.HEALTHY, states.UNHEALTHY, states.CONNECTION_LOST, states.RUNNING)
# An engine must be unreachable on this many checks in a row to be CONNECTION_LOST.
LOST_AFTER = 2
# Where a restart notice may set the status: settled states the monitor owns. In the others an
# operation owns the status (BACKING_UP, RESTORING, MODIFYING, DELETING...): the event is
# written, the status left to the operation.
MARKABLE = (states.HEALTHY, states.UNHEALTHY, states.CONNECTION_LOST)
# A restarted engine stays UNHEALTHY (not CONNECTION_LOST) while it does not answer, this long
# at most: puppetserver's JVM takes one to two minutes on a busy host.
RESTART_GRACE = 600.0
# How often a restarted engine is checked until it answers, whatever the interval.
RESTART_RECHECK = 1.0


class HealthWatch(Protocol):
    """Told of each health check and each engine restart (metrics). Quick, never raises."""

    def health_checked(self, engine: str, driver: str, result: str) -> None:
        """`result`: the status the driver reported, or "error" when the check raised."""

    def engine_restarted(self, engine: str, driver: str, process: str) -> None:
        """`process`: "engine", or the part of a process beside it (`<id>/<part>`)."""


class HealthMonitor:
    """A worker ticker. It runs on real time (engines are real processes), so fast-forwarding
    the virtual clock does not multiply health checks; it never asks the worker to wake."""

    def __init__(self, rt: Runtime, interval: float, watch: HealthWatch | None = None) -> None:
        self.rt = rt
        self.interval = interval
        self.watch = watch
        self._next = 0.0
        self._resumed: set[str] = set()
        self._unreachable: dict[str, int] = {}
        # server id -> time.monotonic() of its engine's restart, until it answers again
        self._restarted: dict[str, float] = {}
        self._recheck_at = 0.0

    def next_due(self, now: float) -> float | None:
        return None

    def tick(self, now: float) -> int:
        changed = self._take_restart_notices() + self._take_engine_events()
        if self._restarted and time.monotonic() >= self._recheck_at:
            self._recheck_at = time.monotonic() + RESTART_RECHECK
            changed += self._check_restarted()
        if time.monotonic() < self._next:
            return changed
        self._next = time.monotonic() + self.interval
        with self.rt.db.read() as conn:
            rows = [r for r in repo.all_servers(conn)
                    if r["status"] in WATCHED and r["id"] not in self._restarted]
        for row in rows:
            try:
                changed += self._check(row)
            except Exception as exc:
                if not self.rt.db.unavailable(exc):  # an outage is logged once, by the database
                    log.exception("health check of server %s failed", row["name"])
        return changed

    def _supervisors(self) -> list[tuple[str, str, Supervisor]]:
        """(engine family, driver name, its supervisor) of the drivers that have one."""
        found: dict[int, tuple[str, str, Supervisor]] = {}
        for (family, name), driver in self.rt.drivers.by_name.items():
            sup = getattr(driver, "supervisor", None)  # the real engines' drivers have one
            if isinstance(sup, Supervisor):
                found.setdefault(id(sup), (family, name, sup))
        return list(found.values())

    def _take_restart_notices(self) -> int:
        changed = 0
        for family, driver, sup in self._supervisors():
            for notice in sup.take_notices():
                if self.watch is not None:
                    _, _, part = notice.key.partition("/")
                    self.watch.engine_restarted(family, driver, part or "engine")
                try:
                    changed += self._record_restart(notice)
                except Exception as exc:
                    if not self.rt.db.unavailable(exc):
                        log.exception("recording the restart of %s failed", notice.name)
        return changed

    def _take_engine_events(self) -> int:
        """What the engines did on their own (drivers with `take_events`), as events."""
        drivers = {id(d): d for d in self.rt.drivers.by_name.values()}.values()
        taken: list[EngineEvent] = []
        for driver in drivers:
            take = getattr(driver, "take_events", None)
            if callable(take):
                taken.extend(take())
        for event in taken:
            try:
                with self.rt.db.write() as conn:
                    row = repo.get_server_by_id(conn, event.server_id)
                    if row is not None:  # else deleted meanwhile
                        events.record(conn, server_id=row["id"], server_name=row["name"],
                                      at=self.rt.clock.now(), message=event.message)
            except Exception as exc:
                if not self.rt.db.unavailable(exc):
                    log.exception("recording an event of server %s failed", event.server_id)
        return len(taken)

    def _record_restart(self, notice: RestartNotice) -> int:
        """The restart as an event; a settled server UNHEALTHY until its engine answers.

        A server's supervised processes are keyed by its id (its engine) or by
        `<id>/<part>` (processes beside the engine, such as its Code Manager or PuppetDB)."""
        now = self.rt.clock.now()
        with self.rt.db.write() as conn:
            row = repo.get_server_by_id(conn, notice.key.split("/", 1)[0])
            if row is None:
                return 0  # deleted meanwhile
            reason = f"{notice.message} It does not answer yet."
            events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                          message=notice.message)
            marked = row["status"] in MARKABLE and repo.transition_server(
                conn, row["id"], [row["status"]], status=states.UNHEALTHY,
                status_reason=reason, updated_at=now)
            if marked and row["status"] != states.UNHEALTHY:  # as every change of status
                events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                              message=f"Health check: the server is UNHEALTHY: {reason}")
        log.warning("server %s: %s", row["name"], notice.message)
        if marked:
            self._restarted[row["id"]] = time.monotonic()
            self._unreachable.pop(row["id"], None)
            self._recheck_at = 0.0
        return 1

    def _check_restarted(self) -> int:
        with self.rt.db.read() as conn:
            rows = {r["id"]: r for r in repo.get_servers_by_ids(conn, list(self._restarted))}
        changed = 0
        for server_id in list(self._restarted):
            row = rows.get(server_id)
            if row is None or row["status"] not in MARKABLE:
                self._restarted.pop(server_id, None)  # gone, or an operation owns it now
                continue
            try:
                changed += self._check(row)
            except Exception as exc:
                if not self.rt.db.unavailable(exc):
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
        try:
            health = driver.check_health(spec, material)
        except Exception:
            if self.watch is not None:
                self.watch.health_checked(spec.family, row["driver"], "error")
            raise
        if self.watch is not None:
            self.watch.health_checked(spec.family, row["driver"], health.status)
        status = health.status
        restarted_at = self._restarted.get(row["id"])
        if restarted_at is not None:
            coming_up = time.monotonic() - restarted_at < RESTART_GRACE
            if status == states.HEALTHY or not coming_up:
                self._restarted.pop(row["id"], None)
            elif status == states.CONNECTION_LOST:
                return 0  # still starting: UNHEALTHY with the restart as its reason
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
