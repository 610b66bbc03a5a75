"""Request throttling as the spec states it: 5 requests/s with a burst of 10, per key."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable


class TokenBuckets:
    """One token bucket per key (account and operation), refilled continuously.

    Buckets live in this process; each API process throttles on its own (see README).
    """

    def __init__(self, rate: float = 5.0, burst: int = 10,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, stamp)
        self._lock = threading.Lock()

    def allow(self, key: Hashable) -> bool:
        now = self._clock()
        with self._lock:
            tokens, stamp = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            if len(self._buckets) >= self._max_keys and key not in self._buckets:
                self._evict_full(now)
            self._buckets[key] = (tokens, now)
            return allowed

    def _evict_full(self, now: float) -> None:
        # A bucket that has refilled completely carries no information: forget it.
        full = [k for k, (t, s) in self._buckets.items()
                if t + (now - s) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self._max_keys:
            self._buckets.clear()
