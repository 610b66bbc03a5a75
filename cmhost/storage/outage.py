"""Episodes of an unavailable database, told in the log once when each starts and once when it
ends, however many requests and jobs fail meanwhile (each failure is not worth a line)."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("cmhost.storage")


class Outage:
    """Whether the database is in an episode of unavailability, as this process has seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None  # monotonic start of the current episode
        self._failures = 0
        # Whether a write failed in this episode: then only a write that succeeds ends it
        # (a read-only database still answers reads).
        self._writes = False

    @property
    def active(self) -> bool:
        return self._since is not None

    def failed(self, reason: str, *, writing: bool) -> None:
        """An operation failed because the database is unavailable (`reason` says how)."""
        with self._lock:
            self._failures += 1
            self._writes = self._writes or writing
            if self._since is not None:
                return
            self._since = time.monotonic()
        log.warning("the database is unavailable: %s; requests that need it answer 503 "
                    "ServiceUnavailable and jobs wait until it is back", reason)

    def succeeded(self, *, writing: bool) -> bool:
        """An operation succeeded; True when that ends an episode."""
        with self._lock:
            if self._since is None or (self._writes and not writing):
                return False
            seconds, failures = time.monotonic() - self._since, self._failures
            self._since, self._failures, self._writes = None, 0, False
        log.warning("the database is available again after %.1f s (%d operations failed "
                    "meanwhile)", seconds, failures)
        return True
