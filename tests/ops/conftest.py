"""Fixtures of the operation tests (`cmhost` and `client` come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Cmhost


@pytest.fixture(scope="module")
def paused(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmhost]:
    """A cmhost without its background worker: jobs run only when the test advances the
    clock, so the states in between (BACKING_UP, DELETING, IN_PROGRESS...) can be seen."""
    server = Cmhost(Path(tmp_path_factory.mktemp("paused")),
                    extra_args=["--no-worker"]).start()
    yield server
    server.stop()
