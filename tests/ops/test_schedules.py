"""Automated backups in PreferredBackupWindow with BackupRetentionCount, and the weekly
maintenance window, over eight virtual days."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from tests.ops.helpers import events, now, server, weekly
from tests.support import Cmhost, create_server

DAILY = "sch-daily"
OFF = "sch-off"
RETENTION = 3


@pytest.fixture(scope="module", params=["worker", "no-worker"])
def host(request: pytest.FixtureRequest) -> Cmhost:
    """The cmhost of the module (its background worker running), and one without a worker,
    where only `advance` runs jobs and windows: both must give the same schedule."""
    found: Cmhost = request.getfixturevalue("cmhost" if request.param == "worker" else "paused")
    return found


@pytest.fixture(scope="module")
def client(host: Cmhost) -> Any:
    return host.client()


@pytest.fixture(scope="module")
def eight_days(host: Cmhost, client: Any) -> dict[str, Any]:
    cmhost = host
    start = now(cmhost)
    backup_at = (start + dt.timedelta(minutes=10)).replace(second=0, microsecond=0)
    # weekly windows start on the hour
    daily_maintenance = (start + dt.timedelta(days=1, hours=5)).replace(
        minute=0, second=0, microsecond=0)  # after the second daily backup
    off_maintenance = start + dt.timedelta(days=4, hours=7)
    create_server(client, DAILY, PreferredBackupWindow=f"{backup_at:%H:%M}",
                  BackupRetentionCount=RETENTION,
                  PreferredMaintenanceWindow=weekly(daily_maintenance))
    create_server(client, OFF, DisableAutomatedBackup=True,
                  PreferredBackupWindow=f"{backup_at:%H:%M}",
                  PreferredMaintenanceWindow=weekly(off_maintenance))
    cmhost.advance(8 * 86400)
    return {"start": start, "backup_at": backup_at, "maintenance_at": daily_maintenance}


def _backups(client: Any, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.describe_backups(ServerName=name)["Backups"]
    return found


def test_retention_keeps_the_newest_daily_backups(client: Any,
                                                  eight_days: dict[str, Any]) -> None:
    kept = _backups(client, DAILY)
    assert [b["BackupType"] for b in kept] == ["AUTOMATED"] * RETENTION
    assert all(b["Status"] == "OK" for b in kept)
    assert all("UserArn" not in b and "Description" not in b for b in kept)
    times = [b["CreatedAt"].astimezone(dt.UTC) for b in kept]
    # one a day at the window, the last three of the eight days
    backup_at: dt.datetime = eight_days["backup_at"]
    assert {(t.hour, t.minute) for t in times} == {(backup_at.hour, backup_at.minute)}
    gaps = [(a - b).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(abs(g - 86400) < 60 for g in gaps), gaps
    newest_expected = backup_at + dt.timedelta(days=7)
    assert abs((times[0] - newest_expected).total_seconds()) < 60

    messages = events(client, DAILY)
    started = [m for m in messages if m.startswith("Automated backup") and "started" in m]
    deleted = [m for m in messages if m.startswith("Automated backup") and "deleted" in m]
    assert len(started) == 8
    # the eight daily backups and the one maintenance took, less the three kept
    assert len(deleted) == 8 + 1 - RETENTION
    assert server(client, DAILY)["Status"] == "HEALTHY"


def test_one_weekly_maintenance_ran(client: Any, eight_days: dict[str, Any]) -> None:
    current = server(client, DAILY)
    assert current["MaintenanceStatus"] == "SUCCESS"
    messages = events(client, DAILY)
    assert len([m for m in messages if m.startswith("Scheduled maintenance started")]) == 1
    assert len([m for m in messages
                if m.startswith("Maintenance completed successfully")]) == 1
    started = next(e for e in client.describe_events(ServerName=DAILY)["ServerEvents"]
                   if e["Message"].startswith("Scheduled maintenance started"))
    at = started["CreatedAt"].astimezone(dt.UTC)
    assert abs((at - eight_days["maintenance_at"]).total_seconds()) < 60


def test_disabled_automated_backups(client: Any, eight_days: dict[str, Any]) -> None:
    messages = events(client, OFF)
    assert not [m for m in messages if m.startswith("Automated backup")]
    # only the backup its weekly maintenance took
    kept = _backups(client, OFF)
    assert len(kept) == 1 and kept[0]["BackupType"] == "AUTOMATED"
    assert server(client, OFF)["MaintenanceStatus"] == "SUCCESS"
    assert len([m for m in messages if m.startswith("Scheduled maintenance started")]) == 1
