"""A SIGKILL during `cmhost db upgrade`, of a fresh database or of one at revision 0002 with
data in it, leaves the database at a revision, and the next start finishes the upgrade with
the data whole (see upgrade_crash.py). On PostgreSQL when CMHOST_TEST_DATABASE_URL is set.
`CMHOST_CRASH_SEED=N` replays a seed; `CMHOST_UPGRADE_KILLS=N` sets the kills per run."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.reliability.upgrade_crash import TEMPLATE_REVISION, UpgradeCampaign

FAST_SEED = 20161101
FAST_KILLS = 10
SOAK_KILLS = 100
KINDS = ("fresh", TEMPLATE_REVISION)


def _seed(default: int) -> int:
    return int(os.environ.get("CMHOST_CRASH_SEED", default))


def _kills(default: int) -> int:
    return int(os.environ.get("CMHOST_UPGRADE_KILLS", default))


@pytest.mark.parametrize("kind", KINDS)
def test_killed_upgrade_is_finished_at_the_next_start(tmp_path: Path, kind: str) -> None:
    report = UpgradeCampaign(tmp_path, _seed(FAST_SEED), _kills(FAST_KILLS), kind=kind).run()
    print(report.summary())
    assert report.kills >= _kills(FAST_KILLS)
    assert report.random_kills and report.points_hit, report.summary()


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_killed_upgrade_soak(tmp_path: Path, kind: str) -> None:
    seed = _seed(random.SystemRandom().randrange(10**9))
    print(f"db upgrade crash soak ({kind}): seed {seed} (replay: CMHOST_CRASH_SEED={seed})")
    report = UpgradeCampaign(tmp_path, seed, _kills(SOAK_KILLS), kind=kind,
                             serve_probability=0.1).run()
    print(report.summary())
    assert report.kills >= _kills(SOAK_KILLS)
