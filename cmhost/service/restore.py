"""RestoreServer: rebuild a server's engine from one of its account's backups."""

from __future__ import annotations

from cmhost.engines.attributes import engine_family
from cmhost.service import events, states
from cmhost.service.backups import backup_not_found
from cmhost.service.context import Caller
from cmhost.service.errors import InvalidStateException, ValidationException
from cmhost.service.records import Server
from cmhost.service.runtime import Runtime
from cmhost.service.step_logs import new_log_name
from cmhost.storage import repo


def restore_server(rt: Runtime, caller: Caller, *, server_name: str, backup_id: str,
                   instance_type: str | None, key_pair: str | None) -> Server:
    now = rt.clock.now()
    with rt.db.write() as conn:
        server = repo.get_server(conn, caller.account, caller.region, server_name)
        if server is None:
            raise events.server_not_found(server_name)
        backup = repo.get_backup(conn, caller.account, caller.region, backup_id)
        if backup is None:
            raise backup_not_found(backup_id)
        states.require("RestoreServer", server_name, server["status"])
        if backup["status"] != "OK":
            raise InvalidStateException(
                f"The backup '{backup_id}' is {backup['status']}; only a backup in state OK "
                "can be restored.")
        if engine_family(backup["settings"]["Engine"]) != engine_family(server["engine"]):
            raise ValidationException(
                f"The backup '{backup_id}' is of a {backup['settings']['Engine']} server and "
                f"cannot be restored onto the {server['engine']} server '{server_name}'.")
        if not repo.transition_server(conn, server["id"], states.ALLOWED["RestoreServer"],
                                      status=states.RESTORING, status_reason=None,
                                      updated_at=now):
            raise states.changed_meanwhile(server_name)
        events.record(conn, server_id=server["id"], server_name=server_name, at=now,
                      message=f"Restore from backup {backup_id} started.")
        rt.enqueuer.enqueue(conn, kind="restore", server_id=server["id"], now=now, payload={
            "backup_id": backup_id, "return_status": server["status"],
            # As the spec says: without InstanceType, the backup's instance type is used.
            "instance_type": instance_type or backup["settings"].get("InstanceType"),
            "key_pair": key_pair, "started_at": now, "log": new_log_name("restore", now)})
        row = repo.get_server_by_id(conn, server["id"])
        assert row is not None
    rt.wake_worker()
    return Server.from_row(row)
