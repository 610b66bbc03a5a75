"""Failed sign-ins slow down whoever makes them: per client address and per account key (or
dashboard), each failure past the first few doubles the wait before the next attempt."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Failures allowed before any wait; the waits then go 2, 4, 8 ... seconds, at most MAX_WAIT.
FREE_FAILURES = 5
# An address may be many people's (a NAT, a proxy): it gets more before its waits begin.
FREE_BY_KIND = {"address": 20}
MAX_WAIT = 300.0
# Failures older than this are forgotten.
WINDOW = 900.0
# Bounded memory: past this many tracked names the oldest are dropped.
MAX_TRACKED = 100_000


class SignInGuard:
    """Counts failures per name (("address", "10.0.0.1"), ("key", "AKIA..."), ...) in this
    process; `wait` says how long a name must still wait before it may try again."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}  # count, last failure
        self._lock = threading.Lock()

    def wait(self, *names: tuple[str, str]) -> float:
        """Seconds until the next attempt is allowed for all of `names` (0: now)."""
        now = self._now()
        longest = 0.0
        with self._lock:
            for name in names:
                count, last = self._failures.get(name, (0, 0.0))
                if count == 0 or now - last > WINDOW:
                    continue
                free = FREE_BY_KIND.get(name[0], FREE_FAILURES)
                if count >= free:
                    delay = min(MAX_WAIT, 2.0 ** (count - free + 1))
                    longest = max(longest, last + delay - now)
        return max(0.0, longest)

    def failed(self, *names: tuple[str, str]) -> None:
        now = self._now()
        with self._lock:
            if len(self._failures) > MAX_TRACKED:
                oldest = sorted(self._failures.items(), key=lambda item: item[1][1])
                for name, _ in oldest[: MAX_TRACKED // 2]:
                    del self._failures[name]
            for name in names:
                count, last = self._failures.get(name, (0, 0.0))
                if now - last > WINDOW:
                    count = 0
                self._failures[name] = (count + 1, now)

    def succeeded(self, *names: tuple[str, str]) -> None:
        with self._lock:
            for name in names:
                self._failures.pop(name, None)
