"""Crash consistency: SIGKILL cmhost at random points while it works, restart, and check
(see crash.py). `CMHOST_CRASH_SEED=N` replays a seed; `CMHOST_CRASH_KILLS=N` sets how many
kill points a run has."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.reliability.crash import CrashCampaign

FAST_SEED = 20161101
FAST_KILLS = 50
SOAK_KILLS = 150
SOAK_RUNS = 4


def _seed(default: int) -> int:
    return int(os.environ.get("CMHOST_CRASH_SEED", default))


def _kills(default: int) -> int:
    return int(os.environ.get("CMHOST_CRASH_KILLS", default))


def test_crash_consistency(tmp_path: Path) -> None:
    report = CrashCampaign(tmp_path, _seed(FAST_SEED), _kills(FAST_KILLS)).run()
    print(report.summary())
    assert report.kill_points >= _kills(FAST_KILLS)


@pytest.mark.slow
@pytest.mark.parametrize("run", range(SOAK_RUNS))
def test_crash_consistency_soak(tmp_path: Path, run: int) -> None:
    seed = _seed(random.SystemRandom().randrange(10**9))
    print(f"crash soak run {run}: seed {seed} (replay: CMHOST_CRASH_SEED={seed})")
    report = CrashCampaign(tmp_path, seed, _kills(SOAK_KILLS)).run()
    print(report.summary())
    assert report.kill_points >= _kills(SOAK_KILLS)
