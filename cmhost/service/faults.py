"""Fault injection: faults armed by whoever tests against cmhost (through /_cmhost/faults) make
jobs fail, hold servers in a status, and answer operations with an error or late.

A fault is armed by kind (fail_job, server_status, error, latency), narrowed by account,
server name (a glob) and operation or job, and fires a number of times (`count`, or until it
expires) each with a probability. Faults are rows in the database: they outlive a restart,
and every process of a shared database sees them. Each process keeps the armed faults in
memory for a second (`REFRESH_SECONDS`), so that an API request or a job with no fault to
meet costs no query; a fault armed or cleared through this process counts at once, one armed
through another process within that second. Each use is counted in the database with a
compare-and-set, so a fault with a count fires that many times across all processes.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import Any

from cmhost.service.errors import ResourceNotFoundException
from cmhost.service.faults_holds import StatusHolds
from cmhost.service.faults_spec import Fault, parse
from cmhost.service.runtime import Runtime
from cmhost.storage import faults as store

log = logging.getLogger("cmhost.faults")

REFRESH_SECONDS = 1.0
# How often the ticker deletes the faults that expired or were used up.
PURGE_SECONDS = 5.0


class Faults:
    def __init__(self, rt: Runtime, operations: Collection[str], *,
                 draw: Callable[[], float] | None = None) -> None:
        self.rt = rt
        self.operations = frozenset(operations)
        self.draw = draw or random.Random().random
        self.holds = StatusHolds(rt, self.draw)
        self._lock = threading.Lock()
        self._cached: tuple[Fault, ...] = ()
        self._fetched = float("-inf")  # time.monotonic() of the last read
        self._generation = 0  # counts the changes made through this process

    # --- arming, listing, clearing (the admin endpoints) --------------------------------

    def arm(self, body: Any) -> dict[str, Any]:
        """Arm the fault `body` describes (ValidationException if it cannot be); a
        server_status fault holds the servers it covers at once. Returns the fault."""
        spec = parse(body, self.operations)
        now = self.rt.clock.now()
        fault_id = f"fault-{secrets.token_hex(6)}"
        with self.rt.db.write() as conn:
            store.insert_fault(conn, id=fault_id, kind=spec.kind, job=spec.job,
                               operation=spec.operation, account=spec.account,
                               server_name=spec.server_name, remaining=spec.count,
                               probability=spec.probability, fired=0, settings=spec.settings,
                               created_at=now, expires_at=now + spec.expires_in)
        self.invalidate()
        log.info("fault %s armed: %s%s", fault_id, spec.kind,
                 f" ({spec.job or spec.operation})" if spec.job or spec.operation else "")
        fault = self._one(fault_id)
        if fault.kind == "server_status":
            self.holds.begin(fault, now)
            fault = self._one(fault_id)
        return fault.to_json()

    def listing(self) -> list[dict[str, Any]]:
        """The armed faults, and the used-up or expired ones that still hold a server."""
        now = self.rt.clock.now()
        with self.rt.db.read() as conn:
            found = [Fault.of(r) for r in store.all_faults(conn)]
            holds = store.shown_holds(conn, [f.id for f in found])
        shown = []
        for fault in found:
            mine = tuple(_hold_json(h) for h in holds if h["fault_id"] == fault.id)
            if fault.armed(now) or mine:
                shown.append(replace(fault, holds=mine).to_json())
        return shown

    def clear(self) -> int:
        """Disarm every fault and end every hold (the servers go back); returns how many
        faults there were."""
        now = self.rt.clock.now()
        with self.rt.db.write() as conn:
            self.holds.end_holds(conn, None, now)
            store.delete_holds_of(conn, None)
            cleared = store.delete_all_faults(conn)
        self.invalidate()
        log.info("faults cleared (%d)", cleared)
        return cleared

    def remove(self, fault_id: str) -> None:
        """Disarm one fault and end its holds; ResourceNotFoundException if there is none."""
        now = self.rt.clock.now()
        with self.rt.db.write() as conn:
            if not store.delete_fault(conn, fault_id):
                raise ResourceNotFoundException(f"There is no fault {fault_id!r}.")
            self.holds.end_holds(conn, [fault_id], now)
            store.delete_holds_of(conn, [fault_id])
        self.invalidate()
        log.info("fault %s removed", fault_id)

    def _one(self, fault_id: str) -> Fault:
        with self.rt.db.read() as conn:
            row = store.get_fault(conn, fault_id)
            holds = store.shown_holds(conn, [fault_id])
        if row is None:
            raise ResourceNotFoundException(f"There is no fault {fault_id!r}.")
        return replace(Fault.of(row), holds=tuple(_hold_json(h) for h in holds))

    # --- the armed faults, kept in memory for a moment ----------------------------------

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._fetched = float("-inf")

    def stale(self) -> bool:
        return time.monotonic() - self._fetched >= REFRESH_SECONDS

    def refresh(self) -> None:
        with self._lock:
            generation = self._generation
        with self.rt.db.read() as conn:
            rows = store.all_faults(conn)
        with self._lock:
            self._cached = tuple(Fault.of(r) for r in rows)
            # A change made here while this read ran may be missing from it: stay stale.
            if generation == self._generation:
                self._fetched = time.monotonic()

    def known(self) -> tuple[Fault, ...]:
        """Every stored fault, as this process last read them (refreshed when stale)."""
        if self.stale():
            self.refresh()
        return self._cached

    def cached(self) -> tuple[Fault, ...]:
        """As `known`, without reading (for the event loop, which refreshes in a thread)."""
        return self._cached

    # --- firing -------------------------------------------------------------------------

    def for_call(self, faults: tuple[Fault, ...], operation: str, account: str,
                 server_name: str | None) -> list[Fault]:
        """The error and latency faults among `faults` that cover this call."""
        if not faults:
            return []
        now = self.rt.clock.now()
        return [f for f in faults if f.kind in ("error", "latency") and f.armed(now)
                and (f.operation is None or f.operation == operation)
                and f.covers(account, server_name)]

    def fire_call(self, operation: str, account: str, server_name: str | None
                  ) -> list[Fault]:
        """The faults that fire for this call, each use counted: every latency fault that
        covers it, then at most one error fault (the first armed)."""
        fired: list[Fault] = []
        for fault in self.for_call(self.known(), operation, account, server_name):
            if fault.kind == "error" and any(f.kind == "error" for f in fired):
                continue
            if self._take(fault):
                fired.append(fault)
        return fired

    def wants_job(self, job: str) -> bool:
        """Whether a fail_job fault is armed for this job (a test without a query)."""
        now = self.rt.clock.now()
        return any(f.kind == "fail_job" and f.job == job and f.armed(now) for f in self.known())

    def fire_job(self, job: str, account: str | None, server_name: str | None
                 ) -> Fault | None:
        """The fail_job fault that fires for this job (its use counted), if one does."""
        now = self.rt.clock.now()
        for fault in self.known():
            if fault.kind == "fail_job" and fault.job == job and fault.armed(now) \
                    and fault.covers(account, server_name) and self._take(fault):
                return fault
        return None

    def _take(self, fault: Fault) -> bool:
        """Draw against the fault's probability, then count its use (False if it was used
        up or expired meanwhile, here or in another process)."""
        if fault.probability < 1.0 and self.draw() >= fault.probability:
            return False
        with self.rt.db.write() as conn:
            taken = store.consume_fault(conn, fault.id, self.rt.clock.now())
        if taken:
            self.invalidate()
            log.info("fault %s fired (%s)", fault.id, fault.kind)
        return taken


def _hold_json(hold: Mapping[Any, Any]) -> dict[str, Any]:
    return {"server_name": hold["server_name"], "server_id": hold["server_id"],
            "status": hold["status"], "until": round(float(hold["until"]), 3)}


class FaultTicker:
    """A worker ticker: starts the holds of server_status faults on servers that came to
    match them, ends holds whose time is up (on cmhost's clock: a virtual clock's advance
    stops at each end), and deletes faults that expired or were used up."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._purged = float("-inf")  # time.monotonic() of the last purge

    def _holding(self) -> bool:
        """Whether holds may exist: only server_status faults make them, and deleting a
        fault ends its holds (so no query at all while no such fault is armed)."""
        return any(f.kind == "server_status" for f in self.faults.known())

    def next_due(self, now: float) -> float | None:
        return self.faults.holds.next_end() if self._holding() else None

    def tick(self, now: float) -> int:
        holds = self.faults.holds
        changed = holds.end_due(now) if self._holding() else 0
        known = self.faults.known()
        for fault in known:
            if fault.kind == "server_status" and fault.armed(now):
                changed += holds.begin(fault, now)
        if any(not f.armed(now) for f in known) \
                and time.monotonic() - self._purged >= PURGE_SECONDS:
            self._purged = time.monotonic()
            with self.faults.rt.db.write() as conn:
                if store.purge_faults(conn, now):
                    self.faults.invalidate()
        return changed
