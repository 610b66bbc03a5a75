"""The steps of backups, backup deletion, restore and maintenance."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from cmhost.engines.base import (
    EngineDriver,
    EngineError,
    EngineMaterial,
    Health,
    HealthStatus,
)
from cmhost.engines.issuance import revoked_note
from cmhost.messages import caller_message, without_paths
from cmhost.service import backups, events, states
from cmhost.service.artifacts import (
    ArtifactError,
    load_artifact,
    log_key,
    store_artifact,
)
from cmhost.service.engine_options import full_version
from cmhost.service.job_base import READY_SECONDS, ServerJob, chain, next_check
from cmhost.service.step_logs import StepLog, new_log_name, step_log_key, write_log
from cmhost.storage import repo
from cmhost.storage.repo import Row
from cmhost.workflows.jobs import Effects, Job, Outcome, finish, goto


def _ready_deadline(job: Job, now: float) -> float:
    """Until when a restored or maintained engine is given to answer HEALTHY."""
    return float(job.payload.get("ready_since") or now) + READY_SECONDS


def _not_ready(job: Job, error: str) -> Health:
    """The engine's health when its health checks failed for good in the "ready" step: the
    last it reported, with why cmhost stopped asking."""
    status: HealthStatus = ("CONNECTION_LOST" if job.payload.get("health") == "CONNECTION_LOST"
                            else "UNHEALTHY")
    return Health(status, f"The engine did not become ready: {error}")


class _ResumedLog(StepLog):
    """A step's log carried across the steps of one job (as its text, in the payload)."""

    @classmethod
    def of(cls, text: str) -> StepLog:
        log = cls()
        log._lines = [line for line in text.splitlines() if line]
        return log


def restore_revocations(driver: EngineDriver, server_id: str) -> str:
    """The event text for what the driver's last restore of the server revoked ("" if
    nothing)."""
    return revoked_note(driver.take_restore_revocations(server_id))


def _backup_started(backup: Row) -> StepLog:
    """A backup's log, its first line written: what it is of."""
    settings = backup["settings"] or {}
    engine = str(settings.get("Engine"))
    version = full_version(engine, str(settings.get("EngineVersion")))
    return StepLog().add(backup["created_at"], (
        f"backup {backup['id']} of server {backup['server_name']} ({engine} {version}, "
        f"{backup['backup_type']}) started"))


class _BackupTaker(ServerJob):
    def take(self, row: Row, backup: Row, now: float
             ) -> dict[str, Any]:
        """Archive the engine into the blob store and write the backup's log; returns the
        column values that mark the backup OK."""
        rt = self.rt
        log = _backup_started(backup)
        artifact = self.driver(row).backup(self.spec(row), self.material(row))
        log.add(rt.clock.now(), f"engine state archived by the {self.driver(row).name} "
                                f"driver: {len(artifact)} bytes")
        key, digest, size = store_artifact(rt.blobs, rt.box, backup, artifact)
        log.add(rt.clock.now(), f"stored encrypted as {key}: {size} bytes, sha256 {digest}")
        log.add(rt.clock.now(), f"backup {backup['id']} completed: OK")
        write_log(rt.blobs, log_key(backup), log)
        return {"status": "OK", "artifact_key": key, "artifact_sha256": digest,
                "artifact_size": size, "status_description": None}

    def backup_row(self, backup_id: str) -> Row | None:
        with self.rt.db.read() as conn:
            return repo.get_backup_by_id(conn, backup_id)


