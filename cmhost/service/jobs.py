"""The steps of each asynchronous operation, run by the workflow worker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from cmhost.engines.base import EngineDriver
from cmhost.service import events, states
from cmhost.service.records import server_material, server_spec
from cmhost.service.runtime import Runtime
from cmhost.storage import repo
from cmhost.workflows.jobs import Effects, Job, JobHandler, Outcome, finish, goto

# How many times CreateServer asks the engine for its health before giving up.
READY_CHECKS = 5


class _ServerJob:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def _row(self, job: Job) -> Mapping[str, Any] | None:
        assert job.server_id is not None
        with self.rt.db.read() as conn:
            return repo.get_server_by_id(conn, job.server_id)

    def _driver(self, row: Mapping[str, Any]) -> EngineDriver:
        spec = server_spec(row, self.rt.settings.resolved_public_url)
        return self.rt.drivers.for_server(spec.family, row["driver"])

    def _event(self, row: Mapping[str, Any], message: str, at: float) -> Effects:
        def effects(conn: Connection) -> None:
            events.record(conn, server_id=row["id"], server_name=row["name"], at=at,
                          message=message)
        return effects


class CreateServerJob(_ServerJob):
    """CREATING: provision the engine, wait out the provisioning time, check health."""

    def run(self, job: Job) -> Outcome:
        row = self._row(job)
        if row is None or row["status"] != states.CREATING:
            return finish()  # deleted or already settled: nothing left to do
        rt = self.rt
        spec = server_spec(row, rt.settings.resolved_public_url)
        driver = self._driver(row)
        now = rt.clock.now()
        if job.step == "start":
            driver.provision(spec, server_material(row, rt.box))
            ready_at = row["created_at"] + rt.settings.provisioning_seconds
            return goto("ready", at=ready_at, effects=self._event(
                row, f"Engine provisioned by the {driver.name} driver; waiting for it to "
                     f"answer its health check.", now))
        if job.step == "ready":
            health = driver.check_health(spec, server_material(row, rt.box))
            if health.status == states.HEALTHY:
                def online(conn: Connection) -> None:
                    if repo.transition_server(conn, row["id"], [states.CREATING],
                                              status=states.HEALTHY, status_reason=None,
                                              updated_at=now):
                        events.record(conn, server_id=row["id"], server_name=row["name"],
                                      at=now, message=f"Server {row['name']} is online "
                                                      f"and HEALTHY.")
                return finish(online)
            checks = int(job.payload.get("checks", 0)) + 1
            if checks < READY_CHECKS:
                return goto("ready", at=now + 2.0 ** checks, payload={"checks": checks},
                            effects=self._event(row, f"Engine not ready yet: {health.reason}",
                                                now))
            return finish(self._failed(row, f"The engine did not become healthy: "
                                            f"{health.reason}", now))
        raise ValueError(f"unknown step {job.step!r}")

    def _failed(self, row: Mapping[str, Any], reason: str, at: float) -> Effects:
        def effects(conn: Connection) -> None:
            if repo.transition_server(conn, row["id"], [states.CREATING], status=states.FAILED,
                                      status_reason=reason, updated_at=at):
                events.record(conn, server_id=row["id"], server_name=row["name"], at=at,
                              message=f"Server creation failed: {reason}")
        return effects

    def give_up(self, job: Job, error: str) -> Effects | None:
        row = self._row(job)
        if row is None:
            return None
        return self._failed(row, f"Provisioning failed: {error}", self.rt.clock.now())


class DeleteServerJob(_ServerJob):
    """DELETING: stop and remove the engine, then the server, its events and tags."""

    def run(self, job: Job) -> Outcome:
        row = self._row(job)
        if row is None or row["status"] != states.DELETING:
            return finish()
        rt = self.rt
        now = rt.clock.now()
        if job.step == "start":
            driver = self._driver(row)
            driver.destroy(server_spec(row, rt.settings.resolved_public_url))
            return goto("remove", at=now + rt.settings.deletion_seconds,
                        effects=self._event(row, "Engine stopped and its data removed.", now))
        if job.step == "remove":
            def remove(conn: Connection) -> None:
                current = repo.get_server_by_id(conn, row["id"])
                if current is None or current["status"] != states.DELETING:
                    return
                repo.delete_events(conn, row["id"])
                repo.delete_tags(conn, row["arn"])
                repo.delete_server(conn, row["id"])
            return finish(remove)
        raise ValueError(f"unknown step {job.step!r}")

    def give_up(self, job: Job, error: str) -> Effects | None:
        row = self._row(job)
        if row is None:
            return None
        now = self.rt.clock.now()

        def effects(conn: Connection) -> None:
            if repo.transition_server(conn, row["id"], [states.DELETING], status=states.FAILED,
                                      status_reason=f"Deletion failed: {error}", updated_at=now):
                events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                              message=f"Server deletion failed: {error}")
        return effects


def job_handlers(rt: Runtime) -> dict[str, JobHandler]:
    return {"create_server": CreateServerJob(rt), "delete_server": DeleteServerJob(rt)}
