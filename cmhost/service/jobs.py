"""The steps of CreateServer and DeleteServer, run by the workflow worker."""

from __future__ import annotations

from sqlalchemy import Connection

from cmhost.engines.base import EngineError, EngineMaterial
from cmhost.messages import caller_message, without_paths
from cmhost.service import backups, events, states
from cmhost.service.artifacts import ArtifactError, load_artifact
from cmhost.service.backup_jobs import (
    BackupJob,
    DeleteBackupJob,
    MaintenanceJob,
    RestoreJob,
    restore_revocations,
)
from cmhost.service.job_base import READY_SECONDS, ServerJob, chain
from cmhost.service.node_jobs import ModifyJob, NodeJob
from cmhost.service.runtime import Runtime
from cmhost.service.step_logs import (
    StepLog,
    delete_logs,
    owned_by_events,
    step_log_key,
    write_log,
)
from cmhost.storage import repo
from cmhost.storage.repo import Row
from cmhost.workflows.jobs import Effects, Job, JobHandler, Outcome, finish, goto


class CreateServerJob(ServerJob):
    """CREATING: provision (or restore from a backup), wait out provisioning, check health."""

    def run(self, job: Job) -> Outcome:
        row = self.server(job)
        if row is None or row["status"] != states.CREATING:
            return finish()  # deleted or already settled: nothing left to do
        rt = self.rt
        now = rt.clock.now()
        if job.step == "start":
            backup_id = job.payload.get("backup_id")
            if backup_id:
                return self._from_backup(row, str(backup_id), now)
            spec, driver = self.spec(row), self.driver(row)
            material = self.material(row)
            driver.provision(spec, material)
            provisioned = self.event(row, f"Engine provisioned by the {driver.name} driver; "
                                          f"waiting for its health check.", now)
            ready_at = row["created_at"] + rt.settings.provisioning_seconds
            if ready_at > now:
                return goto("ready", at=ready_at, effects=provisioned)
            # The provisioning time is over already: check its health now, not after a
            # trip through the queue (a claim, a read and a record saved per server).
            return self._check_ready(job, row, material, now, first=provisioned)
        if job.step == "ready":
            return self._check_ready(job, row, self.material(row), now)
        raise ValueError(f"unknown step {job.step!r}")

    def _check_ready(self, job: Job, row: Row, material: EngineMaterial, now: float, *,
                     first: Effects | None = None) -> Outcome:
        """HEALTHY when the engine says so; otherwise ask again later, until the deadline.
        `first` are effects of the same step that come before the outcome's."""
        deadline = row["created_at"] + self.rt.settings.provisioning_seconds + READY_SECONDS
        check = self.check_ready(job, row, now, deadline, material=material)
        health = check.health
        if health.status == states.HEALTHY:
            def online(conn: Connection) -> None:
                if repo.transition_server(conn, row["id"], [states.CREATING],
                                          status=states.HEALTHY, status_reason=None,
                                          updated_at=now):
                    events.record(conn, server_id=row["id"], server_name=row["name"],
                                  at=now, message=f"Server {row['name']} is online "
                                                  f"and HEALTHY.")
            return finish(chain(first, online))
        if check.next_at is not None:
            return check.again(chain(first, self.event(
                row, f"Engine not ready yet: {health.reason}", now)))
        return finish(chain(first, self._failed(
            row, f"The engine did not become healthy: {health.reason}", now,
            done=[(now, f"{check.checks} health checks since provisioning; the last said: "
                        + health.reason)])))

    def _from_backup(self, row: Row, backup_id: str, now: float) -> Outcome:
        with self.rt.db.read() as conn:
            backup = repo.get_backup_by_id(conn, backup_id)
        if backup is None:
            return finish(self._failed(row, f"Backup {backup_id} no longer exists.", now,
                                       backup_id=backup_id))
        try:
            artifact = load_artifact(self.rt.blobs, self.rt.box, backup)
            material = self.driver(row).restore(self.spec(row), artifact)
        except (ArtifactError, EngineError) as exc:
            return finish(self._failed(row, f"Creating from backup {backup_id} failed: "
                                            f"{caller_message(exc)}",
                                       now, backup_id=backup_id))
        values = self.material_values(row, material)
        # The backup's CA may have issued certificates since (to its own server's nodes).
        revoked = restore_revocations(self.driver(row), row["id"])

        def restored(conn: Connection) -> None:
            repo.update_server(conn, row["id"], updated_at=now, **values)
            events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                          message=f"Engine restored from backup {backup_id}.")
            if revoked:
                events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                              message=revoked)
        return goto("ready", at=row["created_at"] + self.rt.settings.provisioning_seconds,
                    effects=restored)

    def _failed(self, row: Row, reason: str, at: float, *, backup_id: str | None = None,
                done: list[tuple[float, str]] | None = None) -> Effects:
        """FAILED, with the creation's log: what was asked, what was done, and why it
        failed (a server is created once: one log per server)."""
        key = step_log_key(row, "creation")
        log = StepLog().add(row["created_at"], (
            f"creation of server {row['name']} started: {row['engine']} "
            f"{row['engine_version']}, {row['driver']} engine"
            + (f", from backup {backup_id}" if backup_id else "")))
        if row["status"] == states.CREATING:  # a settled server keeps what it has
            for moment, text in done or []:
                log.add(moment, text)
            write_log(self.rt.blobs, key, log.add(
                at, f"creation failed: {without_paths(reason)}; the server is FAILED"))

        def effects(conn: Connection) -> None:
            if repo.transition_server(conn, row["id"], [states.CREATING], status=states.FAILED,
                                      status_reason=reason, updated_at=at):
                events.record(conn, server_id=row["id"], server_name=row["name"], at=at,
                              message=f"Server creation failed: {reason}", log_key=key)
        return effects

    def fail(self, job: Job, reason: str, note: str) -> Effects | None:
        """FAILED at once, `reason` its StatusReason as given (a fault armed for it); `note`
        says why in the creation's log."""
        row = self.server(job)
        if row is None:
            return None
        now = self.rt.clock.now()
        return self._failed(row, reason, now, backup_id=job.payload.get("backup_id"),
                            done=[(now, note)])

    def give_up(self, job: Job, error: str) -> Effects | None:
        row = self.server(job)
        if row is None:
            return None
        now = self.rt.clock.now()
        return self._failed(row, f"Provisioning failed: {error}", now,
                            backup_id=job.payload.get("backup_id"),
                            done=[(now, f"step {job.step} failed {job.attempts} times")])


