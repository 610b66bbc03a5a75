"""Whether the database takes writes, for the health endpoint: asked at most once per
MAX_AGE seconds per process, one question in flight, whoever and however many ask.

The health endpoint answers anyone who reaches it, so its cost must not grow with them:
callers within MAX_AGE get the last answer, and while one caller asks, the others get the
previous answer rather than a thread each waiting on the database.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cmhost.storage.db import Database
from cmhost.storage.tables import meta

MAX_AGE = 2.0
PROBE_KEY = "health_write_probe"


def _upsert_probe(conn: Connection) -> None:
    """One meta row, inserted or updated in one statement: two processes' first probes do
    not race an UPDATE-then-INSERT into a duplicate key."""
    insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
    statement = insert(meta).values(key=PROBE_KEY, value=repr(time.time()))
    conn.execute(statement.on_conflict_do_update(index_elements=[meta.c.key],
                                                 set_={"value": statement.excluded.value}))


class WritableProbe:
    def __init__(self, db: Database, max_age: float = MAX_AGE) -> None:
        self.db = db
        self.max_age = max_age
        self._asking = threading.Lock()
        # (monotonic time, whether the database was in an outage, "ok" or the problem)
        self._answer: tuple[float, bool, str] | None = None

    def _fresh(self, answer: tuple[float, bool, str] | None) -> bool:
        # An outage that began or ended since makes the answer old at once.
        return (answer is not None and time.monotonic() - answer[0] < self.max_age
                and answer[1] == self.db.outage_active)

    def state(self) -> str:
        """"ok", "not writable: <why>" or "error: <what>"."""
        answer = self._answer
        if self._fresh(answer):
            return answer[2]  # type: ignore[index]
        if not self._asking.acquire(blocking=answer is None):
            return answer[2]  # type: ignore[index]  # one caller asks, the rest do not wait
        try:
            answer = self._answer
            if self._fresh(answer):
                return answer[2]  # type: ignore[index]  # asked while this one waited
            state = self._ask()
            self._answer = (time.monotonic(), self.db.outage_active, state)
            return state
        finally:
            self._asking.release()

    def _ask(self) -> str:
        try:
            self.db.check_writable(_upsert_probe)
        except Exception as exc:  # noqa: BLE001 - the liveness probe reports, never raises
            return (f"not writable: {self.db.reason(exc)}" if self.db.unavailable(exc)
                    else f"error: {self.db.reason(exc)}")
        return "ok"
