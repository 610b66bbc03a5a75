"""Time windows (`HH:MM` daily, `DDD:HH:MM` weekly, UTC): when the next one starts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WINDOW_SECONDS = 3600.0  # every window lasts one hour


@dataclass(frozen=True)
class Window:
    weekday: int | None  # 0 = Monday; None = every day
    hour: int
    minute: int

    @classmethod
    def parse(cls, text: str) -> Window:
        parts = text.split(":")
        if len(parts) == 3:
            return cls(DAYS.index(parts[0]), int(parts[1]), int(parts[2]))
        return cls(None, int(parts[0]), int(parts[1]))

    @property
    def period(self) -> timedelta:
        return timedelta(days=1 if self.weekday is None else 7)

    def latest_start(self, now: float) -> float:
        """The start of the most recent window that began at or before `now`."""
        moment = datetime.fromtimestamp(now, UTC)
        start = moment.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
        if self.weekday is not None:
            start -= timedelta(days=(start.weekday() - self.weekday) % 7)
        while start > moment:
            start -= self.period
        return start.timestamp()

    def next_start(self, now: float) -> float:
        """The start of the first window that begins strictly after `now`."""
        start = datetime.fromtimestamp(self.latest_start(now), UTC) + self.period
        return start.timestamp()
