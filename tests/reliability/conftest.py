"""Reliability tests. The long variants (marked `slow`) run only under `make soak`
(CMHOST_SOAK=1); `make test` runs the fast ones, with fixed seeds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SOAK = os.environ.get("CMHOST_SOAK") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SOAK:
        return
    skip = pytest.mark.skip(reason="a soak test: run it with `make soak` (CMHOST_SOAK=1)")
    for item in items:
        if "slow" in item.keywords and HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)
