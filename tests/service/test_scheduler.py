"""The scheduler keeps the servers' windows in memory: an idle worker does not read every
server on every loop, and a window still fires once, at its time."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from cmhost.service import schedules
from cmhost.service.schedules import Scheduler
from cmhost.storage import repo

T0 = dt.datetime(2026, 11, 27, 10, 0, 30, tzinfo=dt.UTC).timestamp()  # a Friday


class FakeDb:
    """Only what the scheduler reads goes through here (both queries are faked)."""

    def read(self) -> Any:
        import contextlib

        return contextlib.nullcontext(None)


class Servers:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows: list[dict[str, Any]] = []
        self.revision = 0
        self.reads = 0
        monkeypatch.setattr(repo, "server_fingerprint", lambda conn: (
            len(self.rows), self.revision, max((r["created_at"] for r in self.rows), default=None)))
        monkeypatch.setattr(repo, "schedulable_servers", self._read)

    def _read(self, conn: object) -> list[dict[str, Any]]:
        self.reads += 1
        return [dict(r) for r in self.rows]

    def add(self, server_id: str, *, backup: str, maintenance: str = "Mon:03:00",
            created_at: float = T0 - 3600, status: str = "HEALTHY") -> None:
        self.rows.append({"id": server_id, "status": status, "created_at": created_at,
                          "disable_automated_backup": False, "preferred_backup_window": backup,
                          "preferred_maintenance_window": maintenance})


@pytest.fixture()
def servers(monkeypatch: pytest.MonkeyPatch) -> Servers:
    return Servers(monkeypatch)


@pytest.fixture()
def fired(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, float]]:
    calls: list[tuple[str, str, float]] = []

    def fire(self: Scheduler, server_id: str, kind: str, window_at: float, now: float) -> bool:
        calls.append((server_id, kind, window_at))
        return True

    monkeypatch.setattr(Scheduler, "_fire", fire)
    return calls


def scheduler() -> Scheduler:
    return Scheduler(SimpleNamespace(db=FakeDb(), wake_worker=lambda: None))  # type: ignore[arg-type]


def test_an_idle_worker_reads_the_servers_once(servers: Servers, fired: list[Any]) -> None:
    for i in range(200):
        servers.add(f"s{i}", backup="04:00")
    sched = scheduler()
    for second in range(50):
        assert sched.tick(T0 + second) == 0
        sched.next_due(T0 + second)
    assert servers.reads == 1 and fired == []


def test_a_window_fires_once_at_its_time_without_reading_again(
        servers: Servers, fired: list[Any]) -> None:
    servers.add("a", backup="10:01")
    sched = scheduler()
    assert sched.tick(T0) == 0
    opens = T0 + 30  # 10:01:00
    assert sched.next_due(T0) == opens
    assert sched.tick(opens - 1) == 0
    assert sched.tick(opens) == 1 and fired == [("a", "backup", opens)]
    for second in range(1, 25):
        assert sched.tick(opens + second) == 0
    assert sched.next_due(opens + 25) == opens + 86400
    assert servers.reads == 1


def test_a_new_or_changed_server_is_read_at_the_next_tick(
        servers: Servers, fired: list[Any]) -> None:
    sched = scheduler()
    assert sched.tick(T0) == 0 and sched.next_due(T0) is None
    servers.add("new", backup="10:00", created_at=T0 - 600)  # its window opened at 10:00
    assert sched.tick(T0 + 1) == 1 and fired == [("new", "backup", T0 - 30)]
    servers.rows[0]["preferred_backup_window"] = "10:05"
    servers.revision += 1  # UpdateServer bumps the revision
    assert sched.next_due(T0 + 2) == T0 + 270
    assert servers.reads == 3  # none at first, then after each change


def test_the_schedule_is_read_again_after_the_refresh_interval(
        servers: Servers, fired: list[Any]) -> None:
    servers.add("a", backup="04:00")
    sched = scheduler()
    sched.tick(T0)
    sched.tick(T0 + schedules.REFRESH_SECONDS - 1)
    assert servers.reads == 1
    sched.tick(T0 + schedules.REFRESH_SECONDS)
    assert servers.reads == 2


def test_next_due_leaves_out_servers_being_deleted(servers: Servers, fired: list[Any]) -> None:
    servers.add("going", backup="10:01", status="DELETING")
    servers.add("staying", backup="10:02")
    assert scheduler().next_due(T0) == T0 + 90


def test_a_window_whose_fire_failed_is_tried_again(
        servers: Servers, monkeypatch: pytest.MonkeyPatch) -> None:
    servers.add("a", backup="10:00")
    attempts: list[float] = []

    def flaky(self: Scheduler, server_id: str, kind: str, window_at: float, now: float) -> bool:
        attempts.append(now)
        if len(attempts) == 1:
            raise RuntimeError("database hiccup")
        return True

    monkeypatch.setattr(Scheduler, "_fire", flaky)
    sched = scheduler()
    with pytest.raises(RuntimeError):
        sched.tick(T0)
    assert sched.tick(T0 + 1) == 1
    assert sched.tick(T0 + 2) == 0
    assert attempts == [T0, T0 + 1]