class BackupJob(_BackupTaker):
    """BACKING_UP: archive the engine, mark the backup OK, apply retention."""

    def run(self, job: Job) -> Outcome:
        row = self.server(job)
        backup = self.backup_row(str(job.payload["backup_id"]))
        if backup is None or backup["status"] != "IN_PROGRESS":
            return finish()
        if row is None:
            return finish(self._fail_effects(None, backup, "The server no longer exists."))
        now = self.rt.clock.now()
        values = self.take(row, backup, now)
        return_status = str(job.payload.get("return_status") or states.HEALTHY)

        def done(conn: Connection) -> None:
            if not repo.transition_backup(conn, backup["id"], ["IN_PROGRESS"], **values):
                return
            repo.transition_server(conn, row["id"], [states.BACKING_UP], status=return_status,
                                   updated_at=now)
            events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                          message=f"Backup {backup['id']} completed.",
                          log_key=log_key(backup))
            if backup["backup_type"] == backups.AUTOMATED:
                current = repo.get_server_by_id(conn, row["id"])
                if current is not None:
                    backups.enforce_retention(self.rt, conn, current, now)
        return finish(done)

    def _fail_effects(self, row: Row | None, backup: Row,
                      reason: str, return_status: str = states.HEALTHY) -> Effects:
        now = self.rt.clock.now()
        if backup["status"] == "IN_PROGRESS":  # never over the log of a backup that is OK
            log = _backup_started(backup)
            write_log(self.rt.blobs, log_key(backup), log.add(
                now, f"backup {backup['id']} failed: {without_paths(reason)}"))

        def effects(conn: Connection) -> None:
            repo.transition_backup(conn, backup["id"], ["IN_PROGRESS"], status="FAILED",
                                   status_description=reason)
            if row is not None:
                repo.transition_server(conn, row["id"], [states.BACKING_UP],
                                       status=return_status, updated_at=now)
                events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                              message=f"Backup {backup['id']} failed: {reason}",
                              log_key=log_key(backup))
        return effects

    def give_up(self, job: Job, error: str) -> Effects | None:
        backup = self.backup_row(str(job.payload["backup_id"]))
        if backup is None:
            return None
        return self._fail_effects(self.server(job), backup, error,
                                  str(job.payload.get("return_status") or states.HEALTHY))


class DeleteBackupJob(ServerJob):
    """DELETING backup: remove the artifact and the log, then the row and its tags."""

    def run(self, job: Job) -> Outcome:
        backup_id = str(job.payload["backup_id"])
        with self.rt.db.read() as conn:
            backup = repo.get_backup_by_id(conn, backup_id)
        if backup is None or backup["status"] != "DELETING":
            return finish()
        if backup["artifact_key"]:
            self.rt.blobs.delete(backup["artifact_key"])
        self.rt.blobs.delete(log_key(backup))

        def remove(conn: Connection) -> None:
            repo.delete_tags(conn, backup["arn"])
            repo.delete_backup_row(conn, backup_id)
        return finish(remove)


