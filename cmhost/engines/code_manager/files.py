"""What the Code Manager process and the puppetserver driver share in the server's directory:
deploy requests (driver -> process) and the events of deployments (process -> driver).

    code-manager/requests/<n>.json   a deployment cmhost asks for (at provisioning, after a
                                     restore): {"reason": ...}; the process takes each once
    code-manager/events.jsonl        one {"message": ...} per line, appended by the process,
                                     taken (read and removed) by the driver under a lock

Both survive either side's restart: a request waits for the process to start, an event for
the next health check of the worker that takes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PART = "code-manager"  # the supervisor key's part (<server id>/code-manager), the port's too
MAX_EVENT = 1000


@dataclass(frozen=True)
class ManagerFiles:
    """The Code Manager's paths in one server's directory."""

    root: Path

    @property
    def dir(self) -> Path:
        return self.root / PART

    @property
    def requests(self) -> Path:
        return self.dir / "requests"

    @property
    def events(self) -> Path:
        return self.dir / "events.jsonl"

    @property
    def pid_file(self) -> Path:
        return self.dir / "code-manager.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "code-manager.log"

    @property
    def _lock(self) -> Path:
        return self.dir / ".events.lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def request_deploy(root: Path, reason: str) -> None:
    """Ask the server's Code Manager to deploy every environment (it does, once running)."""
    files = ManagerFiles(root)
    files.requests.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}"
    tmp = files.requests / f".{name}.tmp"
    tmp.write_text(json.dumps({"reason": reason}) + "\n")
    os.replace(tmp, files.requests / f"{name}.json")


def take_requests(root: Path) -> list[str]:
    """The reasons of the deployments asked for, oldest first; each is handed out once."""
    requests = ManagerFiles(root).requests
    reasons: list[str] = []
    for path in sorted(requests.glob("*.json")) if requests.is_dir() else []:
        try:
            reason = json.loads(path.read_text()).get("reason")
        except (OSError, ValueError, AttributeError):
            reason = None
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        reasons.append(str(reason or "requested by cmhost")[:200])
    return reasons


def record_event(root: Path, message: str) -> None:
    """Append an event of the server for the driver to hand to the health monitor."""
    files = ManagerFiles(root)
    text = message if len(message) <= MAX_EVENT else message[:MAX_EVENT - 6] + " [...]"
    with files.locked(), open(files.events, "a", encoding="utf-8") as out:
        out.write(json.dumps({"message": text, "at": time.time()}) + "\n")


def take_events(root: Path) -> list[str]:
    """The events recorded since the last call, oldest first; each is handed out once."""
    files = ManagerFiles(root)
    if not files.events.exists():
        return []
    with files.locked():
        try:
            lines = files.events.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        files.events.unlink()
    messages = []
    for line in lines:
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(line).get("message")
            if isinstance(message, str) and message:
                messages.append(message)
    return messages
