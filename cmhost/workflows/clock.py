"""The one clock all cmhost time comes from: real, or virtual and fast-forwardable."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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

    def __init__(self, offset: float = 0.0, *,
                 shared_offset: Callable[[], float] | None = None,
                 refresh_seconds: float = 0.5) -> None:
        self._offset = offset
        self._lock = threading.Lock()
        # Several processes on one database share the offset through it: each takes the
        # larger of its own and the stored one, at most every `refresh_seconds`.
        self._shared_offset = shared_offset
        self._refresh_seconds = refresh_seconds
        self._refreshed = time.monotonic()

    def now(self) -> float:
        if self._shared_offset is not None and \
                time.monotonic() - self._refreshed >= self._refresh_seconds:
            self._refreshed = time.monotonic()
            stored = self._shared_offset()
            with self._lock:
                self._offset = max(self._offset, stored)
        return time.time() + self._offset

    @property
    def offset(self) -> float:
        return self._offset

    def advance_to(self, when: float) -> None:
        self.now()  # take up the shared offset first (outside the lock: now() takes it)
        with self._lock:
            delta = when - (time.time() + self._offset)
            if delta > 0:
                self._offset += delta


def make_clock(mode: str, offset: float = 0.0,
               shared_offset: Callable[[], float] | None = None) -> RealClock | VirtualClock:
    if mode == "real":
        return RealClock()
    if mode == "virtual":
        return VirtualClock(offset, shared_offset=shared_offset)
    raise ValueError(f"unknown clock mode {mode!r} (expected 'real' or 'virtual')")
