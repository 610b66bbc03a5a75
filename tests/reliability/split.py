"""cmhost as an API-only process plus a separate `cmhost worker`, which a test can pause,
crash at a chosen call, and restart: jobs then run exactly when the test lets them."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.support import Cmhost

FAULTS = Path(__file__).resolve().parent / "faults"


class SplitCmhost:
    def __init__(self, workdir: Path, *, provisioning_seconds: float = 5.0,
                 deletion_seconds: float = 1.0) -> None:
        self.cm = Cmhost(workdir, provisioning_seconds=provisioning_seconds,
                         deletion_seconds=deletion_seconds, extra_args=["--no-worker"])
        self.worker_args = ["--clock", "virtual", "--provisioning-seconds",
                            str(provisioning_seconds), "--deletion-seconds",
                            str(deletion_seconds), "--log-level", "warning"]
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_log = workdir / "worker.log"

    def start(self) -> SplitCmhost:
        self.cm.start()
        self.start_worker()
        return self

    def start_worker(self, crash_at: str | None = None) -> None:
        """A worker; with `crash_at` (see faults/sitecustomize.py) it SIGKILLs itself there."""
        env = dict(self.cm.env)
        if crash_at:
            env["CMHOST_CRASH_AT"] = crash_at
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(FAULTS), env.get("PYTHONPATH")) if p)
        with open(self.worker_log, "ab") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "cmhost", "worker", *self.cm.storage_args(),
                 *self.worker_args], stdout=log, stderr=subprocess.STDOUT, env=env)

    def wait_for_crash(self, timeout: float = 60.0) -> str:
        """Wait until the worker killed itself; returns the line saying where."""
        assert self.worker is not None
        try:
            code = self.worker.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker did not crash within {timeout} s") from None
        self.worker = None
        lines = [line for line in self.worker_log.read_text(errors="replace").splitlines()
                 if line.startswith("cmhost-fault:")]
        assert code == -signal.SIGKILL and lines, (code, self.worker_log.read_text()[-2000:])
        return lines[-1]

    def pause(self) -> None:
        """Stop the worker where it is; call only when its jobs are idle (nothing due).

        Its credential-pool filler may still be refilling the pool: stopped inside a write
        transaction, it would hold SQLite's write lock and every write of the API would fail
        after the busy timeout. So it is let go on and stopped again until it is caught
        outside one."""
        if self.worker is None:
            return
        for _ in range(500):
            self.worker.send_signal(signal.SIGSTOP)
            _wait_stopped(self.worker.pid)
            if not self._writing():
                return
            self.worker.send_signal(signal.SIGCONT)
            time.sleep(0.005)
        raise AssertionError("the worker never stopped outside a write transaction")

    def _writing(self) -> bool:
        """Whether someone holds the SQLite database's write lock now (False on a server)."""
        url = self.cm.database_url
        if not url.startswith("sqlite:///"):
            return False
        probe = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0,
                                isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()

    def resume(self) -> None:
        if self.worker is not None:
            self.worker.send_signal(signal.SIGCONT)

    def stop_worker(self) -> None:
        if self.worker is None:
            return
        self.worker.send_signal(signal.SIGCONT)
        self.worker.terminate()
        try:
            self.worker.wait(15)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.wait()
        self.worker = None

    def stop(self) -> None:
        self.stop_worker()
        self.cm.stop()


def poll(check: Callable[[], object], timeout: float = 60.0, interval: float = 0.02) -> None:
    """Call `check()` until it returns true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"{check} did not become true within {timeout} s")


def _wait_stopped(pid: int, timeout: float = 5.0) -> None:
    """Until the kernel reports `pid` stopped (a signal is delivered asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t"):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} did not stop within {timeout} s")
