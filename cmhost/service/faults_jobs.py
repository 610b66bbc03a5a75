"""fail_job faults: the next job of a kind ends FAILED with the StatusReason the fault gives.

Each job handler is wrapped: before a job's first step runs, an armed fault for that job (and
for its server's account and name) makes the job fail for good, through the handler's own way
of failing (what `give_up` leaves after the last retry), so the server, backup or node
association ends as a real failure would leave it. A creation ends FAILED with the reason
itself as its StatusReason; the others word it as their own failures do ("Restore from
backup X failed: <reason>", "Maintenance failed: <reason>", a backup's StatusDescription
and a node association's error are the reason itself)."""

from __future__ import annotations

from collections.abc import Mapping

from cmhost.service.faults import Faults
from cmhost.service.jobs import CreateServerJob
from cmhost.service.runtime import Runtime
from cmhost.storage import repo
from cmhost.workflows.jobs import Effects, Job, JobHandler, Outcome

# The fault's job names, by the job kinds of the queue ("node" is two: see _names).
_NAMES = {"create_server": ("create_server",), "delete_server": ("delete_server",),
          "backup": ("backup",), "restore": ("restore",), "maintenance": ("maintenance",),
          "modify": ("update_engine_attributes",),
          "node": ("associate_node", "disassociate_node")}


def _first_step(job: Job) -> bool:
    """Whether the job is at its first step, before it changed anything (a maintenance's
    "start" runs twice: the second one has its backup row; a disassociation's "start" runs
    again once it knows whether the node was there)."""
    if job.step != "start":
        return False
    if job.kind == "maintenance":
        return "backup_id" not in job.payload
    if job.kind == "node":
        return "known" not in job.payload
    return True


class _FailingJob:
    def __init__(self, handler: JobHandler, faults: Faults, rt: Runtime) -> None:
        self.handler = handler
        self.faults = faults
        self.rt = rt

    def run(self, job: Job) -> Outcome:
        names = _NAMES.get(job.kind, ())
        if _first_step(job) and any(self.faults.wants_job(name) for name in names):
            name, account, server_name = self._target(job)
            fault = self.faults.fire_job(name, account, server_name) if name else None
            if fault is not None:
                reason = str(fault.settings["status_reason"])
                return Outcome(failed=True, effects=self._fail(job, reason, fault.id))
        return self.handler.run(job)

    def _target(self, job: Job) -> tuple[str | None, str | None, str | None]:
        """The fault name of the job, and its server's account and name."""
        with self.rt.db.read() as conn:
            row = repo.get_server_by_id(conn, job.server_id) if job.server_id else None
            name: str | None = _NAMES[job.kind][0]
            if job.kind == "node":
                request = repo.get_node_association(conn, str(job.payload.get("token")))
                name = None if request is None else f"{request['action']}_node"
        if row is None:
            return name, None, None
        return name, row["account"], row["name"]

    def _fail(self, job: Job, reason: str, fault_id: str) -> Effects | None:
        if isinstance(self.handler, CreateServerJob):
            return self.handler.fail(job, reason, f"failed by {fault_id}, armed through "
                                                  "/_cmhost/faults")
        return self.handler.give_up(job, reason)

    def give_up(self, job: Job, error: str) -> Effects | None:
        return self.handler.give_up(job, error)


def failing_jobs(faults: Faults, rt: Runtime, handlers: Mapping[str, JobHandler]
                 ) -> dict[str, JobHandler]:
    """`handlers`, those of jobs a fault may fail wrapped so that an armed fault fails them."""
    return {kind: _FailingJob(handler, faults, rt) if kind in _NAMES else handler
            for kind, handler in handlers.items()}