class RestoreJob(ServerJob):
    """RESTORING: verify and decrypt the artifact, rebuild the engine from it. The server
    takes the backup's engine version (the engine's state is the backup's), and the step
    writes its log."""

    def run(self, job: Job) -> Outcome:
        row = self.server(job)
        if row is None or row["status"] != states.RESTORING:
            return finish()
        now = self.rt.clock.now()
        if job.step == "ready":
            return self._ready(job, row, now)
        backup_id = str(job.payload["backup_id"])
        return_status = str(job.payload.get("return_status") or states.HEALTHY)
        log = self._log(job, row, now)
        with self.rt.db.read() as conn:
            backup = repo.get_backup_by_id(conn, backup_id)
        driver = self.driver(row)
        try:
            if backup is None:
                raise ArtifactError(f"Backup {backup_id} no longer exists.")
            artifact = load_artifact(self.rt.blobs, self.rt.box, backup)
            log.add(self.rt.clock.now(), f"artifact of backup {backup_id} verified (sha256 "
                                         f"{backup['artifact_sha256']}) and decrypted: "
                                         f"{len(artifact)} bytes")
            material = driver.restore(self.spec(row), artifact)
        except (ArtifactError, EngineError) as exc:
            return finish(self._failed(job, row, backup_id, caller_message(exc),
                                       return_status, now, log))
        log.add(self.rt.clock.now(), f"engine state replaced from the backup by the "
                                     f"{driver.name} driver")
        revoked = restore_revocations(driver, row["id"])
        if revoked:
            log.add(self.rt.clock.now(), revoked)
        health = driver.check_health(self.spec(row), material)
        log.add(self.rt.clock.now(), f"health check: {health.status}"
                                     + (f" ({health.reason})" if health.reason else ""))
        values = self.material_values(row, material)
        version = full_version(row["engine"], str(backup["settings"].get("EngineVersion")
                                                  or row["engine_version"]))
        if version != row["engine_version"]:
            values["engine_version"] = version
            log.add(now, f"engine version {row['engine_version']} -> {version}, the backup's")
        overrides = {k: job.payload[p] for k, p in (("instance_type", "instance_type"),
                                                    ("key_pair", "key_pair"))
                     if job.payload.get(p)}
        for column, value in overrides.items():
            log.add(now, f"{column.replace('_', ' ')}: {value}")
        if health.status == states.HEALTHY:
            return finish(chain(self._revoked_event(row, revoked, now),
                                 self._settled(row, job, log, health, now, values, overrides)))
        # The engine restarts on the backup's state (a JVM takes a minute): the server stays
        # RESTORING, with its new identity stored, until it answers, as in CreateServer.

        def stored(conn: Connection) -> None:
            current = repo.get_server_by_id(conn, row["id"])
            if current is None or current["status"] != states.RESTORING:
                return
            repo.update_server(conn, row["id"], updated_at=now, **values, **overrides)
            events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                          message=f"Engine restored from backup {backup_id}; waiting for it "
                                  f"to be ready.")
        return goto("ready", at=next_check(now, 1, now + READY_SECONDS),
                    effects=chain(self._revoked_event(row, revoked, now), stored),
                    payload={**job.payload, "checks": 1, "ready_since": now,
                             "health": health.status, "log_text": log.encode().decode()})

    def _ready(self, job: Job, row: Row, now: float) -> Outcome:
        """Ask the restored engine for its health until it is HEALTHY or time is up."""
        check = self.check_ready(job, row, now, _ready_deadline(job, now))
        if check.next_at is not None:
            return check.again()
        log = _ResumedLog.of(str(job.payload.get("log_text") or ""))
        log.add(now, f"health check {check.checks}: {check.health.status}"
                     + (f" ({check.health.reason})" if check.health.reason else ""))
        return finish(self._settled(row, job, log, check.health, now, {}, {}))

    def _revoked_event(self, row: Row, revoked: str, now: float) -> Effects | None:
        return self.event(row, revoked, now) if revoked else None

    def _settled(self, row: Row, job: Job, log: StepLog, health: Health, now: float,
                 values: dict[str, Any], overrides: dict[str, Any]) -> Effects:
        """The restore's end: the server takes the engine's health (and `values`)."""
        backup_id = str(job.payload["backup_id"])
        log.add(now, f"restore from backup {backup_id} completed: the server is "
                     f"{health.status}")
        key = self._write(row, job, log)

        def restored(conn: Connection) -> None:
            if repo.transition_server(conn, row["id"], [states.RESTORING], status=health.status,
                                      status_reason=health.reason or None, updated_at=now,
                                      **values, **overrides):
                events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                              message=f"Server restored from backup {backup_id}; it is "
                                      f"{health.status}.", log_key=key)
        return restored

    def _log(self, job: Job, row: Row, now: float) -> StepLog:
        return StepLog().add(float(job.payload.get("started_at") or now), (
            f"restore of server {row['name']} ({row['engine']} {row['engine_version']}) from "
            f"backup {job.payload['backup_id']} started"))

    def _write(self, row: Row, job: Job, log: StepLog) -> str:
        # A job enqueued before logs were named in the payload gets a name now.
        name = str(job.payload.get("log") or new_log_name("restore", self.rt.clock.now()))
        return write_log(self.rt.blobs, step_log_key(row, name), log)

    def _failed(self, job: Job, row: Row, backup_id: str, reason: str, return_status: str,
                now: float, log: StepLog) -> Effects:
        # The engine is untouched (restore is all or nothing): the server goes back to
        # where it was, with the reason.
        log.add(now, f"restore from backup {backup_id} failed: {without_paths(reason)}; the "
                     f"server returns to {return_status}")
        key = self._write(row, job, log)

        def effects(conn: Connection) -> None:
            if repo.transition_server(conn, row["id"], [states.RESTORING], status=return_status,
                                      status_reason=f"Restore from backup {backup_id} failed: "
                                                    f"{reason}", updated_at=now):
                events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                              message=f"Restore from backup {backup_id} failed: {reason}",
                              log_key=key)
        return effects

    def give_up(self, job: Job, error: str) -> Effects | None:
        row = self.server(job)
        if row is None or row["status"] != states.RESTORING:
            return None
        now = self.rt.clock.now()
        if job.step == "ready":
            # The backup's state and identity are stored and the engine runs them: the
            # restore happened, only the engine's readiness is unknown (as at the deadline).
            health = _not_ready(job, error)
            log = _ResumedLog.of(str(job.payload.get("log_text") or ""))
            log.add(now, f"health checks stopped: {without_paths(health.reason)}")
            return chain(self.event(row, health.reason, now),
                         self._settled(row, job, log, health, now, {}, {}))
        return self._failed(job, row, str(job.payload["backup_id"]), error,
                            str(job.payload.get("return_status") or states.HEALTHY),
                            now, self._log(job, row, now))


