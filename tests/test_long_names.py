"""Long names and file errors through boto3: a 63-character host name and a 200-byte NodeName
work, and no event, StatusReason, StatusDescription or error a caller reads shows a local
path, even when a file operation fails (issue 13 point 5)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ops.helpers import chef_attributes, expect_error, healthy_server, server
from tests.support import Cmhost, blocked_backup_store

# 63 bytes, the most a host name may have; its '-' and '.' are what temporary names rewrite.
LONG_HOST = "cmhost-" + "h" * 50 + ".local"
# 200 bytes, the most a NodeName may have here (it becomes a file name).
LONG_NODE = "n" * 190 + "-node.0042"
# Long enough for the worker to give a failing step its five attempts (backoff up to 16 s).
GIVE_UP_SECONDS = 200.0


def _launcher(workdir: Path) -> Path:
    """A stand-in for the Python interpreter that runs as if on a host named LONG_HOST: in a
    UTS namespace of its own (root, or an unprivileged user namespace), else with
    `socket.gethostname` answering LONG_HOST (a sitecustomize)."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "python-on-long-host"
    ways = (["unshare", "--uts"], ["unshare", "--user", "--map-root-user", "--uts"])
    for unshare in ways if shutil.which("unshare") else ():
        probe = subprocess.run([*unshare, "sh", "-c", f"hostname {LONG_HOST} && hostname"],
                               check=False, capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == LONG_HOST:
            script.write_text(f"#!/bin/sh\nexec {' '.join(unshare)} sh -c "
                              f"'hostname {LONG_HOST} && exec \"$0\" \"$@\"' "
                              f"{sys.executable} \"$@\"\n")
            break
    else:
        site = workdir / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(
            f"import socket\nsocket.gethostname = lambda: {LONG_HOST!r}\n")
        script.write_text(f"#!/bin/sh\nPYTHONPATH={site}${{PYTHONPATH:+:$PYTHONPATH}} "
                          f"exec {sys.executable} \"$@\"\n")
    script.chmod(0o755)
    seen = subprocess.run([str(script), "-c", "import socket; print(socket.gethostname())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert seen == LONG_HOST
    return script


@pytest.fixture(scope="module")
def cmhost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmhost]:
    workdir = tmp_path_factory.mktemp("long-names")
    cm = Cmhost(workdir / "cm")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "executable", str(_launcher(workdir / "launcher")))
        cm.start()
    yield cm
    cm.stop()


@pytest.fixture(scope="module")
def client(cmhost: Cmhost) -> Any:
    return cmhost.client()


def _server_dir(cmhost: Cmhost, client: Any, name: str) -> Path:
    server_id = server(client, name)["ServerArn"].rsplit("/", 1)[1]
    return cmhost.data_dir / "engines" / server_id


def _associate(cmhost: Cmhost, client: Any, name: str, node: str) -> dict[str, Any]:
    token = client.associate_node(ServerName=name, NodeName=node,
                                  EngineAttributes=chef_attributes())["NodeAssociationStatusToken"]
    cmhost.advance(GIVE_UP_SECONDS)
    answer: dict[str, Any] = client.describe_node_association_status(
        ServerName=name, NodeAssociationStatusToken=token)
    return answer


def _caller_texts(client: Any, name: str) -> list[str]:
    """Every free text about the server a caller can read."""
    found = server(client, name)
    texts = [found.get("StatusReason") or ""]
    texts += [e["Message"] for e in client.describe_events(ServerName=name)["ServerEvents"]]
    texts += [b.get("StatusDescription") or ""
              for b in client.describe_backups(ServerName=name)["Backups"]]
    return texts


def _assert_no_local_paths(cmhost: Cmhost, texts: list[str]) -> None:
    data_dir = str(cmhost.data_dir.resolve())
    for text in texts:
        assert data_dir not in text and str(cmhost.workdir) not in text, text
        assert "/tmp/" not in text and LONG_HOST.replace("-", "_")[:20] not in text, text


def test_a_200_byte_node_name_on_a_63_character_host(cmhost: Cmhost, client: Any) -> None:
    healthy_server(cmhost, client, "long-node")
    answer = _associate(cmhost, client, "long-node", LONG_NODE)
    assert answer["NodeAssociationStatus"] == "SUCCESS"
    token = client.disassociate_node(ServerName="long-node", NodeName=LONG_NODE,
                                     EngineAttributes=[{"Name": "CHEF_ORGANIZATION",
                                                        "Value": "default"}]
                                     )["NodeAssociationStatusToken"]
    cmhost.advance(5)
    assert client.describe_node_association_status(
        ServerName="long-node", NodeAssociationStatusToken=token
    )["NodeAssociationStatus"] == "SUCCESS"
    # One byte more is refused at once, with a validation error and no path.
    error = expect_error(client.associate_node, "ValidationException", ServerName="long-node",
                         NodeName=LONG_NODE + "x", EngineAttributes=chef_attributes())
    _assert_no_local_paths(cmhost, [error["Message"]])
    # A backup of a server holding such a node, and its restore, work on this host too.
    _associate(cmhost, client, "long-node", LONG_NODE)
    backup = client.create_backup(ServerName="long-node")["Backup"]
    cmhost.advance(5)
    assert client.describe_backups(BackupId=backup["BackupId"])["Backups"][0]["Status"] == "OK"
    client.restore_server(ServerName="long-node", BackupId=backup["BackupId"])
    cmhost.advance(5)
    assert server(client, "long-node")["Status"] == "HEALTHY"
    _assert_no_local_paths(cmhost, _caller_texts(client, "long-node"))


def test_a_node_record_that_cannot_be_read_fails_without_a_path(cmhost: Cmhost,
                                                                 client: Any) -> None:
    healthy_server(cmhost, client, "blocked-node")
    # Where the node's record goes, a directory: reading it fails with EISDIR.
    (_server_dir(cmhost, client, "blocked-node") / "nodes" / "web-1.json").mkdir()
    answer = _associate(cmhost, client, "blocked-node", "web-1")
    assert answer["NodeAssociationStatus"] == "FAILED"
    _assert_no_local_paths(cmhost, [str(answer.get("EngineAttributes"))])
    texts = _caller_texts(client, "blocked-node")
    assert any("Is a directory" in t for t in texts), texts
    _assert_no_local_paths(cmhost, texts)


def test_a_blob_store_that_cannot_be_written_fails_without_a_path(cmhost: Cmhost,
                                                                  client: Any) -> None:
    healthy_server(cmhost, client, "blocked-blobs")
    with blocked_backup_store(cmhost):
        backup = client.create_backup(ServerName="blocked-blobs")["Backup"]
        cmhost.advance(GIVE_UP_SECONDS)
        failed = client.describe_backups(BackupId=backup["BackupId"])["Backups"][0]
        assert failed["Status"] == "FAILED"
        assert failed["StatusDescription"]
        # Maintenance begins with a backup: it fails the same way, and says so in
        # the server's StatusReason.
        client.start_maintenance(ServerName="blocked-blobs")
        cmhost.advance(GIVE_UP_SECONDS)
        found = server(client, "blocked-blobs")
        assert found["MaintenanceStatus"] == "FAILED" and found["StatusReason"]
    texts = _caller_texts(client, "blocked-blobs")
    assert any("File exists" in t or "Not a directory" in t for t in texts), texts
    _assert_no_local_paths(cmhost, texts)

