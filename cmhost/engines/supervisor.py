"""A small supervisor for long-running engine processes (puppetserver, goiardi, ...).

It knows nothing of engines: it starts a command, keeps it running, and finds it again after
cmhost restarts. Drivers use it like this:

    sup = Supervisor()                        # one per driver; a monitor thread starts lazily
    spec = ProcessSpec(name="puppetserver x", argv=[...], cwd=dir, log_file=dir / "log/console.log",
                       pid_file=dir / "run/engine.pid", marker=str(dir / "conf"))
    sup.ensure(key, spec)     # re-attach to the process the pid file names, or start one
    sup.status(key)           # ProcessStatus: pid, alive, restarts, last exit, started_at
    sup.restart(key, spec)    # stop (if running) and start again, keeps supervising
    sup.stop(key, spec)       # stop supervising; SIGTERM, then SIGKILL after stop_timeout
    sup.release(key)          # stop supervising, leave the process running
    sup.take_notices()        # RestartNotice of each process the monitor restarted, once
    sup.close()               # stop the monitor thread; every process keeps running

- A process is started in its own session (`start_new_session=True`, so signals sent to
  cmhost's process group do not reach it), stdin from /dev/null (or a pipe that hands it
  `stdin_data`, such as a secret, at every start, then closes), stdout and stderr appended
  to `log_file`; its pid is written to `pid_file`.
- A pid file's process is "ours" only when /proc/<pid>/cmdline has an argument containing
  `marker` (so a recycled pid is never mistaken for the engine) and it is not a zombie.
- The monitor thread checks every `poll_interval` seconds; a process that died is started
  again after a backoff that doubles from `min_backoff` to `max_backoff` while it keeps dying
  within `stable_after` seconds of its start, and goes back to `min_backoff` once it ran longer.
- Each restart by the monitor leaves a `RestartNotice` (key, old and new pid, exit status)
  that `take_notices()` hands out once: the service layer turns it into an event and a
  status, as this module knows nothing of either. Stops and restarts asked for through
  `stop`/`restart` leave none: they are not crashes.
- `close()` leaves processes running on purpose: the next cmhost calls `ensure` and re-attaches,
  so engines keep serving across a cmhost restart.

`reserve_port` hands out ports to servers: it records each server's port in `<server_dir>/port`
(and the port of a process beside the engine in `<server_dir>/<part>.port`) and never gives a
port that a server directory under the same parent records, or that something is listening on.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cmhost.messages import caller_message

log = logging.getLogger("cmhost.supervisor")

PORT_FILE = "port"
# What a pipe takes without the writer waiting for the reader (Linux: 64 KiB).
STDIN_LIMIT = 65536
_PART_SUFFIX = ".port"


class SupervisorError(Exception):
    """A process could not be started or a port could not be reserved."""


@dataclass(frozen=True)
class ProcessSpec:
    """How to run one supervised process."""

    name: str  # for logs and messages
    argv: Sequence[str]
    cwd: Path
    log_file: Path
    pid_file: Path
    marker: str  # an argument of the process contains this; identifies it in /proc
    env: Mapping[str, str] | None = None  # None: cmhost's environment
    stop_timeout: float = 30.0
    # Written to the process's stdin at every start, then stdin is closed (None: /dev/null):
    # how a secret reaches a process without passing through its argv or environment, which
    # other local users can read in /proc. Never shown by repr.
    stdin_data: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ProcessStatus:
    """What the supervisor knows of a process."""

    pid: int | None
    alive: bool
    restarts: int  # how many times the monitor restarted it since cmhost started
    last_exit: str | None  # "exit code 1", "signal 9" or "gone" (an attached process died)
    started_at: float | None  # time.time() of the last start or attach


@dataclass(frozen=True)
class RestartNotice:
    """The monitor found a supervised process gone and started it again."""

    key: str
    name: str
    old_pid: int | None
    new_pid: int
    exit_code: int | None  # the returncode (-9: killed by SIGKILL); None when not ours to reap
    at: float  # time.time() of the new start

    @property
    def exit_status(self) -> str:
        """'status -9 (SIGKILL)', 'status 1', or why it is not known."""
        return describe_status(self.exit_code)

    @property
    def message(self) -> str:
        # A process beside the engine is keyed <server id>/<part> (e.g. its code-manager).
        part = self.key.partition("/")[2]
        what = f"The {part} process" if part else "The engine process"
        return (f"{what} (pid {self.old_pid}) exited with {self.exit_status} and "
                f"was restarted (pid {self.new_pid}).")


def describe_status(code: int | None) -> str:
    """A process's exit status for people: 'status -9 (SIGKILL)', 'status 0'."""
    if code is None:
        # A process of an earlier cmhost (re-attached by pid file) is not our child: its
        # status went to whoever reaps it, not to us.
        return "an unknown status (it was not started by this cmhost)"
    if code < 0:
        try:
            return f"status {code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"status {code} (signal {-code})"
    return f"status {code}"


