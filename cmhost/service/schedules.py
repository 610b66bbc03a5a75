"""The scheduler: automated backups in PreferredBackupWindow, weekly maintenance in
PreferredMaintenanceWindow, each window fired exactly once across all workers."""

from __future__ import annotations

from cmhost.service import backups, events, maintenance, states
from cmhost.service.runtime import Runtime
from cmhost.storage import repo
from cmhost.storage.repo import Row
from cmhost.workflows.windows import WINDOW_SECONDS, Window

BACKUP = "backup"
MAINTENANCE = "maintenance"


def _windows(server: Row) -> list[tuple[str, Window]]:
    found = [(MAINTENANCE, Window.parse(server["preferred_maintenance_window"]))]
    if not server["disable_automated_backup"]:
        found.append((BACKUP, Window.parse(server["preferred_backup_window"])))
    return found


class Scheduler:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def next_due(self, now: float) -> float | None:
        """When the next window of any server opens (for fast-forwarding the clock)."""
        with self.rt.db.read() as conn:
            servers = repo.schedulable_servers(conn)
        times = [w.next_start(now) for s in servers if s["status"] != states.DELETING
                 for _, w in _windows(s)]
        return min(times) if times else None

    def tick(self, now: float) -> int:
        """Fire every window that is open now and has not fired; returns how many fired."""
        fired = 0
        with self.rt.db.read() as conn:
            servers = repo.schedulable_servers(conn)
        for server in servers:
            for kind, window in _windows(server):
                start = window.latest_start(now)
                if start <= server["created_at"] or now >= start + WINDOW_SECONDS:
                    continue  # before the server existed, or the window has closed
                if self._fire(server["id"], kind, start, now):
                    fired += 1
        if fired:
            self.rt.wake_worker()
        return fired

    def _fire(self, server_id: str, kind: str, window_at: float, now: float) -> bool:
        with self.rt.db.write() as conn:
            server = repo.get_server_by_id(conn, server_id)
            if server is None or not repo.record_schedule_fire(conn, server_id, kind,
                                                               window_at, now):
                return False
            if kind == BACKUP:
                backups.start_automated_backup(self.rt, conn, server, now)
            elif not maintenance.begin_maintenance(self.rt, conn, server, now=now,
                                                   major_upgrade=False, scheduled=True):
                events.record(conn, server_id=server_id, server_name=server["name"], at=now,
                              message=f"Scheduled maintenance skipped: the server is "
                                      f"{server['status']}.")
        return True
