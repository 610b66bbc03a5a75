"""Several cmhost processes on one PostgreSQL: API-only processes and workers share the work,
every operation happens exactly once, and a dead worker's jobs are taken over."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support import POSTGRES_URL, Cmhost, create_server, fresh_database_url

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL, reason="needs PostgreSQL: CI's second pass sets CMHOST_TEST_DATABASE_URL")

ACCOUNTS = [f"{100000000000 + i}" for i in range(10)]
ONE_TIME_CREDENTIALS = {"CHEF_PIVOTAL_KEY", "CHEF_DELIVERY_ADMIN_PASSWORD",
                        "CHEF_AUTOMATE_PIVOTAL_KEY", "CHEF_AUTOMATE_ADMIN_PASSWORD",
                        "PUPPET_ADMIN_PASSWORD"}


class Cluster:
    """API processes and workers sharing one database, data directory and master key."""

    def __init__(self, root: Path, *, apis: int, workers: int, clock: str) -> None:
        self.root = root
        self.url = fresh_database_url(root)
        common = {"database_url": self.url, "master_key_file": root / "secret" / "master.key",
                  "clock": clock, "provisioning_seconds": 0.0, "deletion_seconds": 0.0}
        lease = ["--job-lease-seconds", "5", "--credential-pool", "4"]
        self.apis = [Cmhost(root, extra_args=["--no-worker", "--credential-pool", "4"],
                            **common)  # type: ignore[arg-type]
                     for _ in range(apis)]
        self.workers = [Cmhost(root, command="worker", extra_args=lease,  # type: ignore[arg-type]
                               **common) for _ in range(workers)]
        for i, proc in enumerate(self.apis + self.workers):
            proc.log_path = root / f"process-{i}.log"

    def start(self) -> Cluster:
        self.apis[0].start()  # the first one migrates the database
        for proc in self.apis[1:] + self.workers:
            proc.start()
        return self

    def stop(self) -> None:
        for proc in self.apis + self.workers:
            proc.stop()

    def ca_public_keys(self) -> list[str]:
        """Each server's CA public key, from the database."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT engine_public FROM servers")).scalars().all()
        engine.dispose()
        certs = [(json.loads(r) if isinstance(r, str) else r)["ca_cert"] for r in rows]
        return [x509.load_pem_x509_certificate(c.encode()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode() for c in certs]

    def issue_keys(self) -> dict[str, dict[str, str]]:
        return {account: json.loads(self.apis[0].cli(
            "keys", "create", "--account", account, *self.apis[0].storage_args()).stdout)
            for account in ACCOUNTS}


@pytest.fixture()
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(**kwargs: Any) -> Cluster:
        cluster = Cluster(tmp_path, **kwargs).start()
        made.append(cluster)
        return cluster
    yield make
    for cluster in made:
        cluster.stop()


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_apis_two_workers_one_killed_everything_once(
        cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory(apis=2, workers=2, clock="real")
    keys = cluster.issue_keys()
    clients = {account: [api.client(key=k["AccessKeyId"], secret=k["SecretAccessKey"])
                         for api in cluster.apis] for account, k in keys.items()}

    def create(i: int) -> list[str]:
        account = ACCOUNTS[i % len(ACCOUNTS)]
        client = clients[account][i % 2]
        server = create_server(client, f"srv-{i:03d}", "Chef" if i % 2 else "Puppet",
                               DisableAutomatedBackup=True)
        return [a["Value"] for a in server["EngineAttributes"]
                if a["Name"] in ONE_TIME_CREDENTIALS]

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(create, i) for i in range(100)]
        time.sleep(1.0)
        cluster.workers[0].kill()  # mid-run: its leased jobs go to the other worker
        one_time = [f.result() for f in futures]
    assert len(one_time) == 100
    # Keys and passwords come from the workers' credential pool through two API processes:
    # none is handed out twice.
    credentials = [c for found in one_time for c in found]
    assert len(credentials) == 150 and len(set(credentials)) == 150
    assert len(set(cluster.ca_public_keys())) == 100

    def statuses() -> Counter[str]:
        found: Counter[str] = Counter()
        for account in ACCOUNTS:
            for server in clients[account][0].describe_servers()["Servers"]:
                found[server["Status"]] += 1
        return found
    _wait(lambda: statuses() == Counter({"HEALTHY": 100}), "100 HEALTHY servers")

    backups: list[str] = []
    for i in range(40):
        account = ACCOUNTS[i % len(ACCOUNTS)]
        name = f"srv-{i:03d}"
        backup = clients[account][(i // 10) % 2].create_backup(ServerName=name)["Backup"]
        backups.append(backup["BackupId"])
        if i == 20:
            cluster.workers[1].kill()  # the other one dies too; a fresh worker takes over
            cluster.workers[0].start()

    def backups_ok() -> bool:
        done = [b for account in ACCOUNTS for b in
                clients[account][0].describe_backups()["Backups"] if b["Status"] == "OK"]
        return len(done) == 40
    _wait(backups_ok, "40 backups OK")

    for account in ACCOUNTS:
        client = clients[account][1]
        listed = client.describe_backups()["Backups"]
        assert len({b["BackupId"] for b in listed}) == len(listed)
        for server in client.describe_servers()["Servers"]:
            messages = [e["Message"] for e in
                        client.describe_events(ServerName=server["ServerName"])["ServerEvents"]]
            counts = Counter(messages)
            assert counts[f"Server {server['ServerName']} is online and HEALTHY."] == 1
            assert all(n == 1 for m, n in counts.items() if m.startswith("Backup ")), counts
    artifacts = [p.name for p in (cluster.root / "data" / "blobs").rglob("*.enc")]
    assert sorted(a.split(".")[0] for a in artifacts) == sorted(backups)


def test_scheduler_fires_each_window_once_with_three_workers(
        cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory(apis=1, workers=3, clock="virtual")
    api = cluster.apis[0]
    client = api.client()
    now = datetime.fromtimestamp(api.get("/_cmhost/clock")["now"], UTC)
    window = (now + timedelta(minutes=10)).strftime("%H:%M")
    for i in range(3):
        create_server(client, f"sched-{i}", "Chef", PreferredBackupWindow=window,
                      BackupRetentionCount=5,
                      PreferredMaintenanceWindow=(now + timedelta(days=3)).strftime("%a:%H:00"))
    _wait(lambda: all(s["Status"] == "HEALTHY" for s in client.describe_servers()["Servers"]),
          "servers HEALTHY")

    def automated() -> list[dict[str, Any]]:
        return [b for b in client.describe_backups()["Backups"]
                if b["BackupType"] == "AUTOMATED"]
    for day in range(2):
        # Only the clock moves (shared through the database): the three workers race to fire.
        api.post("/_cmhost/clock", {"advance": 15 * 60 if day == 0 else 24 * 3600,
                                    "run": False})
        _wait(lambda day=day: len(automated()) == 3 * (day + 1)
              and all(b["Status"] == "OK" for b in automated()), f"window {day + 1} backups")
        time.sleep(3)  # the three workers all had time to (wrongly) fire again
        assert len(automated()) == 3 * (day + 1)
    per_server = Counter(b["ServerName"] for b in automated())
    assert per_server == Counter({f"sched-{i}": 2 for i in range(3)})


def test_describe_servers_sees_another_processes_changes(
        cluster_factory: Callable[..., Cluster]) -> None:
    """Each API process caches its DescribeServers listings (storage/changes.py): a change made
    through another process (an API's, a worker's) or with plain SQL shows within moments; a
    process's own at once."""
    from sqlalchemy import create_engine, text

    cluster = cluster_factory(apis=2, workers=1, clock="virtual")
    a, b = (api.client() for api in cluster.apis)

    def seen(client: Any) -> dict[str, tuple[str, int]]:
        return {s["ServerName"]: (s["Status"], s["BackupRetentionCount"])
                for s in client.describe_servers()["Servers"]}

    create_server(a, "alpha", BackupRetentionCount=1)
    assert "alpha" in seen(a)  # its own write, at once
    # The worker (another process) makes it HEALTHY; both API processes see it.
    for client in (a, b):
        _wait(lambda c=client: seen(c) == {"alpha": ("HEALTHY", 1)}, "alpha HEALTHY", 60)
    for _ in range(20):  # b answers from its cached listing now
        assert seen(b) == {"alpha": ("HEALTHY", 1)}
    a.update_server(ServerName="alpha", BackupRetentionCount=7)
    assert seen(a) == {"alpha": ("HEALTHY", 7)}
    _wait(lambda: seen(b) == {"alpha": ("HEALTHY", 7)}, "process b to see a's update", 5)
    engine = create_engine(cluster.url)  # someone with psql
    with engine.begin() as conn:
        conn.execute(text("UPDATE servers SET backup_retention_count = 9, "
                          "revision = revision + 1"))
    engine.dispose()
    for client in (a, b):
        _wait(lambda c=client: seen(c) == {"alpha": ("HEALTHY", 9)}, "the SQL change", 5)