@dataclass
class _Entry:
    spec: ProcessSpec
    pid: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    started_at: float | None = None  # monotonic, for the backoff
    started_wall: float | None = None
    restarts: int = 0
    last_exit: str | None = None
    exit_code: int | None = None  # of the last death, when it was our child
    dead_pid: int | None = None  # the pid that died, until the restart's notice names it
    backoff: float = 0.0
    restart_at: float | None = None  # monotonic time of the next start attempt


# ------------------------------------------------------------------------------ processes


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return True
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat[stat.rfind(")") + 2 :].startswith(("Z", "X"))


def is_ours(pid: int, marker: str) -> bool:
    """True when `pid` is a live (not zombie) process with an argument containing `marker`."""
    args = _cmdline(pid)
    # A process in the middle of execve shows an empty command line for a moment (its parent
    # may already have returned from Popen): look again before deciding.
    for _ in range(20):
        if args != [] or _is_zombie(pid):
            break
        time.sleep(0.05)
        args = _cmdline(pid)
    return bool(args) and any(marker in a for a in args or []) and not _is_zombie(pid)


def read_pid(spec: ProcessSpec) -> int | None:
    """The pid in the spec's pid file when that process is ours and alive, else None."""
    try:
        pid = int(spec.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid > 0 and is_ours(pid, spec.marker) else None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "gone"
    return f"signal {-code}" if code < 0 else f"exit code {code}"


def _spawn(spec: ProcessSpec) -> subprocess.Popen[bytes]:
    if spec.stdin_data is not None and len(spec.stdin_data) > STDIN_LIMIT:
        raise SupervisorError(f"cannot start {spec.name}: more than {STDIN_LIMIT} bytes for "
                              "its stdin")
    spec.log_file.parent.mkdir(parents=True, exist_ok=True)
    spec.pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(spec.log_file, "ab") as out:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        out.write(f"--- {stamp} cmhost supervisor starts {spec.name}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(
                list(spec.argv), cwd=spec.cwd, env=dict(spec.env) if spec.env is not None
                else None, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                stdin=subprocess.DEVNULL if spec.stdin_data is None else subprocess.PIPE,
                close_fds=True)
        except OSError as exc:
            raise SupervisorError(f"cannot start {spec.name}: {caller_message(exc)}") from None
    if proc.stdin is not None:
        _hand_over(proc.stdin, spec.stdin_data or b"")
    tmp = spec.pid_file.with_name(f".{spec.pid_file.name}.tmp")
    tmp.write_text(f"{proc.pid}\n")
    os.replace(tmp, spec.pid_file)
    return proc


def _hand_over(pipe: IO[bytes], data: bytes) -> None:
    """Write `data` to a new process's stdin and close it. A process that dies first
    (BrokenPipeError) is the monitor's to notice, like any other death. The pipe's buffer
    (64 KiB on Linux) takes the data at once: the process reads it at its own pace."""
    try:
        pipe.write(data)
    except BrokenPipeError:
        pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            pipe.close()


def _wait_gone(pid: int, popen: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if popen is not None:
            if popen.poll() is not None:
                return True
        else:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            if _is_zombie(pid):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def terminate(pid: int, popen: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM the process (and its process group), then SIGKILL it after `timeout` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)  # the whole session the supervisor started
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        if _wait_gone(pid, popen, timeout if sig == signal.SIGTERM else 10.0):
            return
        log.warning("process %s did not stop on %s", pid, sig.name)


# ------------------------------------------------------------------------------ supervisor


class Supervisor:
    """Keeps processes running; see the module docstring."""

    def __init__(self, *, poll_interval: float = 1.0, min_backoff: float = 1.0,
                 max_backoff: float = 60.0, stable_after: float = 120.0) -> None:
        self.poll_interval = poll_interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Notices nobody took yet; bounded, as a crash loop with no reader must not grow it.
        self._notices: deque[RestartNotice] = deque(maxlen=1000)

    # --- public -----------------------------------------------------------------------

    def ensure(self, key: str, spec: ProcessSpec) -> int:
        """Supervise `key`: re-attach to its running process or start it; returns the pid."""
        with self._lock:
            entry = self._entries.setdefault(key, _Entry(spec=spec))
            entry.spec = spec
            if entry.pid is not None and entry.restart_at is None and self._alive(entry):
                self._ensure_thread()
                return entry.pid
            pid = read_pid(spec)
            if pid is not None:
                entry.pid, entry.popen = pid, None
                entry.started_at, entry.started_wall = time.monotonic(), time.time()
                entry.restart_at = None
                log.info("re-attached to %s (pid %s)", spec.name, pid)
            else:
                # A pid we had that is gone now died on its own (stop() forgets the entry):
                # starting it again is a restart as much as the monitor's.
                dead = entry.dead_pid if entry.restart_at is not None else entry.pid
                self._start(entry)
                if dead is not None:
                    self._restarted(key, entry, dead)
            self._ensure_thread()
            assert entry.pid is not None
            return entry.pid

    def restart(self, key: str, spec: ProcessSpec) -> int:
        """Stop the process if it runs, start it again and keep supervising it."""
        with self._lock:
            entry = self._entries.get(key)
            restarts = entry.restarts if entry is not None else 0
        self.stop(key, spec)
        pid = self.ensure(key, spec)
        with self._lock:
            if key in self._entries:
                self._entries[key].restarts = restarts
        return pid

    def stop(self, key: str, spec: ProcessSpec) -> None:
        """Stop supervising and stop the process (also one started by an earlier cmhost).

        The wait for the process to end happens outside the supervisor's lock, so other
        processes are still watched (and restarted) meanwhile."""
        with self._lock:
            entry = self._entries.pop(key, None) or _Entry(spec=spec)
        self._kill(entry, spec)
        with contextlib.suppress(FileNotFoundError):
            spec.pid_file.unlink()

    def release(self, key: str) -> None:
        """Stop supervising `key`; its process keeps running."""
        with self._lock:
            self._entries.pop(key, None)

    def status(self, key: str) -> ProcessStatus | None:
        """What is known of `key`'s process, or None when it is not supervised."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            alive = entry.pid is not None and self._alive(entry)
            return ProcessStatus(pid=entry.pid, alive=alive, restarts=entry.restarts,
                                 last_exit=entry.last_exit, started_at=entry.started_wall)

    def take_notices(self) -> list[RestartNotice]:
        """The restarts since the last call, oldest first; each is handed out once."""
        with self._lock:
            taken = list(self._notices)
            self._notices.clear()
        return taken

    def close(self) -> None:
        """Stop the monitor thread; processes keep running (the next cmhost re-attaches)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        with self._lock:
            self._entries.clear()

    # --- internals --------------------------------------------------------------------

    def _alive(self, entry: _Entry) -> bool:
        if entry.pid is None:
            return False
        if entry.popen is not None:
            code = entry.popen.poll()
            if code is not None:
                entry.last_exit = _describe_exit(code)
                entry.exit_code = code
                return False
            return True
        if is_ours(entry.pid, entry.spec.marker):
            return True
        if not entry.restart_at:
            entry.last_exit, entry.exit_code = "gone", None
        return False

    def _start(self, entry: _Entry) -> None:
        entry.popen = _spawn(entry.spec)
        entry.pid = entry.popen.pid
        entry.started_at, entry.started_wall = time.monotonic(), time.time()
        entry.restart_at = None
        log.info("started %s (pid %s)", entry.spec.name, entry.pid)

    def _restarted(self, key: str, entry: _Entry, old_pid: int | None) -> None:
        entry.restarts += 1
        assert entry.pid is not None
        self._notices.append(RestartNotice(
            key=key, name=entry.spec.name, old_pid=old_pid, new_pid=entry.pid,
            exit_code=entry.exit_code, at=entry.started_wall or time.time()))
        entry.dead_pid = None

    def _kill(self, entry: _Entry, spec: ProcessSpec) -> None:
        pids = {p for p in (entry.pid, read_pid(spec)) if p is not None}
        for pid in pids:
            popen = entry.popen if entry.popen is not None and entry.popen.pid == pid else None
            if popen is not None or is_ours(pid, spec.marker):
                terminate(pid, popen, spec.stop_timeout)
        entry.pid, entry.popen, entry.restart_at = None, None, None

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="cmhost-supervisor",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self._check_all()
            except Exception:  # the monitor must outlive any one failure
                log.exception("supervisor check failed")

    def _check_all(self) -> None:
        with self._lock:
            now = time.monotonic()
            for key, entry in list(self._entries.items()):
                if self._stop.is_set():
                    return
                if entry.restart_at is None:
                    if entry.pid is not None and self._alive(entry):
                        continue
                    ran = now - (entry.started_at or now)
                    if ran >= self.stable_after or entry.backoff == 0:
                        entry.backoff = self.min_backoff
                    else:
                        entry.backoff = min(self.max_backoff, entry.backoff * 2)
                    entry.restart_at = now + entry.backoff
                    entry.dead_pid = entry.pid
                    log.warning("%s (pid %s) stopped (%s); restarting in %.0f s",
                                entry.spec.name, entry.pid, entry.last_exit, entry.backoff)
                    entry.popen = None
                    continue
                if now < entry.restart_at:
                    continue
                try:
                    self._start(entry)
                    self._restarted(key, entry, entry.dead_pid)
                except SupervisorError as exc:
                    log.error("%s: %s", key, exc)
                    entry.backoff = min(self.max_backoff, max(entry.backoff, 1) * 2)
                    entry.restart_at = now + entry.backoff


# ------------------------------------------------------------------------------ ports


@contextlib.contextmanager
def _ports_lock(parent: Path) -> Iterator[None]:
    parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(parent / ".ports.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port (a port in TIME_WAIT counts as free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise SupervisorError(f"cannot bind {host}:{port}: {exc.strerror}") from None
    return True


def port_file(part: str | None = None) -> str:
    """The name of the file recording the port of a server's engine (`port`) or of one of
    the processes beside it (`<part>.port`, e.g. `code-manager.port`)."""
    return PORT_FILE if part is None else f"{part}{_PART_SUFFIX}"


def _is_port_file(name: str) -> bool:
    return name == PORT_FILE or (name.endswith(_PART_SUFFIX) and not name.startswith("."))


def recorded_port(server_dir: Path, part: str | None = None) -> int | None:
    """The port `reserve_port` recorded for the server (or its `part`), or None."""
    try:
        return int((server_dir / port_file(part)).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _recorded_ports(server_dir: Path, *, but: str | None = None) -> set[int]:
    """Every port recorded in the server directory (but in the file named `but`)."""
    ports: set[int] = set()
    for path in server_dir.iterdir() if server_dir.is_dir() else []:
        if _is_port_file(path.name) and path.name != but:
            with contextlib.suppress(OSError, ValueError):
                ports.add(int(path.read_text().strip()))
    return ports


def _abandoned(directory: Path, older_than: float) -> bool:
    """A reservation nobody followed up: the directory holds only port files, and those for
    longer than `older_than` seconds (a CreateServer that failed after reserving)."""
    try:
        entries = [p for p in directory.iterdir()]
        newest = max((p.stat().st_mtime for p in entries), default=0.0)
    except FileNotFoundError:
        return False
    return (bool(entries) and all(_is_port_file(p.name) for p in entries)
            and time.time() - newest > older_than)


def reserve_port(server_dir: Path, host: str, low: int, high: int, *,
                 preferred: int | None = None, abandoned_after: float = 86400.0,
                 part: str | None = None) -> int:
    """The server's port (or its `part`'s, see port_file): the one already recorded, else
    `preferred` if given, else the lowest port of [low, high] that no server directory of
    the same parent records (for any part) and nothing listens on. The choice is written to
    the server directory under a lock shared by every server directory of the same parent.
    A sibling holding nothing but port files older than `abandoned_after` seconds is a
    reservation left behind; it is removed."""
    parent = server_dir.parent
    name = port_file(part)
    with _ports_lock(parent):
        current = recorded_port(server_dir, part)
        if current is not None and (preferred is None or preferred == current):
            return current
        taken: set[int] = _recorded_ports(server_dir, but=name)
        for sibling in parent.iterdir() if parent.is_dir() else []:
            if sibling != server_dir and sibling.is_dir() and not sibling.is_symlink():
                ports = _recorded_ports(sibling)
                if not ports:
                    continue
                if _abandoned(sibling, abandoned_after):
                    shutil.rmtree(sibling, ignore_errors=True)
                    continue
                taken |= ports
        if preferred is not None:
            if preferred in taken:
                raise SupervisorError(f"port {preferred} is already another server's")
            choice = preferred
        else:
            found = next((p for p in range(low, high + 1)
                          if p not in taken and port_is_free(host, p)), None)
            if found is None:
                raise SupervisorError(
                    f"no free port left in {low}-{high} on {host}; widen --engine-ports")
            choice = found
        server_dir.mkdir(parents=True, exist_ok=True)
        tmp = server_dir / f".{name}.tmp"
        tmp.write_text(f"{choice}\n")
        os.replace(tmp, server_dir / name)
        return choice
