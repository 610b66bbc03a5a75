"""The engine process supervisor and port reservations, with small real processes."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cmhost.engines.supervisor import (
    ProcessSpec,
    Supervisor,
    SupervisorError,
    read_pid,
    recorded_port,
    reserve_port,
)


def sleeper(tmp: Path, name: str = "engine") -> ProcessSpec:
    marker = str(tmp / name / "marker")
    return ProcessSpec(name=name, argv=[sys.executable, "-c", "import time; time.sleep(600)",
                                        marker],
                       cwd=tmp, log_file=tmp / name / "console.log",
                       pid_file=tmp / name / "engine.pid", marker=marker, stop_timeout=5)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    made: list[Supervisor] = []
    yield made
    for sup in made:
        sup.close()


def make(supervisors: list[Supervisor]) -> Supervisor:
    sup = Supervisor(poll_interval=0.05, min_backoff=0.1, max_backoff=1.0)
    supervisors.append(sup)
    return sup


def test_a_killed_process_is_restarted_in_its_own_session(
        tmp_path: Path, supervisors: list[Supervisor]) -> None:
    sup, spec = make(supervisors), sleeper(tmp_path)
    pid = sup.ensure("a", spec)
    assert read_pid(spec) == pid and os.getsid(pid) == pid != os.getsid(0)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: (read_pid(spec) or pid) != pid)
    status = sup.status("a")
    assert status is not None and status.alive and status.restarts == 1
    assert status.last_exit == "signal 9"
    assert "cmhost supervisor starts engine" in spec.log_file.read_text()
    before = read_pid(spec)
    restarted = sup.restart("a", spec)
    assert restarted not in (pid, before) and read_pid(spec) == restarted
    assert before is not None and not alive(before)
    sup.stop("a", spec)
    assert not alive(restarted)


def test_close_leaves_the_process_and_a_new_supervisor_reattaches(
        tmp_path: Path, supervisors: list[Supervisor]) -> None:
    spec = sleeper(tmp_path)
    first = make(supervisors)
    pid = first.ensure("a", spec)
    first.close()
    time.sleep(0.3)
    assert alive(pid)
    second = make(supervisors)
    assert second.ensure("a", spec) == pid  # re-attached, not started again
    os.kill(pid, signal.SIGKILL)  # not our child any more: noticed through /proc
    wait_for(lambda: (read_pid(spec) or pid) != pid)
    status = second.status("a")
    assert status is not None and status.restarts == 1
    second.stop("a", spec)
    assert not alive(pid) and not spec.pid_file.exists()


def test_stop_terminates_and_a_recycled_pid_is_not_ours(
        tmp_path: Path, supervisors: list[Supervisor]) -> None:
    sup, spec = make(supervisors), sleeper(tmp_path)
    pid = sup.ensure("a", spec)
    sup.stop("a", spec)
    assert not alive(pid)
    spec.pid_file.write_text(f"{os.getpid()}\n")  # a live process without the marker
    assert read_pid(spec) is None
    sup.stop("a", spec)  # must not signal this test's own process
    assert alive(os.getpid())


def test_a_failing_command_backs_off(tmp_path: Path, supervisors: list[Supervisor]) -> None:
    sup = make(supervisors)
    marker = str(tmp_path / "failing")
    spec = ProcessSpec(name="failing", argv=[sys.executable, "-c", "raise SystemExit(3)",
                                             marker],
                       cwd=tmp_path, log_file=tmp_path / "f.log",
                       pid_file=tmp_path / "f.pid", marker=marker)
    sup.ensure("f", spec)
    time.sleep(1.5)
    status = sup.status("f")
    assert status is not None and status.last_exit == "exit code 3"
    # backoff 0.1, 0.2, 0.4, 0.8 s...: a handful of restarts, not one per poll
    assert 1 <= status.restarts <= 6
    sup.release("f")


def test_ports_are_reserved_once_and_abandoned_reservations_reclaimed(tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    a = reserve_port(engines / "a", "127.0.0.1", 28900, 28902)
    b = reserve_port(engines / "b", "127.0.0.1", 28900, 28902)
    assert a != b and recorded_port(engines / "a") == a
    assert reserve_port(engines / "a", "127.0.0.1", 28900, 28902) == a  # idempotent
    with pytest.raises(SupervisorError):
        reserve_port(engines / "c", "127.0.0.1", 28900, 28902, preferred=a)
    old = time.time() - 2 * 86400
    os.utime(engines / "b" / "port", (old, old))  # a CreateServer that never went on
    (engines / "a" / "engine.json").write_text("{}")
    os.utime(engines / "a" / "port", (old, old))  # a real server, however old
    c = reserve_port(engines / "c", "127.0.0.1", b, b)
    assert c == b and not (engines / "b").exists() and (engines / "a").exists()
