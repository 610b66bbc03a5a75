"""When a cached read of the servers table goes stale: a generation number per process.

Both kinds move at each commit of this process (`changed()`, called by Database after the
commit returns), so a process reads its own writes at once.

On SQLite (`LocalChanges`) other processes' commits are seen through `PRAGMA data_version`,
which moves whenever another connection commits: read at most once per RECHECK_SECONDS per
thread (a pragma costs a few microseconds, as much as the rest of a cached read), so another
process's change shows within a millisecond.

On PostgreSQL (`ServerChanges`) a trigger (migration 0006) notifies channel `cmhost_servers` when any process
commits a change to the servers table; `ServerChanges` listens on a connection of its own and
moves its generation at each notice, and at each commit of this process (which must not wait
for its own notice to read what it wrote). A read cached under one generation is good while
the generation stays the same.

While the listener is not known to be listening, there is no generation (None) and nothing
may be cached: before it first says LISTEN, after its connection fails, and when its own ping
through the channel has not come back for a while (a connection that hangs rather than fails,
a path that drops notices). Not detected: the trigger disabled by hand, or writes made with
`session_replication_role = replica` (pg_restore --disable-triggers).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

CHANNEL = "cmhost_servers"
# The listener pings itself through the channel this often; a generation is trusted for
# TRUST_SECONDS from the sending of a ping that came back.
PING_SECONDS = 1.0
TRUST_SECONDS = 3.0
RETRY_SECONDS = 1.0


RECHECK_SECONDS = 0.001


class LocalChanges:
    """The generation of an SQLite database as this process knows it."""

    def __init__(self, version: Callable[[], Any]) -> None:
        # `version` reads this thread's connection's data_version (and names the connection).
        self._version = version
        self._lock = threading.Lock()
        self._generation = 0
        self._local = threading.local()

    def generation(self) -> tuple[int, Any]:
        local = self._local
        now = time.monotonic()
        if now >= getattr(local, "recheck_at", 0.0):
            local.version = self._version()
            local.recheck_at = now + RECHECK_SECONDS
        return self._generation, local.version

    def changed(self) -> None:
        with self._lock:
            self._generation += 1

    def close(self) -> None:
        pass


class ServerChanges:
    """The generation of the servers table as this process knows it (PostgreSQL)."""

    def __init__(self, connect: Callable[[], tuple[Any, Callable[[], None]]]) -> None:
        # `connect` returns an autocommit psycopg connection and a function that closes it.
        self._connect = connect
        self._lock = threading.Lock()
        self._generation = 0
        self._trusted_until = 0.0  # monotonic; 0 while not listening
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def generation(self) -> int | None:
        """The current generation, or None while changes made elsewhere could go unseen (the
        first call starts the listener)."""
        if time.monotonic() < self._trusted_until:
            return self._generation
        if self._thread is None:
            self._start()
        return None

    def changed(self) -> None:
        """Something may have changed: every read cached so far is stale."""
        with self._lock:
            self._generation += 1

    def close(self) -> None:
        """Stop caching now; the listener closes its connection when it next wakes (within
        PING_SECONDS), or with the process (its thread is a daemon)."""
        self._stop.set()
        self._trusted_until = 0.0

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="cmhost-server-changes",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # noqa: BLE001 - a lost connection, or anything: retry
                if self._stop.is_set():
                    return  # closed while it waited: its connection went with the database
                if not failing:  # once per outage, not every second
                    log.warning("server change notices: %s; cached listings are off until "
                                "the listener reconnects", exc)
                failing = True
            else:
                failing = False
            self._stop.wait(RETRY_SECONDS)

    def _listen(self) -> None:
        """LISTEN, then each PING_SECONDS notify the channel with a ping of this listener's
        own: the generation is trusted for TRUST_SECONDS from when a ping was sent, once that
        ping has come back. Notices arrive in commit order, so every change committed before
        the ping has been counted by then; and a path that loses notices (a pooler between
        cmhost and PostgreSQL, say) loses the pings too, which turns caching off instead of
        serving stale listings."""
        conn, close = self._connect()
        try:
            conn.execute("SET application_name = 'cmhost-server-changes'")
            conn.execute(f"LISTEN {CHANNEL}")
            # Anything committed before LISTEN went unnoticed: start from a new generation.
            self.changed()
            pings = 0
            while not self._stop.is_set():
                pings += 1
                ping = f"ping:{os.getpid()}:{id(self)}:{pings}"
                sent = time.monotonic()
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, ping))
                for notice in conn.notifies(timeout=PING_SECONDS):
                    if notice.payload == ping:
                        self._trusted_until = sent + TRUST_SECONDS
                    elif not notice.payload.startswith("ping:"):  # another listener's ping
                        self.changed()
        finally:
            self._trusted_until = 0.0
            self.changed()
            close()
