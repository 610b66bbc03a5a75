"""Counters and histograms of one process, in files that a scrape by any process of the host sums.

Why files. Requests are answered by several API processes and jobs run in workers, while
Prometheus scrapes one of them: each process writes its counts to memory-mapped files in
prometheus_client's multiprocess format, and the scrape adds up every file of the directory
with prometheus_client's own merge (`MultiProcessCollector.merge`).

What a count costs. A request adds to a dictionary under a lock (about a microsecond for its
three or four counts); a thread of the process writes what changed to its mapped files every
FLUSH_SECONDS, and before every scrape this process answers. So another process's scrape sees
this one's counts within FLUSH_SECONDS, and a process killed outright (SIGKILL) loses at most
its last FLUSH_SECONDS of counts; a process that stops normally writes everything first.

Why not prometheus_client's multiprocess mode itself: it picks its storage once per
interpreter, from the PROMETHEUS_MULTIPROC_DIR environment variable read when the library is
imported, for every metric of every library in the process. Here the app owns its files (its
own data directory, opened and closed with it), which keeps several apps in one process (the
in-process tests) apart and sets nothing process-wide.

The directory is per host (`<data-dir>/metrics/<host name>`): the files are memory-mapped, which
a data directory shared across hosts would not keep coherent; each host is scraped on its own.

Dead processes. Each process holds an flock on `<its id>.lock` for as long as it lives. When a
process opens the directory, the files of processes whose lock is free (dead) are folded into
`*_archive.db` and removed: their counts stay in the sums (a counter never goes back) and the
directory does not grow with every restart. Folding and scraping exclude each other through
`compact.lock` (exclusive to fold, shared to read), so a scrape never counts a file twice or
misses one. Only counters and histograms live here; gauges are read from the database at
scrape time (database.py), so no dead process leaves a stale gauge behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import os
import re
import secrets
import socket
import threading
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeAlias

from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString

from cmhost.workflows.background import BackgroundLoop

log = logging.getLogger("cmhost.metrics")

TYPES = ("counter", "histogram")
FLUSH_SECONDS = 1.0
# Where a value lives: (file type, key in the file); built once per series.
Slot: TypeAlias = tuple[str, str]
# A slot and the amount to add to it.
Count: TypeAlias = tuple[Slot, float]
ARCHIVE = "archive"
COMPACT_LOCK = "compact.lock"
_FILE = re.compile(r"^(counter|histogram)_([A-Za-z0-9-]+)\.db$")


def host_directory(data_dir: Path) -> Path:
    """Where the processes of this host keep their metric files."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "localhost"
    return data_dir / "metrics" / host


@contextlib.contextmanager
def _flocked(path: Path, mode: int) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # releases the lock


