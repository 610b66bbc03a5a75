"""The steps of node association requests and of engine attribute updates."""

from __future__ import annotations

from sqlalchemy import Connection

from cmhost.engines.base import EngineError
from cmhost.messages import caller_message, without_paths
from cmhost.service import events, states
from cmhost.service.job_base import ServerJob
from cmhost.service.nodes import FAILED, IN_PROGRESS, SUCCESS
from cmhost.service.step_logs import StepLog, node_log_name, step_log_key, write_log
from cmhost.storage import repo
from cmhost.storage.repo import Row
from cmhost.workflows.jobs import Effects, Job, Outcome, finish, goto

# While the server is busy (backup, maintenance, ...) a node request waits this long.
BUSY_RETRY_SECONDS = 10.0


class NodeJob(ServerJob):
    """Associate or disassociate one node; the request's status tells the caller."""

    def run(self, job: Job) -> Outcome:
        token = str(job.payload["token"])
        with self.rt.db.read() as conn:
            request = repo.get_node_association(conn, token)
        if request is None or request["status"] != IN_PROGRESS:
            return finish()
        now = self.rt.clock.now()
        row = self.server(job)
        if row is None or row["status"] in (states.DELETING, states.FAILED, states.TERMINATED):
            return finish(self._result(request, row, now, error="the server is not available"))
        if row["status"] != states.HEALTHY:
            # Under maintenance, backing up, ...: the request stays pending, as on AWS.
            return goto("start", at=now + BUSY_RETRY_SECONDS)
        driver, spec = self.driver(row), self.spec(row)
        node = request["node_name"]
        attributes = dict(request["attributes"] or {})
        try:
            if request["action"] == "associate":
                result = driver.associate_node(spec, self.material(row), node, attributes)
            else:
                if "known" not in job.payload:
                    # Decided once and recorded before the engine changes anything: a retry
                    # after a crash mid-removal must not find the node gone and report it
                    # was never there.
                    known = node in driver.node_names(spec)
                    return goto(job.step, payload={**job.payload, "known": known})
                if not job.payload["known"]:
                    return finish(self._result(request, row, now, error=(
                        f"Node {node} is not associated with server {row['name']}.")))
                driver.disassociate_node(spec, self.material(row), node, attributes)
                result = []
        except EngineError as exc:
            return finish(self._result(request, row, now, error=caller_message(exc)))
        return finish(self._result(request, row, now, result=result))

    def _result(self, request: Row, row: Row | None, now: float, *,
                result: list[tuple[str, str]] | None = None, error: str | None = None
                ) -> Effects:
        action = request["action"]
        key = self._failure_log(request, row, now, error)

        def effects(conn: Connection) -> None:
            status = FAILED if error is not None else SUCCESS
            repo.update_node_association(conn, request["token"], status=status,
                                         result=[list(a) for a in result or []], error=error,
                                         updated_at=now)
            if row is not None:
                text = (f"Node {request['node_name']} {action}d." if error is None
                        else f"Node {request['node_name']}: {action} failed: {error}")
                events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                              message=text, log_key=key)
        return effects

    def _failure_log(self, request: Row, row: Row | None, now: float, error: str | None
                     ) -> str | None:
        """The log of a request that failed on a server that could take it; None for a
        success, or a server going away (nothing was tried: the log would go with it)."""
        if error is None or row is None or row["status"] in (
                states.DELETING, states.FAILED, states.TERMINATED):
            return None
        names = ", ".join(str(a) for a in sorted(dict(request["attributes"] or {}))) or "none"
        log = StepLog().add(request["created_at"], (
            f"{request['action']} node {request['node_name']} with server {row['name']} "
            f"requested (engine attributes: {names})"))
        log.add(now, f"worked by the {self.driver(row).name} driver on {row['engine']} "
                     f"{row['engine_version']}")
        log.add(now, f"{request['action']} failed: {without_paths(error)}")
        return write_log(self.rt.blobs, step_log_key(row, node_log_name(request["token"])), log)

    def give_up(self, job: Job, error: str) -> Effects | None:
        with self.rt.db.read() as conn:
            request = repo.get_node_association(conn, str(job.payload["token"]))
        if request is None:
            return None
        return self._result(request, self.server(job), self.rt.clock.now(), error=error)


class ModifyJob(ServerJob):
    """MODIFYING: the engine takes its new credentials, then the server is back."""

    def run(self, job: Job) -> Outcome:
        row = self.server(job)
        if row is None or row["status"] != states.MODIFYING:
            return finish()
        now = self.rt.clock.now()
        driver, spec, material = self.driver(row), self.spec(row), self.material(row)
        driver.provision(spec, material)
        health = driver.check_health(spec, material)
        attribute = job.payload.get("attribute")

        def done(conn: Connection) -> None:
            if repo.transition_server(conn, row["id"], [states.MODIFYING], status=health.status,
                                      status_reason=health.reason or None, updated_at=now):
                events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                              message=f"Engine attribute {attribute} updated.")
        return finish(done)

    def give_up(self, job: Job, error: str) -> Effects | None:
        row = self.server(job)
        if row is None:
            return None
        now = self.rt.clock.now()
        back = str(job.payload.get("return_status") or states.HEALTHY)

        def effects(conn: Connection) -> None:
            if repo.transition_server(conn, row["id"], [states.MODIFYING], status=back,
                                      status_reason=f"Engine attribute update failed: {error}",
                                      updated_at=now):
                events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                              message=f"Engine attribute update failed: {error}")
        return effects
