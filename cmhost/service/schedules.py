"""The scheduler: automated backups in PreferredBackupWindow, weekly maintenance in
PreferredMaintenanceWindow, each window fired exactly once across all workers."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from cmhost.service import backups, events, maintenance, states
from cmhost.service.runtime import Runtime
from cmhost.storage import repo
from cmhost.storage.repo import Row
from cmhost.workflows.windows import WINDOW_SECONDS, Window

BACKUP = "backup"
MAINTENANCE = "maintenance"


# The schedule is read again at least this often (clock seconds), even when the servers'
# fingerprint has not changed: a backstop far inside a window's hour.
REFRESH_SECONDS = 60.0


@dataclass(frozen=True)
class _Entry:
    server_id: str
    created_at: float
    deleting: bool
    windows: tuple[tuple[str, Window], ...]


@lru_cache(maxsize=4096)
def _window(text: str) -> Window:
    return Window.parse(text)


def _entry(server: Row) -> _Entry:
    windows = [(MAINTENANCE, _window(server["preferred_maintenance_window"]))]
    if not server["disable_automated_backup"]:
        windows.append((BACKUP, _window(server["preferred_backup_window"])))
    return _Entry(server["id"], server["created_at"], server["status"] == states.DELETING,
                  tuple(windows))


class Scheduler:
    """A worker ticker. Every worker runs one; `schedule_fires` makes each window fire once.

    The worker asks it for due work on every loop (at least once a second), so it keeps the
    servers' windows in memory and looks at them only when a window can have opened: a cheap
    fingerprint of the servers table (count, sum of revisions, newest creation) says whether
    they must be read again. Idle, a worker costs one aggregate query a loop, not a read and
    a pass over every server."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._entries: list[_Entry] = []
        self._stamp: tuple[object, ...] | None = None
        self._read_at = 0.0
        self._version = 0  # bumped whenever the servers are read again
        # The last pass (tick): which reading it saw, and the earliest window start after it
        # (no window can open before then unless the servers change).
        self._pass_version = -1
        self._next_open = float("-inf")
        # What next_due last answered, and from which reading.
        self._due_version = -1
        self._next_due: float | None = None
        self._done: set[tuple[str, str, float]] = set()  # windows fired or found fired

    def _load(self, now: float) -> None:
        with self.rt.db.read() as conn:
            stamp = repo.server_fingerprint(conn)
            if stamp == self._stamp and self._read_at <= now < self._read_at + REFRESH_SECONDS:
                return
            rows = repo.schedulable_servers(conn)
        self._entries = [_entry(row) for row in rows]
        self._stamp, self._read_at = stamp, now
        self._version += 1

    def next_due(self, now: float) -> float | None:
        """When the next window of a server not being deleted opens (for fast-forwarding the
        clock)."""
        self._load(now)
        if self._due_version != self._version or (self._next_due is not None
                                                  and now >= self._next_due):
            self._next_due = min((w.next_start(now) for e in self._entries if not e.deleting
                                  for _, w in e.windows), default=None)
            self._due_version = self._version
        return self._next_due

    def tick(self, now: float) -> int:
        """Fire every window that is open now and has not fired; returns how many fired."""
        self._load(now)
        if self._pass_version == self._version and now < self._next_open:
            return 0  # the servers are as they were and no window opened since the last pass
        open_now = {(e.server_id, kind, start)
                    for e in self._entries for kind, w in e.windows
                    if e.created_at < (start := w.latest_start(now))
                    and now < start + WINDOW_SECONDS}
        self._done &= open_now  # forget windows that have closed
        self._next_open = min((w.next_start(now) for e in self._entries for _, w in e.windows),
                              default=float("inf"))
        self._pass_version = self._version
        fired = 0
        try:
            for key in sorted(open_now - self._done):
                if self._fire(*key, now):
                    fired += 1
                self._done.add(key)
        except Exception:
            self._pass_version = -1  # try the rest again on the next tick
            raise
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
