"""The counted metric families of a process, and the hooks that move them (requests, job steps,
health checks, engine restarts, credentials made in a request)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from cmhost.observability.files import Count, Counter, Histogram, MetricFiles, Slot

if TYPE_CHECKING:
    from cmhost.api.protocol import RequestRecord
    from cmhost.workflows.worker import StepRecord

# Seconds; DescribeServers answers in ~0.2 ms on SQLite, a CreateServer takes tens of ms.
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)
# A step is a few ms to minutes (a puppetserver start); a job, from enqueued to finished,
# lasts from nothing to hours (ready checks of a slow engine, a failing step's backoff).
STEP_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
JOB_BUCKETS = (0.1, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0,
               43200.0, 86400.0)
# The answers that refuse who the caller is (or what it may do).
DENIED = frozenset({"AccessDeniedException", "MissingAuthenticationTokenException",
                    "IncompleteSignatureException", "UnrecognizedClientException",
                    "InvalidSignatureException"})
THROTTLED = "ThrottlingException"
UNKNOWN = "unknown"  # the operation of a request refused before it was named
JOB_OUTCOMES = ("done", "failed")


class Metrics:
    """This process's counters and histograms (in its metric files)."""

    def __init__(self, files: MetricFiles, job_kinds: Iterable[str] = ()) -> None:
        self.files = files
        self.requests = Counter(
            files, "cmhost_requests",
            "API requests answered, by operation and outcome (ok, or the error code).",
            ["operation", "outcome"])
        self.request_duration = Histogram(
            files, "cmhost_request_duration_seconds",
            "Time from a request's arrival to its answer, by operation.", ["operation"],
            REQUEST_BUCKETS)
        self.throttled = Counter(
            files, "cmhost_requests_throttled",
            "API requests refused with ThrottlingException, by operation.", ["operation"])
        self.denied = Counter(
            files, "cmhost_requests_denied",
            "API requests refused for their credentials or signature, by error code.",
            ["reason"])
        self.job_steps = Counter(
            files, "cmhost_job_steps",
            "Job steps run, by job kind and outcome (next: the job goes on; done; failed: the "
            "step ended the job as failed; retry: it raised and runs again; gave_up: it raised "
            "too often; lease_lost: another worker took the job over).", ["kind", "outcome"])
        self.job_step_duration = Histogram(
            files, "cmhost_job_step_duration_seconds",
            "Time a worker spent running one job step, by job kind.", ["kind"], STEP_BUCKETS)
        self.jobs = Counter(
            files, "cmhost_jobs",
            "Jobs finished, by kind and outcome (done or failed).", ["kind", "outcome"])
        self.job_duration = Histogram(
            files, "cmhost_job_duration_seconds",
            "Time from a job's enqueueing to its end, on the service clock, by kind.",
            ["kind"], JOB_BUCKETS)
        self.health_checks = Counter(
            files, "cmhost_health_checks",
            "Engine health checks, by engine, driver and result (a server status, or error).",
            ["engine", "driver", "result"])
        self.engine_restarts = Counter(
            files, "cmhost_engine_restarts",
            "Engine processes found dead and restarted by their supervisor, by engine, driver "
            "and process (engine, or the side process: code-manager, puppetdb...).",
            ["engine", "driver", "process"])
        self.pool_misses = Counter(
            files, "cmhost_credential_pool_misses",
            "Credentials a request made itself because the credential pool had none, by kind.",
            ["kind"])
        self.jobs.declare(*((kind, outcome) for kind in job_kinds for outcome in JOB_OUTCOMES))
        # (operation, error code, answered) -> the counts of such a request, the timing's
        # slots: bounded by the operations and error codes there are.
        self._per_request: dict[tuple[str | None, str | None, bool],
                                tuple[tuple[Count, ...], tuple[list[Slot], Slot]]] = {}

    # --- hooks --------------------------------------------------------------------------

    def request_finished(self, record: RequestRecord) -> None:
        """An OperationHooks `after` hook. Per request: two dictionary lookups and one
        MetricFiles.add (about a microsecond and a half)."""
        key = (record.operation, record.error_code, record.status != 0)
        found = self._per_request.get(key)
        if found is None:
            found = self._per_request[key] = self._request_slots(*key)
        counted, timed = found
        self.files.add((*counted, *self.request_duration.counts(record.duration, timed)))

    def _request_slots(self, operation: str | None, code: str | None, answered: bool
                       ) -> tuple[tuple[Count, ...], tuple[list[Slot], Slot]]:
        operation = operation or UNKNOWN
        outcome = code or ("ok" if answered else "client_gone")
        counted = [(self.requests.slot(operation, outcome), 1.0)]
        if code == THROTTLED:
            counted.append((self.throttled.slot(operation), 1.0))
        elif code in DENIED:
            counted.append((self.denied.slot(code), 1.0))
        return tuple(counted), self.request_duration.slots(operation)

    def job_step(self, record: StepRecord) -> None:
        """A worker watcher: each step's outcome; a finished job's outcome and duration."""
        kind = record.job.kind
        self.job_steps.inc(kind, record.outcome)
        self.job_step_duration.observe(record.duration, kind)
        if record.finished is not None:
            self.jobs.inc(kind, record.finished)
            if record.age is not None:
                self.job_duration.observe(max(0.0, record.age), kind)

    def health_checked(self, engine: str, driver: str, result: str) -> None:
        self.health_checks.inc(engine, driver, result)

    def engine_restarted(self, engine: str, driver: str, process: str) -> None:
        self.engine_restarts.inc(engine, driver, process)

    def credential_made_in_request(self, kind: str) -> None:
        self.pool_misses.inc(kind)
