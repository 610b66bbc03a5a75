"""What every server job shares: loading its server, its driver, and writing events."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection

from cmhost.engines.base import EngineDriver, EngineMaterial, ServerSpec
from cmhost.service import events
from cmhost.service.records import server_material, server_spec
from cmhost.service.runtime import Runtime
from cmhost.storage import repo
from cmhost.storage.repo import Row
from cmhost.workflows.jobs import Effects, Job


class ServerJob:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def server(self, job: Job) -> Row | None:
        if job.server_id is None:
            return None
        with self.rt.db.read() as conn:
            return repo.get_server_by_id(conn, job.server_id)

    def spec(self, row: Row) -> ServerSpec:
        return server_spec(row, self.rt.settings.resolved_public_url)

    def driver(self, row: Row) -> EngineDriver:
        return self.rt.drivers.for_server(self.spec(row).family, row["driver"])

    def material(self, row: Row) -> EngineMaterial:
        return server_material(row, self.rt.box)

    def event(self, row: Row, message: str, at: float) -> Effects:
        def effects(conn: Connection) -> None:
            events.record(conn, server_id=row["id"], server_name=row["name"], at=at,
                          message=message)
        return effects

    def material_values(self, row: Row, material: EngineMaterial
                        ) -> dict[str, Any]:
        """Server columns holding `material` (and the attributes DescribeServers shows)."""
        spec = self.spec(row)
        shown = self.driver(row).public_attributes(spec, material)
        return {"engine_public": dict(material.public),
                "engine_secrets_enc": self.rt.box.encrypt(json.dumps(material.secrets),
                                                          row["arn"]),
                "engine_attributes": [list(a) for a in shown]}

    def give_up(self, job: Job, error: str) -> Effects | None:
        return None
