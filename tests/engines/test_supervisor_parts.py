"""The supervisor's ports for processes beside an engine (`<part>.port`) and the secrets it
hands a process on stdin."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from cmhost.engines.supervisor import (
    ProcessSpec,
    Supervisor,
    recorded_port,
    reserve_port,
)
from tests.engines.git_repos import free_port


def test_a_parts_port_is_never_another_recorded_port(tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    low = min(free_port(), 65000)
    high = low + 50
    a = reserve_port(engines / "a", "127.0.0.1", low, high)
    a_part = reserve_port(engines / "a", "127.0.0.1", low, high, part="code-manager")
    b = reserve_port(engines / "b", "127.0.0.1", low, high)
    b_part = reserve_port(engines / "b", "127.0.0.1", low, high, part="code-manager")
    assert len({a, a_part, b, b_part}) == 4
    assert recorded_port(engines / "a", "code-manager") == a_part
    assert recorded_port(engines / "a") == a
    assert reserve_port(engines / "a", "127.0.0.1", low, high, part="code-manager") == a_part
    # A reservation nobody followed up (port files only, old) is reclaimed, parts and all.
    old = time.time() - 2 * 86400
    for name in ("port", "code-manager.port"):
        os.utime(engines / "b" / name, (old, old))
    c = reserve_port(engines / "c", "127.0.0.1", b, b)
    assert c == b and not (engines / "b").exists()


def test_stdin_data_reaches_the_process_and_not_its_argv(tmp_path: Path) -> None:
    secret = b"-----BEGIN OPENSSH PRIVATE KEY----- not really"
    out = tmp_path / "got"
    script = f"import sys, pathlib; pathlib.Path({str(out)!r}).write_bytes(sys.stdin.buffer.read())"
    spec = ProcessSpec(name="reader", argv=[sys.executable, "-c", script, str(tmp_path)],
                       cwd=tmp_path, log_file=tmp_path / "log", pid_file=tmp_path / "pid",
                       marker=str(tmp_path), stdin_data=secret)
    assert "not really" not in repr(spec)
    supervisor = Supervisor()
    try:
        supervisor.ensure("k", spec)
        deadline = time.monotonic() + 10
        while not (out.exists() and out.read_bytes()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert out.read_bytes() == secret
    finally:
        supervisor.stop("k", spec)
        supervisor.close()
