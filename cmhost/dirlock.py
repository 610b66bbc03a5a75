"""The data directory's worker lock: one process at a time works a SQLite database.

The rule. A process that runs a worker on SQLite (`serve` without `--no-worker`, or
`worker`) holds `<data-dir>/worker.lock` exclusively (flock), for as long as it lives; a
second such process on the same data directory is refused, before it opens anything, with
a line naming the holder. A starting worker on SQLite takes every job lease as its own (the
crashed run it replaces held them), so two would run the same jobs. Everything else shares
the data directory freely: API-only processes (`serve --no-worker`, any number, beside one
worker), and on PostgreSQL every process (workers coordinate through leases there).

flock is released by the kernel when the process ends however it ends, so a crashed holder
never blocks the next start; the file descriptor is not inherited by engine processes.
"""

from __future__ import annotations

import fcntl
import os
import time

from cmhost.config import Settings

LOCK_NAME = "worker.lock"


class DataDirInUse(ValueError):
    """Another process already works this data directory's SQLite database."""


def take_worker_lock(settings: Settings, holder: str) -> int | None:
    """The held lock's file descriptor (keep it open while the process works), or None when
    this process needs no lock; DataDirInUse naming the holder when another one has it.

    `holder` says what this process is ("cmhost serve on http://127.0.0.1:4580").
    """
    if not (settings.run_worker and settings.uses_sqlite):
        return None
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = settings.data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # Read through our descriptor: flock is advisory, the holder's line stays readable.
        held_by = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        os.close(fd)
        raise DataDirInUse(
            f"the data directory {settings.data_dir} is in use by a process that runs a "
            f"worker on its SQLite database ({held_by or 'it has not written its name yet'})"
            "; one may at a time: stop that one first, or run an API-only "
            "`serve --no-worker` beside it (several workers need PostgreSQL)") from None
    except BaseException:
        os.close(fd)
        raise
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = f"pid {os.getpid()}: {holder}, since {started}\n".encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, line, 0)
    return fd
