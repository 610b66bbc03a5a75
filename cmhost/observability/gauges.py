"""Gauges read from the database at scrape time: servers, backups, the job queue, the
credential pool. The database is the one state every process shares, so these are right
whichever process is scraped and however many there are (with several hosts, every host
reports the same values: aggregate them with max, not sum)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from cmhost import __version__
from cmhost.engines.attributes import engine_family
from cmhost.service import states
from cmhost.service.credential_pool import CredentialPool
from cmhost.storage import repo, stats
from cmhost.storage.db import Database
from cmhost.workflows.clock import Clock

log = logging.getLogger("cmhost.metrics")

BACKUP_STATUSES = ("IN_PROGRESS", "OK", "FAILED", "DELETING")
BACKUP_TYPES = ("AUTOMATED", "MANUAL")


class DatabaseGauges:
    """A prometheus_client collector. Every series a label set can take is given (0 when
    nothing is there), so a gauge that empties reads 0 rather than vanishing."""

    def __init__(self, db: Database, clock: Clock, pool: CredentialPool,
                 job_kinds: Iterable[str], drivers: Sequence[tuple[str, str]]) -> None:
        self.db = db
        self.clock = clock
        self.pool = pool
        self.job_kinds = sorted(job_kinds)
        self.drivers = sorted(set(drivers))  # (engine family, driver name) configured here

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("cmhost_build_info", "The cmhost version of the scraped "
                                 "process (always 1).", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        up = GaugeMetricFamily("cmhost_database_up",
                               "Whether the scrape could read the database (1) or not (0); "
                               "without it the database's gauges are left out.")
        try:
            found = list(self._from_database())
        except Exception as exc:  # an outage must not turn the scrape into a 500
            if not self.db.unavailable(exc):
                log.exception("metrics: reading the database failed")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from found

    def _from_database(self) -> Iterator[Metric]:
        now = self.clock.now()
        with self.db.read() as conn:
            servers = stats.server_counts(conn)
            backups = stats.backup_counts(conn)
            queue = stats.job_queue(conn, now)
            pooled = repo.pooled_credential_counts(conn)
        yield from self._servers(servers)
        yield from self._backups(backups)
        yield from self._queue(queue, now)
        yield from self._pool(pooled)

    def _servers(self, counts: dict[tuple[str, str, str], int]) -> Iterator[Metric]:
        by_label: dict[tuple[str, str, str], int] = {}
        for (engine, driver, status), n in counts.items():
            key = (engine_family(engine), driver, status)
            by_label[key] = by_label.get(key, 0) + n
        pairs = set(self.drivers) | {(family, driver) for family, driver, _ in by_label}
        for family, driver in pairs:
            for status in states.ALL:
                by_label.setdefault((family, driver, status), 0)
        gauge = GaugeMetricFamily("cmhost_servers", "Servers, by engine (Chef or Puppet), "
                                  "driver and status.", labels=["engine", "driver", "status"])
        for labels, n in sorted(by_label.items()):
            gauge.add_metric(list(labels), n)
        yield gauge

    def _backups(self, counts: dict[tuple[str, str], tuple[int, int]]) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("cmhost_backups", "Backups, by status and type.",
                                  labels=["status", "type"])
        size = GaugeMetricFamily("cmhost_backup_artifact_bytes",
                                 "Bytes of the stored backup artifacts, by the backups' "
                                 "status and type.", labels=["status", "type"])
        keys = {(s, t) for s in BACKUP_STATUSES for t in BACKUP_TYPES} | set(counts)
        for status, kind in sorted(keys):
            n, nbytes = counts.get((status, kind), (0, 0))
            gauge.add_metric([status, kind], n)
            size.add_metric([status, kind], nbytes)
        yield gauge
        yield size

    def _queue(self, queue: dict[str, stats.JobQueue], now: float) -> Iterator[Metric]:
        pending = GaugeMetricFamily("cmhost_jobs_pending", "Jobs not finished, those "
                                    "scheduled for later included, by kind.", labels=["kind"])
        due = GaugeMetricFamily("cmhost_jobs_due", "Jobs due now (the queue's depth): "
                                "waiting for a worker or being run, by kind.", labels=["kind"])
        age = GaugeMetricFamily("cmhost_job_oldest_due_age_seconds",
                                "How long the oldest due job no worker holds has waited, on "
                                "the service clock (0 when none waits), by kind.",
                                labels=["kind"])
        empty = stats.JobQueue(0, 0, None)
        for kind in sorted(set(self.job_kinds) | set(queue)):
            found = queue.get(kind, empty)
            pending.add_metric([kind], found.pending)
            due.add_metric([kind], found.due)
            waited = 0.0 if found.oldest_waiting_since is None else now - found.oldest_waiting_since
            age.add_metric([kind], max(0.0, waited))
        yield pending
        yield due
        yield age

    def _pool(self, pooled: dict[str, int]) -> Iterator[Metric]:
        level = GaugeMetricFamily("cmhost_credential_pool_entries", "Credentials waiting in "
                                  "the credential pool, by kind.", labels=["kind"])
        target = GaugeMetricFamily("cmhost_credential_pool_target_entries",
                                   "How many of each kind the pool is kept filled to (the "
                                   "scraped process's --credential-pool; 0: off).",
                                   labels=["kind"])
        for kind, want in sorted(self.pool.targets.items()):
            level.add_metric([kind], pooled.get(kind, 0))
            target.add_metric([kind], want)
        yield level
        yield target
