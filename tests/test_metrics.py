"""GET /metrics after driving the API with boto3: each family moves as it should, on one
`cmhost serve` and with a `cmhost worker` beside it; who may scrape; a restarted process
keeps its counts.

The cmhost here has no worker of its own: jobs run when the test advances the clock (in the
API process), so the queue can be seen before they run; health checks run at every advance
(--health-interval 0.2 real seconds). Throttling is on (boto3 retries what it throttles).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cmhost.api.scrape import scrape_refusal
from tests.ops.helpers import expect_error, healthy_server, quiet_windows, server, server_id
from tests.scrape import Scrape, check_histogram, fetch, scrape
from tests.support import ROOT, Cmhost, blocked_backup_store, create_server, raw_call

TOKEN = "metrics-token-for-the-tests"
# CMHOST_CREDENTIAL_POOL=1 (tests/support.py): one server's worth.
POOL_TARGETS = {"rsa-2048": 3, "password-chef": 1, "password-puppet": 1}


@pytest.fixture(scope="module")
def cm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmhost]:
    host = Cmhost(Path(tmp_path_factory.mktemp("metrics")), throttle=True, extra_args=[
        "--no-worker", "--health-interval", "0.2", "--metrics-token", TOKEN]).start()
    yield host
    host.stop()


@pytest.fixture(scope="module")
def client(cm: Cmhost) -> Any:
    return cm.client(retries=8)


def delta(after: Scrape, before: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def advance_only(cm: Cmhost, seconds: float) -> None:
    """Move the virtual clock without running what becomes due."""
    cm.post("/_cmhost/clock", {"advance": seconds, "run": False})


def test_requests_by_operation_and_outcome_with_latency(cm: Cmhost, client: Any) -> None:
    before = scrape(cm)
    for _ in range(3):
        client.describe_servers()
    expect_error(client.describe_servers, "ResourceNotFoundException", ServerName="nope")
    expect_error(client.delete_server, "ResourceNotFoundException", ServerName="nope")
    status, _, _ = raw_call(cm, "NoSuchOperation", b"{}")
    assert status == 400
    after = scrape(cm)
    assert after.types["cmhost_requests"] == "counter"
    assert after.types["cmhost_request_duration_seconds"] == "histogram"
    assert delta(after, before, "cmhost_requests_total", operation="DescribeServers",
                 outcome="ok") == 3
    assert delta(after, before, "cmhost_requests_total", operation="DescribeServers",
                 outcome="ResourceNotFoundException") == 1
    assert delta(after, before, "cmhost_requests_total", operation="DeleteServer",
                 outcome="ResourceNotFoundException") == 1
    assert delta(after, before, "cmhost_requests_total", operation="unknown",
                 outcome="InvalidAction") == 1
    # Every request is timed: the histogram counts what the counter counts, per operation.
    for operation in ("DescribeServers", "DeleteServer", "unknown"):
        check_histogram(after, "cmhost_request_duration_seconds", operation=operation)
        assert after.value("cmhost_request_duration_seconds_count", operation=operation) == \
            after.value("cmhost_requests_total", operation=operation)
    assert delta(after, before, "cmhost_request_duration_seconds_sum",
                 operation="DescribeServers") > 0


def test_denied_requests_by_reason(cm: Cmhost) -> None:
    before = scrape(cm)
    assert raw_call(cm, "DescribeServers", b"{}", key="AKIANOSUCHKEY0000000")[0] == 400
    assert raw_call(cm, "DescribeServers", b"{}", secret="not-the-secret")[0] == 400
    assert raw_call(cm, "DescribeServers", b"{}", sign=False)[0] == 400
    after = scrape(cm)
    for reason in ("UnrecognizedClientException", "InvalidSignatureException",
                   "MissingAuthenticationTokenException"):
        assert delta(after, before, "cmhost_requests_denied_total", reason=reason) == 1
        # Refused before the operation was looked at.
        assert delta(after, before, "cmhost_requests_total", operation="unknown",
                     outcome=reason) == 1
    assert delta(after, before, "cmhost_requests_throttled_total") == 0


def test_throttled_requests_by_operation(cm: Cmhost) -> None:
    impatient = cm.client()  # no retries: every ThrottlingException reaches the test
    before = scrape(cm)
    throttled = 0
    for _ in range(25):
        try:
            impatient.describe_account_attributes()
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ThrottlingException"
            throttled += 1
    assert throttled > 0
    after = scrape(cm)
    assert delta(after, before, "cmhost_requests_throttled_total",
                 operation="DescribeAccountAttributes") == throttled
    assert delta(after, before, "cmhost_requests_total", operation="DescribeAccountAttributes",
                 outcome="ThrottlingException") == throttled
    assert delta(after, before, "cmhost_requests_denied_total") == 0


def test_servers_jobs_queue_and_credentials_made_in_requests(cm: Cmhost, client: Any) -> None:
    before = scrape(cm)
    create_server(client, "m-chef", "Chef", **quiet_windows(cm))
    create_server(client, "m-puppet", "Puppet", **quiet_windows(cm))
    queued = scrape(cm)
    assert queued.value("cmhost_servers", engine="Chef", driver="embedded",
                        status="CREATING") == 1
    assert queued.value("cmhost_servers", engine="Puppet", driver="embedded",
                        status="CREATING") == 1
    assert queued.value("cmhost_servers", status="HEALTHY") == \
        before.value("cmhost_servers", status="HEALTHY")
    # No worker runs here: both jobs wait, due now.
    assert queued.value("cmhost_jobs_due", kind="create_server") == 2
    assert queued.value("cmhost_jobs_pending", kind="create_server") == 2
    assert queued.value("cmhost_job_oldest_due_age_seconds", kind="create_server") < 5
    # Nothing fills the pool without a worker: each request made its credentials itself.
    for kind, target in POOL_TARGETS.items():
        assert delta(queued, before, "cmhost_credential_pool_misses_total", kind=kind) >= 1
        assert queued.value("cmhost_credential_pool_entries", kind=kind) == 0
        assert queued.value("cmhost_credential_pool_target_entries", kind=kind) == target

    advance_only(cm, 30)
    waited = scrape(cm)
    assert 30 <= waited.value("cmhost_job_oldest_due_age_seconds", kind="create_server") < 35

    cm.advance(61)  # runs the jobs: start now, ready 60 virtual seconds later
    assert server(client, "m-chef")["Status"] == "HEALTHY"
    after = scrape(cm)
    assert after.value("cmhost_servers", engine="Chef", driver="embedded",
                       status="CREATING") == 0
    assert delta(after, before, "cmhost_servers", engine="Chef", status="HEALTHY") == 1
    assert delta(after, before, "cmhost_servers", engine="Puppet", status="HEALTHY") == 1
    assert after.value("cmhost_jobs_due", kind="create_server") == 0
    assert after.value("cmhost_jobs_pending", kind="create_server") == 0
    assert after.value("cmhost_job_oldest_due_age_seconds", kind="create_server") == 0
    assert delta(after, before, "cmhost_jobs_total", kind="create_server", outcome="done") == 2
    assert delta(after, before, "cmhost_jobs_total", kind="create_server", outcome="failed") == 0
    # CREATING lasts 60 s from the request (the 30 s of waiting among them): each job took
    # 60 s on the service clock.
    assert delta(after, before, "cmhost_job_duration_seconds_count", kind="create_server") == 2
    assert 2 * 60 <= delta(after, before, "cmhost_job_duration_seconds_sum",
                           kind="create_server") < 2 * 65
    check_histogram(after, "cmhost_job_duration_seconds", kind="create_server")
    steps = delta(after, before, "cmhost_job_steps_total", kind="create_server")
    assert steps >= 4  # start and ready, twice
    assert delta(after, before, "cmhost_job_steps_total", kind="create_server",
                 outcome="done") == 2
    assert delta(after, before, "cmhost_job_step_duration_seconds_count",
                 kind="create_server") == steps


def test_health_checks_by_result(cm: Cmhost, client: Any) -> None:
    healthy_server(cm, client, "m-health", "Puppet")
    before = scrape(cm)
    time.sleep(0.3)  # past the health interval
    cm.advance(1)
    checked = scrape(cm)
    assert delta(checked, before, "cmhost_health_checks_total", engine="Puppet",
                 driver="embedded", result="HEALTHY") >= 1
    # A damaged CRL on disk: the embedded engine answers UNHEALTHY.
    crl = cm.data_dir / "engines" / server_id(server(client, "m-health")["ServerArn"]) / "crl.pem"
    crl.write_text("-----BEGIN X509 CRL-----\ngarbage\n-----END X509 CRL-----\n")
    time.sleep(0.3)
    cm.advance(1)
    after = scrape(cm)
    assert server(client, "m-health")["Status"] == "UNHEALTHY"
    assert delta(after, checked, "cmhost_health_checks_total", engine="Puppet",
                 driver="embedded", result="UNHEALTHY") >= 1
    assert delta(after, checked, "cmhost_servers", engine="Puppet", status="UNHEALTHY") == 1


def test_backups_by_status_with_their_bytes_and_failed_jobs(cm: Cmhost, client: Any) -> None:
    healthy_server(cm, client, "m-backup")
    before = scrape(cm)
    backup = client.create_backup(ServerName="m-backup")["Backup"]
    running = scrape(cm)
    assert delta(running, before, "cmhost_backups", status="IN_PROGRESS", type="MANUAL") == 1
    assert running.value("cmhost_jobs_due", kind="backup") == 1
    cm.advance(1)
    done = scrape(cm)
    assert client.describe_backups(BackupId=backup["BackupId"])["Backups"][0]["Status"] == "OK"
    assert delta(done, before, "cmhost_backups", status="OK", type="MANUAL") == 1
    assert done.value("cmhost_backups", status="IN_PROGRESS") == 0
    assert delta(done, before, "cmhost_backup_artifact_bytes", status="OK",
                 type="MANUAL") > 1000
    assert delta(done, before, "cmhost_jobs_total", kind="backup", outcome="done") == 1

    with blocked_backup_store(cm):  # every write of an artifact fails: retried, then given up
        failing = client.create_backup(ServerName="m-backup")["Backup"]
        cm.advance(600)  # each retry at its due time (backoff 2, 4, 8, 16 s)
    failed = scrape(cm)
    found = client.describe_backups(BackupId=failing["BackupId"])["Backups"][0]
    assert found["Status"] == "FAILED", found
    assert delta(failed, done, "cmhost_backups", status="FAILED", type="MANUAL") == 1
    assert delta(failed, done, "cmhost_jobs_total", kind="backup", outcome="failed") == 1
    assert delta(failed, done, "cmhost_job_steps_total", kind="backup", outcome="retry") >= 1
    assert delta(failed, done, "cmhost_job_steps_total", kind="backup", outcome="gave_up") == 1


def test_who_may_scrape(cm: Cmhost) -> None:
    # uvicorn takes the client's address from X-Forwarded-For when the request comes from
    # 127.0.0.1, as from a reverse proxy on this machine: a caller from elsewhere.
    elsewhere = {"X-Forwarded-For": "203.0.113.7"}
    status, headers, body = fetch(cm, headers=elsewhere)
    assert status == 403 and headers["x-amzn-errortype"] == "AccessDeniedException", body
    assert b"--metrics-token" in body and b"cmhost_" not in body
    status, _, body = fetch(cm, headers=elsewhere, token=TOKEN)
    assert status == 200 and b"cmhost_requests_total" in body
    for wrong in ("not-the-token", TOKEN[:-1], ""):
        assert fetch(cm, headers=elsewhere, token=wrong)[0] == 403
        assert fetch(cm, token=wrong)[0] == 403  # a wrong token is refused from loopback too
    assert fetch(cm)[0] == 200
    status, headers, body = fetch(cm, method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    assert fetch(cm, method="POST")[0] == 405


@pytest.mark.parametrize(("client", "token", "configured", "allowed"), [
    ("127.0.0.1", None, None, True),
    ("::1", None, None, True),
    ("127.0.0.5", None, "t0ken", True),
    ("127.0.0.1", "t0ken", "t0ken", True),
    ("192.0.2.10", "t0ken", "t0ken", True),
    ("2001:db8::1", "t0ken", "t0ken", True),
    ("192.0.2.10", None, "t0ken", False),
    ("192.0.2.10", None, None, False),
    ("192.0.2.10", "t0ke", "t0ken", False),
    ("192.0.2.10", "t0ken", None, False),
    ("127.0.0.1", "wrong", "t0ken", False),
    ("127.0.0.1", "anything", None, False),
    ("::ffff:192.0.2.10", None, "t0ken", False),
    (None, None, "t0ken", False),
])
def test_the_scrape_rule(client: str | None, token: str | None, configured: str | None,
                         allowed: bool) -> None:
    assert (scrape_refusal(client, token, configured) is None) is allowed


def test_the_grafana_dashboard_uses_the_families_there_are(cm: Cmhost, client: Any) -> None:
    dashboard = json.loads((ROOT / "contrib" / "grafana-cmhost.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {name for e in exprs for name in re.findall(r"\bcmhost_[a-z_]+", e)}
    # Something in every family: a server created (jobs, credentials made in the request),
    # checked, a request denied, some throttled.
    healthy_server(cm, client, "m-dashboard")
    time.sleep(0.3)
    cm.advance(1)
    raw_call(cm, "DescribeServers", b"{}", key="AKIANOSUCHKEY0000000")
    impatient = cm.client()
    for _ in range(25):
        try:
            impatient.describe_account_attributes()
        except ClientError:
            pass
    found = scrape(cm)
    names = {name for name, _ in found.samples}
    # Only a real engine's supervisor restarts processes: not seen with embedded engines.
    assert used - names == {"cmhost_engine_restarts_total"}, used - names
    families = {n.removesuffix("_total") for n in names} | set(found.types)
    assert len(used) >= 20 and {f for f in found.types if f.startswith("cmhost_")} <= \
        {u.removesuffix("_bucket").removesuffix("_total") for u in used}, families


def _metric_files(cm: Cmhost) -> list[str]:
    (host,) = (cm.data_dir / "metrics").iterdir()
    return sorted(p.name for p in host.iterdir())


def test_a_restarted_process_keeps_the_counts_and_folds_its_files(cm: Cmhost) -> None:
    before = scrape(cm)
    (lock,) = {name for name in _metric_files(cm) if name.endswith(".lock")} - {"compact.lock"}
    process = lock.removesuffix(".lock")
    assert f"counter_{process}.db" in _metric_files(cm)
    cm.restart()
    after = scrape(cm)
    for name, labels in (("cmhost_requests_total", {"operation": "DescribeServers"}),
                         ("cmhost_jobs_total", {"kind": "create_server"}),
                         ("cmhost_job_duration_seconds_sum", {}),
                         ("cmhost_requests_denied_total", {})):
        assert after.value(name, **labels) == before.value(name, **labels) > 0, name
    files = _metric_files(cm)
    assert "counter_archive.db" in files and "histogram_archive.db" in files
    assert not [f for f in files if process in f]  # the dead process's lock and files are gone


def test_a_worker_beside_it_is_counted_in_the_same_scrape(cm: Cmhost, client: Any) -> None:
    """A `cmhost worker` on the same data directory (SQLite): its jobs and the pool it fills
    show in the API process's scrape."""
    healthy_server(cm, client, "m-beside")
    worker = Cmhost(cm.workdir, command="worker", database_url=cm.database_url,
                    extra_args=["--health-interval", "0.2"])
    worker.log_path = cm.workdir / "worker.log"
    before = scrape(cm)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while scrape(cm).value("cmhost_credential_pool_entries") < sum(POOL_TARGETS.values()):
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.2)
        client.create_backup(ServerName="m-beside")
        # The worker writes its counts to its files every second (observability/files.py).
        while delta(scrape(cm), before, "cmhost_jobs_total", kind="backup",
                    outcome="done") < 1:
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.2)
        time.sleep(1.5)  # nothing more comes
        after = scrape(cm)
    finally:
        worker.stop()
    assert delta(after, before, "cmhost_jobs_total", kind="backup", outcome="done") == 1
    assert client.describe_backups(ServerName="m-beside")["Backups"][0]["Status"] == "OK"
    assert delta(after, before, "cmhost_health_checks_total", result="HEALTHY") >= 1
    for kind, target in POOL_TARGETS.items():
        assert after.value("cmhost_credential_pool_entries", kind=kind) == target
    lock_files = [f for f in _metric_files(cm) if f.endswith(".lock") and f != "compact.lock"]
    assert len(lock_files) == 2  # the API process's and the worker's (not folded yet)


def test_counts_that_cannot_be_written_are_kept_until_they_can(tmp_path: Path) -> None:
    """A metrics directory that cannot take a file (here a directory stands where the counter
    file goes): the counts stay in memory, the scrape still answers, and they are written
    once the file can be made."""
    from cmhost.observability.files import Counter, MetricFiles

    files = MetricFiles(tmp_path / "metrics")
    try:
        counter = Counter(files, "cmhost_test", "A test counter.", ["kind"])
        blocker = tmp_path / "metrics" / f"counter_{files.process}.db"
        blocker.mkdir()
        counter.inc("a")
        counter.inc("a", amount=2)
        assert not [m for m in files.collect() if m.name == "cmhost_test"]
        blocker.rmdir()
        (found,) = [m for m in files.collect() if m.name == "cmhost_test"]
        assert [(s.name, s.labels, s.value) for s in found.samples] == [
            ("cmhost_test_total", {"kind": "a"}, 3.0)]
    finally:
        files.close()
