"""A SIGKILL of the API while it writes a change leaves the change and its audit record
together: killed after the record is inserted but before the transaction commits, neither is
there; killed right after the commit (before the call's outcome is added), both are. The
process kills itself at the exact point (faults/sitecustomize.py), armed through a gate file
once the setup is done."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.reliability.split import FAULTS
from tests.support import Cmhost, create_server

ACCOUNT = "000000000000"
# (when, method of AuditTrail, whether the change committed)
POINTS = {"before-commit": ("after", "_insert_pending", False),
          "after-commit": ("before", "_mark_stored", True)}


@pytest.fixture(scope="module")
def cm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmhost]:
    host = Cmhost(Path(tmp_path_factory.mktemp("auditcrash"))).start()
    yield host
    host.stop()


def _killed_during(cm: Cmhost, point: str, action: Callable[[Any], object]) -> None:
    """Restart `cm` armed at `point`, run `action(client)` (which the crash interrupts), and
    start it again unarmed."""
    when, method, _ = POINTS[point]
    plain = dict(cm.env)
    gate = cm.workdir / "crash-gate"
    gate.unlink(missing_ok=True)
    cm.stop()
    cm.env = {**plain, "CMHOST_CRASH_AT": f"cmhost.service.audit:AuditTrail.{method}:{when}:1",
              "CMHOST_CRASH_GATE": str(gate),
              "PYTHONPATH": os.pathsep.join(p for p in (str(FAULTS), plain.get("PYTHONPATH"))
                                            if p)}
    try:
        cm.start()
        gate.touch()
        with pytest.raises((BotoCoreError, ClientError)):
            action(cm.client())
        assert cm.proc is not None
        assert cm.proc.wait(30) == -9
        assert "cmhost-fault: SIGKILL" in cm.log()
        cm.proc = None
    finally:
        cm.env = plain
        gate.unlink(missing_ok=True)
    cm.start()


def _records(cm: Cmhost, event: str) -> list[dict[str, Any]]:
    out = cm.cli("audit", "--account", ACCOUNT, "--event-name", event, "--format", "json",
                 *cm.storage_args()).stdout
    return [json.loads(line) for line in out.splitlines()]


def _server(cm: Cmhost, name: str) -> dict[str, Any] | None:
    try:
        return dict(cm.client().describe_servers(ServerName=name)["Servers"][0])
    except ClientError:
        return None


@pytest.mark.parametrize("point", POINTS)
def test_create_server(cm: Cmhost, point: str) -> None:
    name = f"cs-{point}"
    _killed_during(cm, point, lambda client: create_server(client, name))
    committed = POINTS[point][2]
    assert (_server(cm, name) is not None) == committed
    mine = [r for r in _records(cm, "CreateServer")
            if r["requestParameters"]["serverName"] == name]
    assert len(mine) == (1 if committed else 0), mine
    if committed:
        assert "errorCode" not in mine[0] and mine[0]["responseElements"] is None


@pytest.mark.parametrize("point", POINTS)
def test_tag_resource(cm: Cmhost, point: str) -> None:
    name = f"tag-{point}"
    arn = create_server(cm.client(), name)["ServerArn"]
    key = f"crash-{point}"
    _killed_during(cm, point, lambda client: client.tag_resource(
        ResourceArn=arn, Tags=[{"Key": key, "Value": "x"}]))
    committed = POINTS[point][2]
    tags = cm.client().list_tags_for_resource(ResourceArn=arn)["Tags"]
    assert ({"Key": key, "Value": "x"} in tags) == committed
    mine = [r for r in _records(cm, "TagResource")
            if r["requestParameters"]["tags"][0]["key"] == key]
    assert len(mine) == (1 if committed else 0), mine


@pytest.mark.parametrize("point", POINTS)
def test_delete_server(cm: Cmhost, point: str) -> None:
    name = f"del-{point}"
    create_server(cm.client(), name)
    cm.advance(61)  # HEALTHY: it may be deleted
    _killed_during(cm, point, lambda client: client.delete_server(ServerName=name))
    committed = POINTS[point][2]
    server = _server(cm, name)
    assert server is not None and (server["Status"] == "DELETING") == committed
    mine = [r for r in _records(cm, "DeleteServer")
            if r["requestParameters"]["serverName"] == name]
    assert len(mine) == (1 if committed else 0), mine