class MetricFiles:
    """This process's metric files in `directory`: `counter_<id>.db`, `histogram_<id>.db`."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        self.process = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lock = threading.Lock()  # guards _pending
        self._pending: defaultdict[Slot, float] = defaultdict(float)  # since the last flush
        self._write_lock = threading.Lock()  # guards the files and _totals
        self._files: dict[str, MmapedDict] = {}
        self._totals: dict[Slot, float] = {}  # what the files hold
        self._closed = False
        self._failing = False  # the last flush could not write (said once per episode)
        # Registered under the compaction lock: a folding process must never find the lock
        # file of a starting process before the process holds it.
        with _flocked(directory / COMPACT_LOCK, fcntl.LOCK_EX):
            self._alive = os.open(directory / f"{self.process}.lock",
                                  os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._alive, fcntl.LOCK_EX)
            self._fold_dead()
        self._flusher = _Flusher(self)
        self._flusher.start()

    def add(self, counts: Iterable[Count]) -> None:
        """Add each amount to the value under its key (0 makes the key appear)."""
        with self._lock:
            pending = self._pending
            for slot, amount in counts:
                pending[slot] += amount

    def flush(self) -> None:
        """Write what was added since the last flush to the files."""
        with self._write_lock:
            with self._lock:
                pending, self._pending = self._pending, defaultdict(float)
            if self._closed:
                return
            written = []
            try:
                for slot, amount in pending.items():
                    total = self._totals.get(slot, 0.0) + amount
                    self._file(slot[0]).write_value(slot[1], total, 0.0)
                    self._totals[slot] = total
                    written.append(slot)
            except OSError as exc:  # a full disk, a read-only directory: counted, kept
                for slot in written:
                    del pending[slot]
                self.add(pending.items())  # written at the next flush that can
                if not self._failing:
                    log.warning("metrics: cannot write %s: %s; the counts are kept in memory "
                                "until it can be written", self.directory, exc)
                self._failing = True
                return
            if self._failing:
                log.warning("metrics: %s is written again", self.directory)
                self._failing = False

    def _file(self, typ: str) -> MmapedDict:
        found = self._files.get(typ)
        if found is None:
            found = self._files[typ] = MmapedDict(str(self.directory / f"{typ}_{self.process}.db"))
        return found

    def close(self) -> None:
        """Write the last counts and stop counting; the files stay for the scrapes until
        another process folds them."""
        self._flusher.stop()
        self.flush()
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            for f in self._files.values():
                f.close()
            self._files.clear()
            os.close(self._alive)

    # --- reading ------------------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        """Every process's counts, summed (histogram buckets made cumulative)."""
        self.flush()  # this process's own counts are exact in its own scrape
        with _flocked(self.directory / COMPACT_LOCK, fcntl.LOCK_SH):
            found = [f for f in glob.glob(os.path.join(self.directory, "*.db"))
                     if os.path.isfile(f)]
            return list(MultiProcessCollector.merge(found, accumulate=True))

    # --- folding the dead ---------------------------------------------------------------

    def _fold_dead(self) -> None:
        """Fold the files of dead processes into the archive; the caller holds COMPACT_LOCK."""
        dead = self._dead_processes()
        if not dead:
            return
        for typ in TYPES:
            parts = [self.directory / f"{typ}_{p}.db" for p in dead]
            parts = [p for p in parts if p.exists()]
            if not parts:
                continue
            archive = self.directory / f"{typ}_{ARCHIVE}.db"
            merged = MultiProcessCollector.merge(
                [str(p) for p in [archive, *parts] if p.exists()], accumulate=False)
            fresh = self.directory / f"{typ}_{ARCHIVE}.db.new"
            fresh.unlink(missing_ok=True)
            _write(fresh, merged)
            os.replace(fresh, archive)
            for part in parts:
                part.unlink()
        for process in dead:
            (self.directory / f"{process}.lock").unlink(missing_ok=True)

    def _dead_processes(self) -> list[str]:
        seen: set[str] = set()
        for entry in os.listdir(self.directory):
            match = _FILE.match(entry)
            if match and match.group(2) != ARCHIVE:
                seen.add(match.group(2))
            elif entry.endswith(".lock") and entry != COMPACT_LOCK:
                seen.add(entry.removesuffix(".lock"))
        seen.discard(self.process)
        return sorted(p for p in seen if not self._alive_elsewhere(p))

    def _alive_elsewhere(self, process: str) -> bool:
        try:
            fd = os.open(self.directory / f"{process}.lock", os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False  # files without a lock: their process died while being folded
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False


def _write(path: Path, metrics: Iterable[Metric]) -> None:
    """Samples merged without accumulation, written back in the same file format."""
    out = MmapedDict(str(path))
    try:
        for metric in metrics:
            for sample in metric.samples:
                names, values = list(sample.labels), list(sample.labels.values())
                out.write_value(mmap_key(metric.name, sample.name, names, values,
                                         metric.documentation), sample.value, 0.0)
    finally:
        out.close()


class _Flusher(BackgroundLoop):
    """Writes the counts of its MetricFiles every FLUSH_SECONDS."""

    thread_name = "cmhost-metrics"

    def __init__(self, files: MetricFiles) -> None:
        super().__init__()
        self.files = files

    def start(self) -> None:
        self._start_thread()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sleep(FLUSH_SECONDS)
            self.files.flush()


class Counter:
    """A counter family `<name>_total` with fixed label names."""

    def __init__(self, files: MetricFiles, name: str, documentation: str,
                 labelnames: Sequence[str]) -> None:
        self.files = files
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self._slots: dict[tuple[str, ...], Slot] = {}

    def slot(self, *labels: str) -> Slot:
        """Where the series of these label values is kept (MetricFiles.add takes it)."""
        found = self._slots.get(labels)
        if found is None:
            found = self._slots[labels] = ("counter", mmap_key(
                self.name, self.name + "_total", self.labelnames, list(labels),
                self.documentation))
        return found

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.files.add(((self.slot(*labels), amount),))

    def declare(self, *label_sets: tuple[str, ...]) -> None:
        """Make these series appear (at 0) before anything is counted in them."""
        self.files.add([(self.slot(*labels), 0.0) for labels in label_sets])


class Histogram:
    """A histogram family: `<name>_bucket`, `_sum`, `_count`, with fixed label names."""

    def __init__(self, files: MetricFiles, name: str, documentation: str,
                 labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        self.files = files
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.bounds = [float(b) for b in sorted(buckets)] + [float("inf")]
        # labels -> (one slot per bucket, the sum's slot)
        self._slots: dict[tuple[str, ...], tuple[list[Slot], Slot]] = {}

    def slots(self, *labels: str) -> tuple[list[Slot], Slot]:
        """The bucket slots and the sum's slot of the series of these label values."""
        found = self._slots.get(labels)
        if found is None:
            names, values = self.labelnames + ["le"], list(labels)
            buckets = [("histogram", mmap_key(self.name, self.name + "_bucket", names,
                                              [*values, floatToGoString(bound)],
                                              self.documentation))
                       for bound in self.bounds]
            total = ("histogram", mmap_key(self.name, self.name + "_sum", self.labelnames,
                                           values, self.documentation))
            # Every bucket from the first observation on: quantiles need all of them.
            self.files.add([(slot, 0.0) for slot in (*buckets, total)])
            found = self._slots[labels] = (buckets, total)
        return found

    def counts(self, value: float, slots: tuple[list[Slot], Slot]) -> tuple[Count, Count]:
        """What observing `value` in the series of `slots` adds (for MetricFiles.add)."""
        buckets, total = slots
        # Each bucket holds its own observations; the scrape makes them cumulative.
        return (buckets[bisect_left(self.bounds, value)], 1.0), (total, value)

    def observe(self, value: float, *labels: str) -> None:
        self.files.add(self.counts(value, self.slots(*labels)))
