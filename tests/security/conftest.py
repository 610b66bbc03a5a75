"""Fixtures of the security tests, and the figures they report at the end of a run.

Every module runs its own `cmhost serve` on a virtual clock where provisioning and deletion
take an hour and health checks are hourly: after a request's due jobs have run (`settle`),
nothing changes until the next request, so "a refused request stored nothing" can be checked
exactly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.hosts import quiet_host
from tests.support import Cmhost

# Figures of the run, printed in the terminal summary (the closing note reports them).
_FIGURES = pytest.StashKey[Counter[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_FIGURES] = Counter()


@pytest.fixture(scope="session")
def figures(pytestconfig: pytest.Config) -> Counter[str]:
    """Counts by label, e.g. "fuzz examples: CreateServer", "SigV4 matrix requests"."""
    return pytestconfig.stash[_FIGURES]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    counts = terminalreporter.config.stash.get(_FIGURES, Counter())
    if not counts:
        return
    terminalreporter.section("cmhost security figures")
    fuzz = {k.split(": ", 1)[1]: v for k, v in counts.items() if k.startswith("fuzz examples: ")}
    outcomes: dict[str, list[str]] = {}
    for key, n in sorted(counts.items()):
        if key.startswith("fuzz outcome: "):
            name, answer = key.removeprefix("fuzz outcome: ").split(": ", 1)
            outcomes.setdefault(name, []).append(f"{answer} {n}")
    if fuzz:
        terminalreporter.write_line(
            f"fuzz examples run per operation, shrinking included ({len(fuzz)} operations, "
            f"{sum(fuzz.values())} in all), and their answers:")
        for name in sorted(fuzz):
            terminalreporter.write_line(
                f"  {name:30} {fuzz[name]:6}  {', '.join(outcomes.get(name, []))}")
    for label in sorted(k for k in counts if not k.startswith(("fuzz examples: ",
                                                               "fuzz outcome: "))):
        terminalreporter.write_line(f"{label}: {counts[label]}")


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmhost]:
    """A cmhost of this module only: virtual clock, throttling off, slow provisioning."""
    server = quiet_host(Path(tmp_path_factory.mktemp("security"))).start()
    yield server
    server.stop()
