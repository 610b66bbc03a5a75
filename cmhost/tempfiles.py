"""Temporary files written beside their target, and the sweep of those a crash left behind.

A temporary file is named `.<target>.<host>-<pid>.<random>.tmp`. After a crash nobody will
rename or remove it, so `sweep` removes the ones whose writer is gone: written on this host
by a process that no longer runs, or older than `STALE_SECONDS` (another host, or a reused
process id). Several processes may share a directory: a living writer's file is kept.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

STALE_SECONDS = 3600.0
_HOST = socket.gethostname().replace(".", "_").replace("-", "_") or "host"


def create_beside(path: Path) -> tuple[int, str]:
    """An open descriptor and the name of a new temporary file in `path`'s directory."""
    prefix = f".{path.name}.{_HOST}-{os.getpid()}."
    return tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")


def is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _writer(name: str) -> tuple[str, int] | None:
    """(host, pid) of the process that wrote this temporary file, if its name tells."""
    parts = name[:-len(".tmp")].split(".")
    if len(parts) < 3:
        return None
    host, _, pid = parts[-2].rpartition("-")
    return (host, int(pid)) if host and pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(path: Path, now: float | None = None) -> bool:
    """Whether this is one of our temporary files and its writer is gone (files that are
    not named by `create_beside`, such as an engine's own, are never stale)."""
    writer = _writer(path.name)
    if writer is None:
        return False
    if writer[0] == _HOST and writer[1] != os.getpid() and not _alive(writer[1]):
        return True
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age > STALE_SECONDS


def sweep(root: Path) -> list[Path]:
    """Remove the stale temporary files under `root`; the paths removed."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for path in root.rglob(".*.tmp"):
        if path.is_file() and not path.is_symlink() and is_stale(path):
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed.append(path)
    return removed
