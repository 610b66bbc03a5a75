"""Backup and maintenance windows: daily `HH:MM` and weekly `DDD:HH:MM`, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cmhost.workflows.windows import Window


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("window", "now", "latest", "following"), [
    ("08:00", "2026-11-27T09:30:00", "2026-11-27T08:00:00", "2026-11-28T08:00:00"),
    ("08:00", "2026-11-27T07:59:59", "2026-11-26T08:00:00", "2026-11-27T08:00:00"),
    ("08:00", "2026-11-27T08:00:00", "2026-11-27T08:00:00", "2026-11-28T08:00:00"),
    ("Mon:08:00", "2026-11-27T09:00:00", "2026-11-23T08:00:00", "2026-11-30T08:00:00"),
    ("Fri:08:00", "2026-11-27T09:00:00", "2026-11-27T08:00:00", "2026-12-04T08:00:00"),
    ("Fri:10:00", "2026-11-27T09:00:00", "2026-11-20T10:00:00", "2026-11-27T10:00:00"),
    ("Sun:23:59", "2026-11-30T00:00:00", "2026-11-29T23:59:00", "2026-12-06T23:59:00"),
    ("00:00", "2026-12-31T23:59:00", "2026-12-31T00:00:00", "2027-01-01T00:00:00"),
])
def test_window_starts(window: str, now: str, latest: str, following: str) -> None:
    w = Window.parse(window)
    assert w.latest_start(ts(now)) == ts(latest)
    assert w.next_start(ts(now)) == ts(following)


def test_weekly_and_daily_periods() -> None:
    assert Window.parse("Tue:01:02") == Window(1, 1, 2)
    assert Window.parse("23:59") == Window(None, 23, 59)
    assert Window.parse("Tue:01:02").period.days == 7
    assert Window.parse("01:02").period.days == 1


def test_virtual_clock_shares_its_offset_and_never_deadlocks() -> None:
    from cmhost.workflows.clock import VirtualClock

    stored = [100.0]
    clock = VirtualClock(shared_offset=lambda: stored[0], refresh_seconds=0.0)
    assert clock.now() >= __import__("time").time() + 99  # took up the stored offset
    target = clock.now() + 50
    clock.advance_to(target)  # refreshes inside: must not wait on its own lock
    assert clock.now() >= target
    stored[0] = 0.0  # another process's smaller offset never moves this clock back
    assert clock.now() >= target
