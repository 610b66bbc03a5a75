"""Events retention: each server keeps its newest events only, so events cannot grow forever."""

from __future__ import annotations

import time

from cmhost.service.runtime import Runtime
from cmhost.storage import repo


class EventPruner:
    """A worker ticker: every `interval` seconds of real time, trims every server's events to
    the newest `keep` (`--events-per-server`)."""

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
            if boundary is not None:
                with self.rt.db.write() as conn:
                    repo.delete_events_through(conn, server_id, boundary)
        return 0  # nothing for the worker to run because of it
