"""StartMaintenance and scheduled maintenance: back up, rebuild from the backup, upgrade."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from cmhost.service import events, states
from cmhost.service.context import Caller
from cmhost.service.errors import ValidationException
from cmhost.service.records import Server
from cmhost.service.runtime import Runtime
from cmhost.service.step_logs import new_log_name
from cmhost.storage import repo
from cmhost.storage.repo import Row

MAJOR_UPGRADE = "CHEF_MAJOR_UPGRADE"


def _major_upgrade(server: Row, attributes: Sequence[tuple[str | None, str | None]]
                   ) -> bool:
    upgrade = False
    for name, value in attributes:
        if name != MAJOR_UPGRADE:
            raise ValidationException(
                f"Engine attribute {name} is not supported by StartMaintenance; the only one "
                f"is {MAJOR_UPGRADE}.")
        if (value or "").lower() not in ("true", "false"):
            raise ValidationException(f"{MAJOR_UPGRADE} must be 'true' or 'false'.")
        upgrade = (value or "").lower() == "true"
    if upgrade and not (server["engine"] == "Chef" and server["engine_version"].startswith("12")):
        raise ValidationException(
            f"{MAJOR_UPGRADE} applies only to Chef 12 servers; server '{server['name']}' runs "
            f"{server['engine']} {server['engine_version']}, for which no upgrade applies.")
    return upgrade


def begin_maintenance(rt: Runtime, conn: Connection, server: Row, *, now: float,
                      major_upgrade: bool, scheduled: bool) -> bool:
    """UNDER_MAINTENANCE and the job, in the caller's transaction; False if not allowed now."""
    if not repo.transition_server(conn, server["id"], states.ALLOWED["StartMaintenance"],
                                  status=states.UNDER_MAINTENANCE, status_reason=None,
                                  updated_at=now):
        return False
    what = "Scheduled maintenance" if scheduled else "Maintenance"
    events.record(conn, server_id=server["id"], server_name=server["name"], at=now,
                  message=f"{what} started" + (" (Chef major upgrade)." if major_upgrade
                                               else "."))
    rt.enqueuer.enqueue(conn, kind="maintenance", server_id=server["id"], now=now, payload={
        "return_status": server["status"], "major_upgrade": major_upgrade,
        "scheduled": scheduled, "started_at": now, "log": new_log_name("maintenance", now)})
    return True


def start_maintenance(rt: Runtime, caller: Caller, *, server_name: str,
                      attributes: Sequence[tuple[str | None, str | None]]) -> Server:
    now = rt.clock.now()
    with rt.db.write() as conn:
        server = repo.get_server(conn, caller.account, caller.region, server_name)
        if server is None:
            raise events.server_not_found(server_name)
        states.require("StartMaintenance", server_name, server["status"])
        upgrade = _major_upgrade(server, attributes)
        if not begin_maintenance(rt, conn, server, now=now, major_upgrade=upgrade,
                                 scheduled=False):
            raise states.changed_meanwhile(server_name)
        row = repo.get_server_by_id(conn, server["id"])
        assert row is not None
    rt.wake_worker()
    return Server.from_row(row)