class MaintenanceJob(_BackupTaker):
    """UNDER_MAINTENANCE: take a backup, rebuild the engine from it (upgrading if asked);
    on failure roll back to that backup. MaintenanceStatus says how it went, and the
    maintenance's log what was done."""

    def run(self, job: Job) -> Outcome:
        row = self.server(job)
        if row is None or row["status"] != states.UNDER_MAINTENANCE:
            return finish()
        now = self.rt.clock.now()
        backup_id = job.payload.get("backup_id")
        if job.step == "start":
            if backup_id is None:  # first the backup row, remembered in the payload
                def insert(conn: Connection) -> None:
                    # An automated backup: its Description stays empty, as the spec says.
                    new = backups.insert_backup(self.rt, conn, row,
                                                backup_type=backups.AUTOMATED, now=now)
                    repo.update_job_payload(conn, job.id, {**job.payload, "backup_id": new["id"]})
                return goto("start", effects=insert)
            taken = self.backup_row(str(backup_id))
            if taken is None:
                return finish(self._done(row, job, now, failed="the maintenance backup vanished"))
            if taken["status"] == "IN_PROGRESS":
                values = self.take(row, taken, now)
                taken_id = taken["id"]

                def stored(conn: Connection) -> None:
                    repo.transition_backup(conn, taken_id, ["IN_PROGRESS"], **values)
                    events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                                  message=f"Maintenance backup {taken_id} completed.",
                                  log_key=log_key(taken))
                return goto("rebuild", effects=stored,
                            payload={**job.payload, "backup_done_at": now})
            return goto("rebuild")
        if job.step == "rebuild":
            backup = self.backup_row(str(backup_id))
            revoked_event: Effects | None = None
            try:
                if backup is None:
                    raise ArtifactError("the maintenance backup vanished")
                artifact = load_artifact(self.rt.blobs, self.rt.box, backup)
                driver, spec = self.driver(row), self.spec(row)
                restored = driver.restore(spec, artifact)
                rebuilt_at = self.rt.clock.now()
                # Taken at once, so none is left behind if maintain fails (a restore of
                # the backup just taken revokes only what its CA issued since, if anything).
                revoked = restore_revocations(driver, row["id"])
                revoked_event = self.event(row, revoked, now) if revoked else None
                maintained = driver.maintain(
                    spec, restored, major_upgrade=bool(job.payload.get("major_upgrade")))
            except (ArtifactError, EngineError) as exc:
                failed = self._done(row, job, now, failed=caller_message(exc))
                return finish(failed if revoked_event is None else chain(revoked_event, failed))
            health = driver.check_health(spec, maintained.material)
            if health.status == states.HEALTHY:
                return finish(chain(revoked_event, self._done(
                    row, job, now, material=maintained.material,
                    version=maintained.engine_version, rebuilt_at=rebuilt_at)))
            # A real engine restarts (a JVM takes a minute): the server stays
            # UNDER_MAINTENANCE, its new identity stored, until the engine answers.
            values = self.material_values(row, maintained.material)

            def stored(conn: Connection) -> None:
                repo.update_server(conn, row["id"], updated_at=now, **values)
                events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                              message="Engine rebuilt by maintenance; waiting for it to be "
                                      "ready.")
            return goto("ready", at=next_check(now, 1, now + READY_SECONDS),
                        effects=chain(revoked_event, stored),
                        payload={**job.payload, "checks": 1, "ready_since": now,
                                 "health": health.status, "rebuilt_at": rebuilt_at,
                                 "version": maintained.engine_version})
        if job.step == "ready":
            check = self.check_ready(job, row, now, _ready_deadline(job, now))
            if check.next_at is not None:
                return check.again()
            version = job.payload.get("version")
            return finish(self._done(row, job, now, material=self.material(row),
                                     version=str(version) if version else None,
                                     rebuilt_at=float(job.payload.get("rebuilt_at") or now),
                                     health=check.health))
        raise ValueError(f"unknown step {job.step!r}")

    def _log(self, row: Row, job: Job, now: float, *, rebuilt_at: float | None,
             version: str | None, failed: str | None) -> str:
        """Write the maintenance's log; returns its key."""
        payload = job.payload
        upgrade = bool(payload.get("major_upgrade"))
        log = StepLog().add(float(payload.get("started_at") or now), (
            f"{'scheduled ' if payload.get('scheduled') else ''}maintenance of server "
            f"{row['name']} ({row['engine']} {row['engine_version']}) started"
            + (", with the Chef major upgrade" if upgrade else "")))
        if payload.get("backup_done_at") is not None:
            log.add(float(payload["backup_done_at"]),
                    f"backup {payload.get('backup_id')} taken (its log: the backup's S3LogUrl)")
        if rebuilt_at is not None:
            log.add(rebuilt_at, f"engine rebuilt from backup {payload.get('backup_id')} by the "
                                f"{self.driver(row).name} driver")
        if version:
            log.add(now, f"engine upgraded: {row['engine_version']} -> {version}")
        if failed is None:
            log.add(now, "maintenance completed: SUCCESS")
        else:
            log.add(now, f"maintenance failed: {without_paths(failed)}; MaintenanceStatus "
                         "FAILED")
        name = str(payload.get("log") or new_log_name("maintenance", now))
        return write_log(self.rt.blobs, step_log_key(row, name), log)

    def _done(self, row: Row, job: Job, now: float, *,
              material: EngineMaterial | None = None, version: str | None = None,
              failed: str | None = None, rebuilt_at: float | None = None,
              health: Health | None = None) -> Effects:
        """The maintenance's end; `health` is the engine's when it was not HEALTHY in time
        (the server then takes it)."""
        return_status = str(job.payload.get("return_status") or states.HEALTHY)
        status = health.status if health is not None else states.HEALTHY
        reason = health.reason or None if health is not None else None
        values: dict[str, Any] = self.material_values(row, material) if material else {}
        if version:
            # The driver names the major version it upgraded to (Chef "2"): the server
            # stores and shows the full one, as CreateServer does.
            version = full_version(row["engine"], version)
            values["engine_version"] = version
        key = self._log(row, job, now, rebuilt_at=rebuilt_at, version=version, failed=failed)

        def effects(conn: Connection) -> None:
            if failed is None:
                ok = repo.transition_server(conn, row["id"], [states.UNDER_MAINTENANCE],
                                            status=status, maintenance_status="SUCCESS",
                                            status_reason=reason, updated_at=now, **values)
                message = "Maintenance completed successfully" + (
                    f"; the engine is now version {version}." if version else ".")
            else:
                ok = repo.transition_server(conn, row["id"], [states.UNDER_MAINTENANCE],
                                            status=return_status, maintenance_status="FAILED",
                                            status_reason=f"Maintenance failed: {failed}",
                                            updated_at=now)
                message = f"Maintenance failed and was rolled back: {failed}"
            if ok:
                events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                              message=message, log_key=key)
                current = repo.get_server_by_id(conn, row["id"])
                if current is not None:
                    backups.enforce_retention(self.rt, conn, current, now)
        return effects

    def give_up(self, job: Job, error: str) -> Effects | None:
        row = self.server(job)
        if row is None or row["status"] != states.UNDER_MAINTENANCE:
            return None
        now = self.rt.clock.now()
        if job.step == "ready":
            # The engine was rebuilt and its new identity stored: nothing is rolled back,
            # only its readiness is unknown (settled as at the deadline).
            health = _not_ready(job, error)
            version = job.payload.get("version")
            return chain(self.event(row, health.reason, now), self._done(
                row, job, now, material=self.material(row),
                version=str(version) if version else None,
                rebuilt_at=float(job.payload.get("rebuilt_at") or now), health=health))
        return self._done(row, job, now, failed=error)

