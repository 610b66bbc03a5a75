"""A loop on a daemon thread that can be woken early and stopped: the worker, the pool filler."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod


class BackgroundLoop(ABC):
    """Subclasses implement `_loop`, checking `_stop` and waiting with `_sleep`."""

    thread_name = "cmhost-background"

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start_thread(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _sleep(self, seconds: float) -> None:
        """Wait up to `seconds`, less if woken or stopped."""
        self._wake.wait(seconds)
        self._wake.clear()

    @abstractmethod
    def _loop(self) -> None:
        """The thread's body: runs until `_stop` is set."""


class Every:
    """A ticker's gate: due at the first tick, then once `interval` seconds (of whatever clock
    the ticks pass) have gone by since the last time it was due."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next: float | None = None

    def due(self, now: float) -> bool:
        if self._next is not None and now < self._next:
            return False
        self._next = now + self.interval
        return True