class DeleteServerJob(ServerJob):
    """DELETING: stop and remove the engine, then the server, its events, tags, automated
    backups and node requests. Manual backups stay."""

    def run(self, job: Job) -> Outcome:
        row = self.server(job)
        if row is None or row["status"] != states.DELETING:
            return finish()
        rt = self.rt
        now = rt.clock.now()
        if job.step == "start":
            self.driver(row).destroy(self.spec(row))
            return goto("remove", at=now + rt.settings.deletion_seconds,
                        effects=self.event(row, "Engine stopped and its data removed.", now))
        if job.step == "remove":
            # The logs of its steps go with the server (a backup's log stays with the
            # backup): whoever cannot describe the server any more cannot read them. Blobs
            # first, then the rows: a crash in between leaves no log without an event.
            with rt.db.read() as conn:
                keys = repo.event_log_keys(conn, row["id"])
            delete_logs(rt.blobs, [key for key in keys if owned_by_events(key, row["id"])])

            def remove(conn: Connection) -> None:
                current = repo.get_server_by_id(conn, row["id"])
                if current is None or current["status"] != states.DELETING:
                    return
                for backup in repo.server_backups(conn, row["id"], backups.AUTOMATED):
                    if backup["status"] != "DELETING":
                        backups.mark_for_deletion(rt, conn, backup, now)
                repo.delete_events(conn, row["id"])
                repo.delete_tags(conn, row["arn"])
                repo.delete_node_associations(conn, row["id"])
                repo.delete_schedule_fires(conn, row["id"])
                repo.delete_server(conn, row["id"])
            return finish(remove)
        raise ValueError(f"unknown step {job.step!r}")

    def give_up(self, job: Job, error: str) -> Effects | None:
        row = self.server(job)
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
    return {
        "create_server": CreateServerJob(rt), "delete_server": DeleteServerJob(rt),
        "backup": BackupJob(rt), "delete_backup": DeleteBackupJob(rt),
        "restore": RestoreJob(rt), "maintenance": MaintenanceJob(rt),
        "node": NodeJob(rt), "modify": ModifyJob(rt),
    }

