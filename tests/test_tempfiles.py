"""Temporary files of crashed writers are swept; a living writer's and foreign files are not."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from cmhost import tempfiles


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_only_what_dead_writers_left(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    host = tempfiles._HOST
    dead = tmp_path / "a" / "b" / f".blob.enc.{host}-{_dead_pid()}.x1y2z3.tmp"
    mine = tmp_path / "a" / f".blob.enc.{host}-{os.getpid()}.x1y2z3.tmp"
    elsewhere = tmp_path / ".blob.enc.otherhost-1.x1y2z3.tmp"
    old_elsewhere = tmp_path / ".old.enc.otherhost-1.x1y2z3.tmp"
    foreign = tmp_path / ".engine-own-file.tmp"  # not named by create_beside: never touched
    for path in (dead, mine, elsewhere, old_elsewhere, foreign):
        path.write_bytes(b"half")
    hour_ago = time.time() - tempfiles.STALE_SECONDS - 10
    os.utime(old_elsewhere, (hour_ago, hour_ago))
    os.utime(foreign, (hour_ago, hour_ago))
    assert sorted(tempfiles.sweep(tmp_path)) == sorted([dead, old_elsewhere])
    assert mine.exists() and elsewhere.exists() and foreign.exists()


def test_create_beside_names_its_writer(tmp_path: Path) -> None:
    fd, name = tempfiles.create_beside(tmp_path / "target.bin")
    os.close(fd)
    path = Path(name)
    assert path.parent == tmp_path and tempfiles.is_temporary(path.name)
    assert tempfiles._writer(path.name) == (tempfiles._HOST, os.getpid())
    assert not tempfiles.is_stale(path)
