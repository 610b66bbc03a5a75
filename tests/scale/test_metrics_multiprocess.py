"""/metrics with two API processes (`serve --no-worker`) and a worker on one PostgreSQL: every
process's scrape sums the counts of all of them, the database's gauges agree, and a killed
process's counts stay in the sums after a new process folds its files."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.scale.test_multiprocess import Cluster, cluster_factory  # noqa: F401 - a fixture
from tests.scrape import Scrape, check_histogram, scrape
from tests.support import POSTGRES_URL, Cmhost, create_server

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL, reason="needs PostgreSQL: CI's second pass sets CMHOST_TEST_DATABASE_URL")

# --credential-pool 4 (the cluster's): four servers' worth.
POOL_TARGETS = {"rsa-2048": 12, "password-chef": 4, "password-puppet": 4}
COUNTERS = (("cmhost_requests_total", {"operation": "DescribeServers", "outcome": "ok"}),
            ("cmhost_requests_total", {"operation": "CreateServer", "outcome": "ok"}),
            ("cmhost_request_duration_seconds_count", {}),
            ("cmhost_jobs_total", {"kind": "create_server", "outcome": "done"}),
            ("cmhost_job_steps_total", {}),
            ("cmhost_job_duration_seconds_count", {}))


def _until(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _agree(scrapes: list[Scrape]) -> bool:
    return all(len({s.value(name, **labels) for s in scrapes}) == 1 for name, labels in COUNTERS)


def _same_counts(scrapes: list[Scrape]) -> None:
    for name, labels in COUNTERS:
        values = {s.value(name, **labels) for s in scrapes}
        assert len(values) == 1, (name, labels, values)


def test_two_apis_and_a_worker_are_summed_in_every_scrape(
        cluster_factory: Callable[..., Cluster]) -> None:  # noqa: F811 - the fixture
    cluster = cluster_factory(apis=2, workers=1, clock="real")
    a, b = cluster.apis
    before = scrape(a)
    calls = {"DescribeServers": 0}
    clients = [a.client(), b.client()]

    def describe(i: int) -> list[dict[str, Any]]:
        calls["DescribeServers"] += 1
        servers: list[dict[str, Any]] = clients[i % 2].describe_servers()["Servers"]
        return servers

    for i in range(11):
        describe(i)
    for i, name in enumerate(("mp-1", "mp-2", "mp-3")):
        create_server(clients[i % 2], name, "Chef" if i % 2 else "Puppet",
                      DisableAutomatedBackup=True)
    polls = iter(range(10_000))
    _until(lambda: [s["Status"] for s in describe(next(polls))] == ["HEALTHY"] * 3,
           "three HEALTHY servers")
    # The worker refills what CreateServer took from the pool.
    _until(lambda: scrape(b).value("cmhost_credential_pool_entries")
           == sum(POOL_TARGETS.values()), "the pool to be full again")

    # Each process writes its counts to its files every second: the two views agree soon.
    _until(lambda: _agree([scrape(a), scrape(b)]), "both scrapes to agree", 10)
    seen = [scrape(a), scrape(b)]
    _same_counts(seen)
    for s in seen:
        assert s.value("cmhost_requests_total", operation="DescribeServers", outcome="ok") - \
            before.value("cmhost_requests_total", operation="DescribeServers",
                         outcome="ok") == calls["DescribeServers"]
        assert s.value("cmhost_requests_total", operation="CreateServer", outcome="ok") == 3
        # The jobs ran in the worker, a process neither API process is.
        assert s.value("cmhost_jobs_total", kind="create_server", outcome="done") == 3
        assert s.value("cmhost_job_duration_seconds_count", kind="create_server") == 3
        check_histogram(s, "cmhost_request_duration_seconds", operation="DescribeServers")
        assert s.value("cmhost_servers", status="HEALTHY") == 3
        assert s.value("cmhost_servers", engine="Puppet", driver="embedded",
                       status="HEALTHY") == 2
        assert s.value("cmhost_jobs_pending") == 0
        for kind, target in POOL_TARGETS.items():
            assert s.value("cmhost_credential_pool_entries", kind=kind) == target
            assert s.value("cmhost_credential_pool_target_entries", kind=kind) == target
    host_dir = next((cluster.root / "data" / "metrics").iterdir())
    locks = sorted(p.name for p in host_dir.glob("*.lock") if p.name != "compact.lock")
    assert len(locks) == 3, locks  # two API processes and the worker

    # A crash leaves its files; the next process to start folds them into the archive, and
    # nobody's sums move.
    time.sleep(1.5)  # every count written: a SIGKILL loses what a process had not written
    counted = scrape(b)
    a.kill()
    third = Cmhost(cluster.root, extra_args=["--no-worker", "--credential-pool", "4"],
                   database_url=cluster.url, clock="real", provisioning_seconds=0.0,
                   deletion_seconds=0.0)
    third.log_path = cluster.root / "process-third.log"
    cluster.apis.append(third)
    third.start()
    after = [scrape(b), scrape(third)]
    _same_counts([counted, *after])
    assert (host_dir / "counter_archive.db").exists()
    assert sorted(p.name for p in host_dir.glob("*.lock") if p.name != "compact.lock") != locks
    assert len([p for p in host_dir.glob("*.lock") if p.name != "compact.lock"]) == 3
