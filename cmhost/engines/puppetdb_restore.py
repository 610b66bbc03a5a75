"""Putting a backup's PuppetDB archive back, in the background.

A restore empties PuppetDB (database and command queue), stages the archive in its directory
and starts it; nothing waits there for the JVM. The staged archive goes through these files
(0600, they hold the nodes' facts):

    restore.tgz          waiting for PuppetDB to serve
    restore.posted.tgz   handed to the admin API, whose commands are being stored

The file is removed once PuppetDB's command queue is empty. While either exists the
PuppetDB's health says it is restoring, so the restore job's ready step waits for the data
as it waits for the engine, and a cmhost that restarts meanwhile takes up where it was
(PuppetDB.start resumes the import). Each step happens under the PuppetDB directory's lock,
so a second restore, a removal or another cmhost process never sees half of one.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cmhost.engines.base import EngineError, EngineEvent
from cmhost.engines.puppetdb_http import PuppetDBClient, PuppetDBRefused, check_archive
from cmhost.engines.statedir import locked, write_atomic

log = logging.getLogger("cmhost.puppetdb")

PENDING = "restore.tgz"
POSTED = "restore.posted.tgz"
RETRY_SECONDS = 2.0


@dataclass(frozen=True)
class Outcome:
    """How an import ended."""

    imported: int  # commands in the archive
    discarded: int  # commands PuppetDB could not store (kept in var/stockpile/discard)
    refused: str = ""  # PuppetDB's answer when it refused the archive (nothing imported)

    @property
    def message(self) -> str:
        if self.refused:
            return f"PuppetDB refused the backup's data, so it holds none of it: {self.refused}"
        if self.discarded:
            return (f"PuppetDB could not store {self.discarded} of the backup's "
                    f"{self.imported} records (they are kept in its var/stockpile/discard).")
        records = f"{self.imported} record" + ("" if self.imported == 1 else "s")
        return f"PuppetDB holds the backup's data again ({records})."


def in_progress(root: Path) -> bool:
    """Whether an archive is staged or being stored."""
    return (root / PENDING).exists() or (root / POSTED).exists()


def unstage(root: Path) -> None:
    """Forget a staged archive (a new restore or a removal replaces it)."""
    with locked(root):
        for name in (PENDING, POSTED):
            (root / name).unlink(missing_ok=True)


def stage(root: Path, archive: bytes) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with locked(root):
        (root / POSTED).unlink(missing_ok=True)
        write_atomic(root / PENDING, archive, mode=0o600)


def _discarded(var: Path) -> int:
    # PuppetDB keeps each command it could not store there, with a `*_err.txt` beside it.
    discard = var / "stockpile" / "discard"
    return sum(1 for _ in discard.glob("*_err.txt")) if discard.is_dir() else 0


def import_staged(root: Path, var: Path, connect: Callable[[], PuppetDBClient],
                  stopping: threading.Event, *, poll: float = RETRY_SECONDS) -> Outcome | None:
    """Hand the staged archive to PuppetDB once it serves and wait until it is stored; the
    outcome, or None when nothing is staged (any more) or `stopping` is set."""
    while not stopping.is_set():
        if not in_progress(root):
            return None
        try:
            client = connect()
            status = client.status()
            if status.state != "running":
                stopping.wait(poll)
                continue
            with locked(root):
                pending, posted = root / PENDING, root / POSTED
                if pending.exists():
                    archive = pending.read_bytes()
                    try:
                        client.import_archive(archive)
                    except PuppetDBRefused as exc:
                        pending.unlink()
                        return Outcome(imported=0, discarded=0, refused=str(exc))
                    pending.replace(posted)
                    continue
                if posted.exists() and status.queue_depth == 0:
                    commands = _count(posted.read_bytes())
                    posted.unlink()
                    return Outcome(imported=commands, discarded=_discarded(var))
        except (OSError, http.client.HTTPException, EngineError):
            pass  # not serving yet, or restarted meanwhile: ask again
        stopping.wait(poll)
    return None


def _count(archive: bytes) -> int:
    with contextlib.suppress(EngineError):
        return check_archive(archive)
    return 0


class Imports:
    """The background imports of one driver's PuppetDBs: one thread per server at most."""

    def __init__(self, *, poll: float = RETRY_SECONDS) -> None:
        self._poll = poll
        self._threads: dict[str, threading.Thread] = {}
        self._events: list[EngineEvent] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def ensure(self, server_id: str, root: Path, var: Path,
               connect: Callable[[], PuppetDBClient]) -> None:
        """Import the server's staged archive in a thread, unless one does already."""
        with self._lock:
            if server_id in self._threads or self._closing.is_set():
                return
            thread = threading.Thread(target=self._run, args=(server_id, root, var, connect),
                                      daemon=True, name=f"puppetdb-import-{server_id[:8]}")
            self._threads[server_id] = thread
        thread.start()

    def _run(self, server_id: str, root: Path, var: Path,
             connect: Callable[[], PuppetDBClient]) -> None:
        while True:
            try:
                outcome = import_staged(root, var, connect, self._closing, poll=self._poll)
            except Exception:  # a thread has nobody to raise to
                log.exception("PuppetDB of server %s: the import failed", server_id)
                outcome = None
            with self._lock:
                # A restore that staged another archive meanwhile is this thread's too.
                if outcome is None and in_progress(root) and not self._closing.is_set():
                    continue
                self._threads.pop(server_id, None)
                if outcome is not None:
                    self._events.append(EngineEvent(server_id, outcome.message))
                return

    def take_events(self) -> list[EngineEvent]:
        with self._lock:
            taken, self._events = self._events, []
        return taken

    def close(self) -> None:
        self._closing.set()
