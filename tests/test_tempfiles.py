"""Temporary files of crashed writers are swept; a living writer's and foreign files are not."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture
def long_hostname(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This process as if its host had the longest name a host can have (63 bytes)."""
    name = "h" * 55 + "-2.local"
    monkeypatch.setattr(socket, "gethostname", lambda: name)
    importlib.reload(tempfiles)
    yield name
    monkeypatch.undo()
    importlib.reload(tempfiles)


def test_names_stay_bounded_for_a_long_target_and_a_long_host(tmp_path: Path,
                                                              long_hostname: str) -> None:
    # A node's record: a 200-byte NodeName (the most it may have) and '.json'.
    targets = [tmp_path / ("n" * 200 + ".json"), tmp_path / ("é" * 100 + ".json"),
               tmp_path / ("n" * 199 + "m.json")]
    names = []
    for target in targets:
        fd, name = tempfiles.create_beside(target)
        os.close(fd)
        names.append(Path(name).name)
    assert len(set(names)) == 3
    for name in names:
        assert len(os.fsencode(name)) <= 160, name
        assert tempfiles.is_temporary(name)
        assert tempfiles._writer(name) == (tempfiles._HOST, os.getpid())
        name.encode("utf-8")  # no character cut in half
    # Distinct long targets keep distinct beginnings: "n"*199+"m" and "n"*200 share one.
    assert names[0].split("~")[0] == names[2].split("~")[0]
    # A crashed writer's file with such a name is still recognised and swept.
    dead = tmp_path / names[0].replace(f"-{os.getpid()}.", f"-{_dead_pid()}.")
    (tmp_path / names[0]).rename(dead)
    assert tempfiles.sweep(tmp_path) == [dead]
