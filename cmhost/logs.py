"""How a cmhost process writes its log: the level and the format (--log-level, --log-format).

Text (the default) is one line per record, `time level logger: message`. JSON is one object
per line with `time` (RFC 3339, UTC), `level`, `logger`, `message`, `pid`, `exception` when
there is one, the fields of the job being run (`job_id`, `job_kind`, `server_id`, `attempt`,
`step`) on every line logged while a worker runs a job step, and the fields a line carries
itself (an access line: `request_id`, `account`, `region`, `operation`, `status`,
`error_code`, `duration`).

Access lines. Each API request is told by one line of the `cmhost.access` logger and each job
step by one of `cmhost.jobs`: at INFO in JSON (logs shipped as JSON are read by machines,
which filter), at DEBUG in text, which keeps its lines for people and its INFO output as it
always was. Neither ever holds a request's parameters or answer: nothing secret goes through
them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from cmhost.config import Settings

if TYPE_CHECKING:
    from cmhost.api.protocol import RequestRecord
    from cmhost.workflows.worker import StepRecord

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The fields of the job step this context runs (set by the worker around each step).
_JOB_FIELDS: ContextVar[dict[str, Any] | None] = ContextVar("cmhost_job_fields", default=None)


@contextmanager
def job_fields(**fields: Any) -> Iterator[None]:
    """Every line logged inside the block (in this thread) carries `fields` in JSON."""
    token = _JOB_FIELDS.set(fields)
    try:
        yield
    finally:
        _JOB_FIELDS.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _rfc3339(record.created), "level": record.levelname.lower(),
            "logger": record.name, "message": record.getMessage(), "pid": record.process}
        job = _JOB_FIELDS.get()
        if job:
            out.update(job)
        own = getattr(record, "fields", None)
        if isinstance(own, dict):
            out.update(own)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def _rfc3339(created: float) -> str:
    seconds = int(created)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            + f".{int((created - seconds) * 1000):03d}Z")


def configure_logging(settings: Settings) -> None:
    """Log lines to standard error at the settings' level, as text or JSON."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if settings.log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])


class AccessLog:
    """One line per API request (an OperationHooks `after` hook) and per job step (a worker
    watcher), at INFO in JSON and DEBUG in text."""

    def __init__(self, log_format: str) -> None:
        self.level = logging.INFO if log_format == "json" else logging.DEBUG
        self.requests = logging.getLogger("cmhost.access")
        self.jobs = logging.getLogger("cmhost.jobs")

    def request_finished(self, record: RequestRecord) -> None:
        if not self.requests.isEnabledFor(self.level):
            return  # the common case in text: nothing to build
        fields = {"request_id": record.request_id, "account": record.account,
                  "region": record.region, "operation": record.operation,
                  "status": record.status, "error_code": record.error_code,
                  "duration": round(record.duration, 6)}
        self.requests.log(self.level, "%s %s%s in %.1f ms (request %s, account %s)",
                          record.operation or "-", record.status,
                          f" {record.error_code}" if record.error_code else "",
                          record.duration * 1000, record.request_id, record.account or "-",
                          extra={"fields": fields})

    def job_step(self, record: StepRecord) -> None:
        if not self.jobs.isEnabledFor(self.level):
            return
        job = record.job
        fields: dict[str, Any] = {
            "job_id": job.id, "job_kind": job.kind, "server_id": job.server_id,
            "attempt": job.attempts, "step": job.step, "outcome": record.outcome,
            "duration": round(record.duration, 6)}
        if record.finished is not None and record.age is not None:
            fields["job_duration"] = round(record.age, 3)
        if record.error is not None:
            fields["error"] = record.error  # the message callers see in events, no more
        self.jobs.log(self.level, "job %s (%s) step %s: %s in %.1f ms", job.id, job.kind,
                      job.step, record.outcome, record.duration * 1000,
                      extra={"fields": fields})
