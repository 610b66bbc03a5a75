"""The one clock all cmhost time comes from: real, or virtual and fast-forwardable."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    mode: str

    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class RealClock:
    mode = "real"

    def now(self) -> float:
        return time.time()


class VirtualClock:
    """Real time plus an offset that only grows: time flows, and can be skipped ahead.

    Only `advance_to` moves it forward; it never goes back, so the order of events and jobs
    stays the order of their timestamps.
    """

    mode = "virtual"

    def __init__(self, offset: float = 0.0) -> None:
        self._offset = offset
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + self._offset

    @property
    def offset(self) -> float:
        return self._offset

    def advance_to(self, when: float) -> None:
        with self._lock:
            delta = when - self.now()
            if delta > 0:
                self._offset += delta


def make_clock(mode: str, offset: float = 0.0) -> RealClock | VirtualClock:
    if mode == "real":
        return RealClock()
    if mode == "virtual":
        return VirtualClock(offset)
    raise ValueError(f"unknown clock mode {mode!r} (expected 'real' or 'virtual')")
