"""Nodes: AssociateNode, DisassociateNode and DescribeNodeAssociationStatus."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cmhost.engines.base import InvalidEngineAttribute, NodeAction
from cmhost.messages import caller_message
from cmhost.service import events, states
from cmhost.service.context import Caller
from cmhost.service.errors import (
    ResourceNotFoundException,
    ValidationException,
)
from cmhost.service.records import server_spec
from cmhost.service.runtime import Runtime
from cmhost.storage import repo

IN_PROGRESS = "IN_PROGRESS"
SUCCESS = "SUCCESS"
FAILED = "FAILED"


@dataclass(frozen=True)
class AssociationStatus:
    status: str
    attributes: list[tuple[str, str]]


def _pairs_to_dict(attributes: Sequence[tuple[str | None, str | None]]) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in attributes:
        if not name:
            raise ValidationException("Every engine attribute needs a Name.")
        if name in result:
            raise ValidationException(f"Engine attribute {name} is given more than once.")
        result[name] = value or ""
    return result


def request_node_action(rt: Runtime, caller: Caller, *, action: NodeAction, server_name: str,
                        node_name: str, attributes: Sequence[tuple[str | None, str | None]]
                        ) -> str:
    """Validate, record the request, enqueue the engine work; returns the status token."""
    operation = "AssociateNode" if action == "associate" else "DisassociateNode"
    given = _pairs_to_dict(attributes)
    with rt.db.read() as conn:
        server = repo.get_server(conn, caller.account, caller.region, server_name)
    if server is None:
        raise events.server_not_found(server_name)
    states.require(operation, server_name, server["status"])
    spec = server_spec(server, rt.settings.resolved_public_url)
    driver = rt.drivers.for_server(spec.family, server["driver"])
    try:
        canonical = driver.check_node_request(spec, action, node_name, given)
    except InvalidEngineAttribute as exc:
        raise ValidationException(caller_message(exc)) from None
    token = base64.b64encode(secrets.token_bytes(30)).decode()
    now = rt.clock.now()
    with rt.db.write() as conn:
        current = repo.get_server_by_id(conn, server["id"])
        if current is None:
            raise events.server_not_found(server_name)
        states.require(operation, server_name, current["status"])
        repo.insert_node_association(conn, {
            "token": token, "server_id": server["id"], "account": caller.account,
            "region": caller.region, "server_name": server_name, "node_name": node_name,
            "action": action, "status": IN_PROGRESS, "attributes": canonical, "result": [],
            "error": None, "created_at": now, "updated_at": now})
        events.record(conn, server_id=server["id"], server_name=server_name, at=now,
                      message=f"Node {node_name}: {action} requested.")
        rt.enqueuer.enqueue(conn, kind="node", server_id=server["id"], now=now,
                            payload={"token": token})
    rt.wake_worker()
    return token


def describe_status(rt: Runtime, caller: Caller, *, server_name: str, token: str
                    ) -> AssociationStatus:
    with rt.db.read() as conn:
        server = repo.get_server(conn, caller.account, caller.region, server_name)
        if server is None:
            raise events.server_not_found(server_name)
        row = repo.get_node_association(conn, token)
    if row is None or row["server_id"] != server["id"]:
        raise ResourceNotFoundException(
            f"No recent association or disassociation request with that token exists for "
            f"server '{server_name}'.")
    return AssociationStatus(status=row["status"],
                             attributes=[(a[0], a[1]) for a in row["result"] or []])
