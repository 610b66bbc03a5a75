"""ExportServerEngineAttribute (user data) and UpdateServerEngineAttributes."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

from cmhost.engines import pki
from cmhost.engines.base import InvalidEngineAttribute
from cmhost.messages import caller_message
from cmhost.service import events, states
from cmhost.service.context import Caller
from cmhost.service.errors import ValidationException
from cmhost.service.records import Server, server_material, server_spec
from cmhost.service.runtime import Runtime
from cmhost.storage import repo

USERDATA = "Userdata"


def export_attribute(rt: Runtime, caller: Caller, *, server_name: str, name: str,
                     inputs: Sequence[tuple[str | None, str | None]]) -> tuple[str, str]:
    """(attribute name, base64 value) for ExportServerEngineAttribute."""
    with rt.db.read() as conn:
        server = repo.get_server(conn, caller.account, caller.region, server_name)
    if server is None:
        raise events.server_not_found(server_name)
    states.require("ExportServerEngineAttribute", server_name, server["status"])
    if name != USERDATA:
        raise ValidationException(
            f"Export attribute '{name}' is not supported; the supported attribute is "
            f"'{USERDATA}'.")
    given: dict[str, str] = {}
    for key, value in inputs:
        if not key:
            raise ValidationException("Every input attribute needs a Name.")
        given[key] = value or ""
    spec = server_spec(server, rt.settings.resolved_public_url)
    driver = rt.drivers.for_server(spec.family, server["driver"])
    try:
        script = driver.userdata(spec, server_material(server, rt.box), given)
    except InvalidEngineAttribute as exc:
        raise ValidationException(caller_message(exc)) from None
    return USERDATA, base64.b64encode(script.encode()).decode()


def update_attributes(rt: Runtime, caller: Caller, *, server_name: str, name: str,
                      value: str | None) -> tuple[Server, list[tuple[str, str]]]:
    """Reset the pivotal key or admin password; MODIFYING until the engine has it."""
    with rt.db.read() as conn:
        server = repo.get_server(conn, caller.account, caller.region, server_name)
    if server is None:
        raise events.server_not_found(server_name)
    states.require("UpdateServerEngineAttributes", server_name, server["status"])
    spec = server_spec(server, rt.settings.resolved_public_url)
    driver = rt.drivers.for_server(spec.family, server["driver"])
    try:
        with pki.supplied_by(rt.credentials):
            prepared = driver.update_attribute(spec, server_material(server, rt.box), name,
                                               value)
    except InvalidEngineAttribute as exc:
        raise ValidationException(caller_message(exc)) from None
    now = rt.clock.now()
    material = prepared.material
    with rt.db.write() as conn:
        # The new material was built from the row read above: apply it only if nothing
        # (a restore, say) wrote the server since.
        if not repo.transition_server(conn, server["id"],
                                      states.ALLOWED["UpdateServerEngineAttributes"],
                                      expected_revision=server["revision"],
                                      status=states.MODIFYING, updated_at=now,
                                      engine_public=dict(material.public),
                                      engine_secrets_enc=rt.box.encrypt(
                                          json.dumps(material.secrets), server["arn"])):
            raise states.changed_meanwhile(server_name)
        events.record(conn, server_id=server["id"], server_name=server_name, at=now,
                      message=f"Engine attribute {name} is being updated.")
        rt.enqueuer.enqueue(conn, kind="modify", server_id=server["id"], now=now,
                            payload={"return_status": server["status"], "attribute": name})
        row = repo.get_server_by_id(conn, server["id"])
        assert row is not None
    rt.wake_worker()
    result = Server.from_row(row)
    return result, list(result.engine_attributes) + list(prepared.one_time_attributes)
