"""Tests that run real engine processes (puppetserver, goiardi).

Every test here is marked `real_engine` (so `pytest -m "not real_engine"` leaves them out);
each module skips itself, naming the Debian package to install, when its engine is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_engine: runs a real engine process (puppetserver, goiardi); slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.real_engine)
