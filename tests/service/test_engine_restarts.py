"""A supervised engine process that dies and is restarted shows at once: an event with its
exit status and the server UNHEALTHY until the engine answers again, then HEALTHY. In-process,
with a real supervisor running a stand-in engine process (a sleeping Python)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cmhost.app import CmhostApp
from cmhost.config import Settings
from cmhost.engines.base import EngineMaterial, Health, ServerSpec
from cmhost.engines.supervisor import ProcessSpec, Supervisor
from cmhost.service import health, states
from cmhost.service.context import Caller
from cmhost.service.servers import CreateServerInput, create_server
from cmhost.storage import repo
from tests.support import fresh_database_url

CALLER = Caller(account="111122223333", region="us-east-1",
                principal_arn="arn:aws:iam::111122223333:root")


class SupervisedDriver:
    """The embedded Puppet driver, with its engine a supervised process that 'answers' when
    the test says so."""

    def __init__(self, inner: Any, supervisor: Supervisor) -> None:
        self._inner = inner
        self.supervisor = supervisor
        self.answers = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def check_health(self, spec: ServerSpec, material: EngineMaterial) -> Health:
        if self.answers:
            return Health(states.HEALTHY)
        return Health(states.CONNECTION_LOST, "the engine does not answer")


@pytest.fixture()
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CmhostApp]:
    monkeypatch.setattr(health, "RESTART_RECHECK", 0.0)
    made = CmhostApp(Settings(database_url=fresh_database_url(tmp_path),
                              data_dir=tmp_path / "data", master_key_file=tmp_path / "mk",
                              clock="virtual", credential_pool=0, provisioning_seconds=0.0))
    yield made
    made.stop()


@pytest.fixture()
def supervisor() -> Iterator[Supervisor]:
    sup = Supervisor(poll_interval=0.05, min_backoff=0.1, max_backoff=1.0)
    yield sup
    sup.close()


def engine(tmp: Path) -> ProcessSpec:
    marker = str(tmp / "engine" / "marker")
    return ProcessSpec(name="stand-in engine", argv=[
        sys.executable, "-c", "import time; time.sleep(600)", marker], cwd=tmp,
        log_file=tmp / "engine" / "console.log", pid_file=tmp / "engine" / "engine.pid",
        marker=marker, stop_timeout=5)


def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def server(app: CmhostApp) -> tuple[str, str | None, list[str]]:
    """Status, reason, and the events newest first."""
    with app.db.read() as conn:
        row = repo.get_server(conn, CALLER.account, CALLER.region, "one")
        assert row is not None
        found = repo.list_events(conn, row["id"], before=None, limit=50)
    messages = [e["message"] for e in sorted(found, key=lambda e: -e["id"])]
    return row["status"], row["status_reason"], messages


@pytest.fixture()
def driven(app: CmhostApp, supervisor: Supervisor, tmp_path: Path
           ) -> Iterator[tuple[SupervisedDriver, ProcessSpec, str]]:
    """A HEALTHY server whose engine is a supervised process; the driver and the server id."""
    key = ("Puppet", "embedded")
    driver = SupervisedDriver(app.runtime.drivers.by_name[key], supervisor)
    app.runtime.drivers.by_name[key] = driver  # type: ignore[assignment]
    app.runtime.drivers.by_family["Puppet"] = driver  # type: ignore[assignment]
    create_server(app.runtime, CALLER, CreateServerInput(
        server_name="one", engine="Puppet", disable_automated_backup=True,
        instance_profile_arn="arn:aws:iam::111122223333:instance-profile/p",
        instance_type="m5.large", service_role_arn="arn:aws:iam::111122223333:role/r"))
    app.worker.run_due()
    with app.db.read() as conn:
        row = repo.get_server(conn, CALLER.account, CALLER.region, "one")
    assert row is not None and row["status"] == states.HEALTHY
    spec = engine(tmp_path)
    supervisor.ensure(row["id"], spec)
    app.worker.tick()  # the first sweep: HEALTHY, nothing changes
    yield driver, spec, row["id"]
    supervisor.stop(row["id"], spec)  # the process of the pid file, whichever it is now


def kill(spec: ProcessSpec) -> int:
    pid = int(spec.pid_file.read_text())
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_restart_is_an_event_and_unhealthy_until_the_engine_answers(
        app: CmhostApp, driven: tuple[SupervisedDriver, ProcessSpec, str]) -> None:
    driver, spec, _ = driven
    driver.answers = False
    pid = kill(spec)
    until(lambda: app.worker.tick() > 0)  # the notice, as soon as the supervisor restarted it
    status, reason, messages = server(app)
    new_pid = int(spec.pid_file.read_text())
    said = (f"The engine process (pid {pid}) exited with status -9 (SIGKILL) and was "
            f"restarted (pid {new_pid}).")
    assert status == states.UNHEALTHY
    assert reason == f"{said} It does not answer yet."
    assert messages[:2] == [f"Health check: the server is UNHEALTHY: {reason}", said]
    for _ in range(3):  # not answering while it comes up: UNHEALTHY, not CONNECTION_LOST
        assert app.worker.tick() == 0
    assert server(app)[0] == states.UNHEALTHY
    driver.answers = True
    assert app.worker.tick() == 1  # checked again at once, not after the health interval
    status, reason, messages = server(app)
    assert (status, reason) == (states.HEALTHY, None)
    assert messages[0] == "Health check: the server is HEALTHY."
    assert app.worker.tick() == 0


def test_a_restart_during_an_operation_is_an_event_and_leaves_the_status_alone(
        app: CmhostApp, driven: tuple[SupervisedDriver, ProcessSpec, str]) -> None:
    driver, spec, server_id = driven
    with app.db.write() as conn:
        repo.update_server(conn, server_id, status=states.BACKING_UP)
    driver.answers = False
    pid = kill(spec)
    until(lambda: app.worker.tick() > 0)
    status, reason, messages = server(app)
    assert status == states.BACKING_UP and reason is None
    assert messages[0].startswith(f"The engine process (pid {pid}) exited with status -9 "
                                  "(SIGKILL) and was restarted (pid ")
    assert not any("UNHEALTHY" in m for m in messages)  # the backup owns the status
    driver.answers = True
    assert app.worker.tick() == 0
    assert server(app)[0] == states.BACKING_UP


def test_an_engine_that_exits_with_a_code_says_so(
        app: CmhostApp, supervisor: Supervisor,
        driven: tuple[SupervisedDriver, ProcessSpec, str], tmp_path: Path) -> None:
    driver, spec, server_id = driven
    supervisor.stop(server_id, spec)
    driver.answers = False
    flag = tmp_path / "exit-once"
    flag.touch()
    exits = ProcessSpec(name="stand-in engine", argv=[sys.executable, "-c", (
        "import os, sys, time\n"
        f"if os.path.exists({str(flag)!r}): os.unlink({str(flag)!r}); sys.exit(3)\n"
        "time.sleep(600)"), spec.marker], cwd=tmp_path, log_file=spec.log_file,
        pid_file=spec.pid_file, marker=spec.marker, stop_timeout=5)
    supervisor.ensure(server_id, exits)
    until(lambda: app.worker.tick() > 0)
    assert "exited with status 3 and was restarted" in server(app)[2][0]
    assert server(app)[0] == states.UNHEALTHY
