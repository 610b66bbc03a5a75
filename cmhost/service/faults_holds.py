"""server_status faults: a server held in a status (UNHEALTHY, CONNECTION_LOST, ...) until a
time on cmhost's clock, then put back where it was.

A hold is a row (fault_holds) written with the change of status and its event, so it
outlives a restart and every process sees it. While it lasts, the engine's health checks
report the held status (drivers are wrapped by `held_drivers`), so the health monitor leaves
the server as it is instead of finding it HEALTHY at its next check. An operation that takes
the server meanwhile (RestoreServer from UNHEALTHY, DeleteServer from FAILED) ends the hold:
the server is then the operation's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import Connection, RowMapping

from cmhost.engines.base import EngineDriver, EngineMaterial, Health, ServerSpec
from cmhost.service import events, states
from cmhost.service.faults_spec import Fault
from cmhost.service.runtime import Drivers, Runtime
from cmhost.storage import faults as store
from cmhost.storage import repo

# Servers a hold may start from: settled and alive (an operation owns the others).
HOLDABLE = (states.HEALTHY, states.UNHEALTHY, states.CONNECTION_LOST, states.RUNNING)
# Held statuses that health checks report while the hold lasts (the monitor does not watch
# FAILED or TERMINATED servers).
_HEALTH = (states.UNHEALTHY, states.CONNECTION_LOST)


class _Undo(Exception):
    """Rolls back the transaction of one hold: the server changed status meanwhile."""


def status_event(status: str, reason: str | None) -> str:
    """The event of a change of status, worded as the health monitor words its own."""
    detail = f": {reason}" if reason else "."
    if status in _HEALTH or status == states.HEALTHY:
        return f"Health check: the server is {status}{detail}"
    return f"The server is {status}{detail}"


class StatusHolds:
    def __init__(self, rt: Runtime, draw: Callable[[], float]) -> None:
        self.rt = rt
        self.draw = draw
        # (fault id, server id) the fault's probability passed over: drawn once each.
        self._declined: set[tuple[str, str]] = set()

    def begin(self, fault: Fault, now: float) -> int:
        """Hold the servers the fault covers (settled, alive, held by no fault now, never
        by this one), each taking one of its count; returns how many it held."""
        if fault.kind != "server_status" or not fault.armed(now):
            return 0
        with self.rt.db.read() as conn:
            rows = store.holdable_servers(conn, fault.id, HOLDABLE, fault.account)
        held = 0
        for row in rows:
            if not fault.covers(row["account"], row["name"]) \
                    or (fault.id, row["id"]) in self._declined:
                continue
            if fault.probability < 1.0 and self.draw() >= fault.probability:
                self._declined.add((fault.id, row["id"]))
                continue
            try:
                with self.rt.db.write() as conn:
                    if not store.consume_fault(conn, fault.id, now):
                        return held  # used up, expired or cleared meanwhile
                    self._hold(conn, fault, row, now)
            except _Undo:
                continue
            held += 1
        return held

    def _hold(self, conn: Connection, fault: Fault, row: RowMapping, now: float) -> None:
        status = str(fault.settings["status"])
        duration = float(fault.settings["duration"])
        reason = str(fault.settings.get("status_reason") or
                     f"{status} for {duration:g} s ({fault.id}, armed through "
                     "/_cmhost/faults).")
        if store.active_hold(conn, row["id"]) is not None or not repo.transition_server(
                conn, row["id"], [row["status"]], status=status, status_reason=reason,
                updated_at=now):
            raise _Undo  # held by another fault, or changed, since it was read
        store.insert_hold(conn, fault_id=fault.id, server_id=row["id"], status=status,
                          reason=reason, previous_status=row["status"],
                          previous_reason=row["status_reason"], started_at=now,
                          until=now + duration)
        events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                      message=status_event(status, reason))

    def end(self, conn: Connection, hold: RowMapping, now: float) -> bool:
        """End the hold: the server goes back where it was (if it is still in the held
        status); True if the server changed."""
        if not store.end_hold(conn, hold["fault_id"], hold["server_id"]):
            return False  # ended elsewhere
        row = repo.get_server_by_id(conn, hold["server_id"])
        if row is None or not repo.transition_server(
                conn, row["id"], [hold["status"]], status=hold["previous_status"],
                status_reason=hold["previous_reason"], updated_at=now):
            return False
        events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                      message=status_event(hold["previous_status"], hold["previous_reason"]))
        return True

    def end_holds(self, conn: Connection, fault_ids: Sequence[str] | None, now: float) -> int:
        """End the holds of these faults (None: of every fault) at once."""
        return sum(self.end(conn, hold, now) for hold in store.active_holds(conn, fault_ids))

    def end_due(self, now: float) -> int:
        """End the holds whose time is up, and those whose server an operation took over
        (or that was deleted)."""
        changed = 0
        with self.rt.db.read() as conn:
            due = [h for h in store.active_holds(conn) if h["until"] <= now]
            taken = store.holds_taken_over(conn)
        for hold in due:
            with self.rt.db.write() as conn:
                changed += self.end(conn, hold, now)
        if taken:
            with self.rt.db.write() as conn:
                for hold in taken:
                    store.end_hold(conn, hold["fault_id"], hold["server_id"])
        return changed

    def next_end(self) -> float | None:
        with self.rt.db.read() as conn:
            return store.next_hold_end(conn)

    def held_health(self, server_id: str) -> Health | None:
        """What the engine's health check says while a hold lasts (None: no hold)."""
        with self.rt.db.read() as conn:
            hold = store.active_hold(conn, server_id)
            if hold is None or hold["status"] not in _HEALTH:
                return None
            row = repo.get_server_by_id(conn, server_id)
        if row is None or row["status"] != hold["status"]:
            return None  # an operation has the server now: its own checks are real
        return Health(hold["status"], hold["reason"])


class _HeldHealthDriver:
    """A driver whose health checks report the status a fault holds a server in; all else
    is the driver's own."""

    def __init__(self, driver: EngineDriver, holds: StatusHolds) -> None:
        self._driver = driver
        self._holds = holds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._driver, name)

    def check_health(self, spec: ServerSpec, material: EngineMaterial) -> Health:
        held = self._holds.held_health(spec.server_id)
        return held if held is not None else self._driver.check_health(spec, material)


def held_drivers(drivers: Drivers, holds: StatusHolds) -> Drivers:
    """`drivers`, each wrapped so that its health checks see the holds."""
    wrapped: dict[int, EngineDriver] = {}

    def wrap(driver: EngineDriver) -> EngineDriver:
        if id(driver) not in wrapped:
            wrapped[id(driver)] = cast(EngineDriver, _HeldHealthDriver(driver, holds))
        return wrapped[id(driver)]
    return Drivers(by_family={f: wrap(d) for f, d in drivers.by_family.items()},
                   by_name={k: wrap(d) for k, d in drivers.by_name.items()})
