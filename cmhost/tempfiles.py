"""Temporary files written beside their target, and the sweep of those a crash left behind.

A temporary file is named `.<target>.<host>-<pid>.<random>.tmp`. After a crash nobody will
rename or remove it, so `sweep` removes the ones whose writer is gone: written on this host
by a process that no longer runs, or older than `STALE_SECONDS` (another host, or a reused
process id). Several processes may share a directory: a living writer's file is kept.

A name must fit in NAME_MAX (255 bytes) whatever the target (a node's record is named after
a NodeName of up to 200 bytes) and the host (up to 64): a target longer than
`TARGET_BYTES` and a host longer than `HOST_BYTES` are cut and end in a hash of the whole,
so a temporary name is at most 1 + 80 + 1 + 32 + 1 + 7 (pid) + 1 + 8 + 4 = 135 bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import time
from pathlib import Path

STALE_SECONDS = 3600.0
TARGET_BYTES = 80
HOST_BYTES = 32
_DIGEST_CHARS = 12


def bounded_name(name: str, limit: int) -> str:
    """`name` itself when it fits in `limit` UTF-8 bytes; otherwise its beginning, '~' and
    a hash of the whole (names that share a beginning stay apart), in `limit` bytes."""
    raw = os.fsencode(name)
    if len(raw) <= limit:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:_DIGEST_CHARS]
    head = raw[: limit - _DIGEST_CHARS - 1].decode("utf-8", "ignore")  # no half character
    return f"{head}~{digest}"


def host_label(hostname: str) -> str:
    """The host as a temporary name holds it: no '.' or '-' (they separate the name's
    parts), nothing a file name cannot hold, at most `HOST_BYTES` bytes."""
    return bounded_name(re.sub(r"[^A-Za-z0-9_]", "_", hostname) or "host", HOST_BYTES)


_HOST = host_label(socket.gethostname())


def create_beside(path: Path) -> tuple[int, str]:
    """An open descriptor and the name of a new temporary file in `path`'s directory."""
    prefix = f".{bounded_name(path.name, TARGET_BYTES)}.{_HOST}-{os.getpid()}."
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
