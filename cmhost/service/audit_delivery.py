"""Delivering the audit trail as CloudTrail does, and keeping it for a while.

Every five minutes of cmhost's clock, the records not delivered yet go to the blob store as
gzipped JSON files (`{"Records": [...]}`), one per account and region, under
`AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_<region>_
<YYYYMMDDTHHMMZ>_<unique>.json.gz`. Records are claimed for a file in the database first,
then the file is written, then they are marked delivered: several workers never deliver a
record twice, and a crash between the claim and the mark writes the same file again
(same name, same records) on a later pass. Records stay in the database for the retention
period (`--audit-retention-days`), delivered or not.
"""

from __future__ import annotations

import gzip
import secrets
import string
from collections import defaultdict
from datetime import UTC, datetime

from cmhost.service.audit import record_text
from cmhost.service.runtime import Runtime
from cmhost.storage import audit as store
from cmhost.workflows.background import Every

DELIVERY_SECONDS = 300.0
# A claim not marked delivered after this long (seconds of cmhost's clock) is written again.
STALE_CLAIM_SECONDS = 600.0
# A record still waiting for its outcome after this long is delivered as it is (a crash
# came between the change and its outcome).
INCOMPLETE_SECONDS = 600.0
BATCH = 5000


def delivery_key(account: str, region: str, at: float) -> str:
    when = datetime.fromtimestamp(at, UTC)
    unique = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))
    return (f"AWSLogs/{account}/CloudTrail/{region}/{when:%Y/%m/%d}/"
            f"{account}_CloudTrail_{region}_{when:%Y%m%dT%H%MZ}_{unique}.json.gz")


class AuditDelivery:
    """A worker ticker: delivers the records every `every` seconds of cmhost's clock."""

    def __init__(self, rt: Runtime, every: float = DELIVERY_SECONDS) -> None:
        self.rt = rt
        self.every = every
        self._next: float | None = None

    def next_due(self, now: float) -> float | None:
        return None

    def tick(self, now: float) -> int:
        if self._next is None:
            self._next = now + self.every
            return 0
        if now < self._next:
            return 0
        self._next = now + self.every
        self.deliver(now)
        return 0

    def deliver(self, now: float) -> list[str]:
        """Write the files of everything due; their keys."""
        db = self.rt.db
        written: list[str] = []
        with db.read() as conn:
            stale = store.stale_claims(conn, now - STALE_CLAIM_SECONDS)
        for key in stale:
            self._write(key, now)
            written.append(key)
        while True:
            with db.read() as conn:
                rows = store.undelivered(conn, complete_before=now,
                                         incomplete_before=now - INCOMPLETE_SECONDS,
                                         limit=BATCH)
            if not rows:
                break
            groups: dict[tuple[str, str], list[int]] = defaultdict(list)
            for row in rows:
                groups[(row["account"], row["region"])].append(int(row["seq"]))
            for (account, region), seqs in groups.items():
                key = delivery_key(account, region, now)
                with db.write() as conn:
                    claimed = store.claim(conn, seqs, key, now)
                if claimed:
                    self._write(key, now)
                    written.append(key)
            if len(rows) < BATCH:
                break
        return written

    def _write(self, key: str, now: float) -> None:
        with self.rt.db.read() as conn:
            rows = store.claimed_records(conn, key)
        if rows:
            body = '{"Records":[' + ",".join(record_text(r) for r in rows) + "]}"
            self.rt.blobs.put(key, gzip.compress(body.encode(), mtime=0))
        with self.rt.db.write() as conn:
            store.mark_delivered(conn, key, now)


class AuditPruner:
    """A worker ticker: every `interval` seconds of cmhost's clock, deletes the records older
    than `days` days (in batches, so the writer is never held for long)."""

    def __init__(self, rt: Runtime, days: float, interval: float = 3600.0) -> None:
        self.rt = rt
        self.days = days
        self.interval = interval
        self._every = Every(interval)

    def next_due(self, now: float) -> float | None:
        return None

    def tick(self, now: float) -> int:
        if not self._every.due(now):
            return 0
        before = now - self.days * 86400.0
        while True:
            with self.rt.db.write() as conn:
                deleted = store.delete_older_than(conn, before, 1000)
            if deleted < 1000:
                break
        return 0
