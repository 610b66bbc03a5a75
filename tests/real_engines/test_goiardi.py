"""Chef servers on real goiardi processes (`--chef-driver goiardi`), driven through boto3.

The service tests share one cmhost and run in order: a server is created and becomes HEALTHY
when goiardi really serves; a node's key signs real Chef API requests until it is
disassociated; the pivotal key lists the nodes; a killed goiardi is seen and restarted; goiardi
keeps serving across a cmhost restart; a restore brings back the backup's nodes; maintenance
keeps them; a new pivotal key replaces the old one. The driver tests at the end run goiardi
without the service: wrong answers, a hung process, a damaged artifact, an embedded backup.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import signal
import ssl
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cmhost.engines import chef_auth, pki
from cmhost.engines.base import DriverContext, EngineError, EngineMaterial, ServerSpec
from cmhost.engines.embedded import EmbeddedDriver
from cmhost.engines.goiardi import ChefApi, GoiardiDriver
from tests.ops.helpers import (
    associate,
    attribute,
    backup_now,
    delete_server,
    disassociate,
    events,
    healthy_server,
    public_pem,
    quiet_windows,
    rsa_key,
    server,
    server_id,
    settle,
)
from tests.support import Cmhost, create_server, database_bytes

if shutil.which("goiardi") is None:
    pytest.skip("install the Debian package goiardi (apt-get install goiardi)",
                allow_module_level=True)

NAME = "chef-goiardi"
HEALTH_INTERVAL = 2.0


@pytest.fixture(scope="module")
def cmhost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmhost]:
    workdir = Path(tmp_path_factory.mktemp("goiardi"))
    server_ = Cmhost(workdir, extra_args=[
        "--chef-driver", "goiardi", "--health-interval", str(HEALTH_INTERVAL),
        "--engine-ports", "28400-28499"]).start()
    yield server_
    server_.stop()
    _kill_leftover_engines(server_.data_dir)


def _kill_leftover_engines(data_dir: Path) -> None:
    """Stop the goiardi processes this module's cmhost started and did not delete."""
    for pid_file in (data_dir / "engines").glob("*/goiardi.pid"):
        pid = _engine_pid(pid_file.parent)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def client(cmhost: Cmhost) -> Any:
    return cmhost.client()


@pytest.fixture(scope="module")
def created(cmhost: Cmhost, client: Any) -> dict[str, Any]:
    """The CreateServer answer of a goiardi Chef server that is HEALTHY."""
    return healthy_server(cmhost, client, NAME)


@pytest.fixture(scope="module")
def node_keys() -> dict[str, Any]:
    """Node keys (and a backup id) tests of this module pass on to later ones."""
    return {}


# --- helpers ------------------------------------------------------------------------------


def _state(cmhost: Cmhost, client: Any) -> Path:
    return cmhost.data_dir / "engines" / server_id(server(client, NAME)["ServerArn"])


def _engine_pid(state: Path) -> int | None:
    try:
        pid = int((state / "goiardi.pid").read_text())
        args = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if str(state / "data").encode() in args else None


def _address(cmhost: Cmhost, client: Any) -> tuple[str, int]:
    """Where goiardi listens: the Endpoint, engine host and a port of --engine-ports."""
    host, _, port = server(client, NAME)["Endpoint"].rpartition(":")
    assert host == "127.0.0.1" and 28400 <= int(port) <= 28499
    return host, int(port)


def _kit(created: dict[str, Any]) -> dict[str, str]:
    kit = base64.b64decode(attribute(created["EngineAttributes"], "CHEF_STARTER_KIT") or "")
    with zipfile.ZipFile(io.BytesIO(kit)) as archive:
        return {n.split("/", 1)[1]: archive.read(n).decode() for n in archive.namelist()}


_addresses: dict[str, tuple[str, int]] = {}


def _chef(cmhost: Cmhost, client: Any, ca_pem: str, user: str, key: str | rsa.RSAPrivateKey,
          method: str, path: str) -> tuple[int, Any]:
    """One Chef API request, signed (chef_auth) as `user`, over TLS verified by `ca_pem`."""
    # Remembered: goiardi is also asked while cmhost is down.
    if NAME not in _addresses:
        _addresses[NAME] = _address(cmhost, client)
    host, port = _addresses[NAME]
    headers = chef_auth.sign_request(key, user_id=user, method=method, path=path)
    headers["Accept"] = "application/json"
    conn = http.client.HTTPSConnection(host, port, timeout=10,
                                       context=ssl.create_default_context(cadata=ca_pem))
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    return resp.status, json.loads(body) if body.strip() else None


def _wait_status(client: Any, wanted: set[str], timeout: float = 40.0) -> list[str]:
    """Poll DescribeServers (health checks run on real time) until the status is one of
    `wanted`; returns every status seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = server(client, NAME)["Status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in wanted:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"{NAME} never became {wanted}; seen {seen}")


def _nodes(cmhost: Cmhost, client: Any, created: dict[str, Any]) -> set[str]:
    kit = _kit(created)
    status, nodes = _chef(cmhost, client, kit[".chef/ca_certs/opsworks-cm-ca.pem"], "pivotal",
                          kit[".chef/private.pem"], "GET", "/nodes")
    assert status == 200, nodes
    return set(nodes)


# --- tests --------------------------------------------------------------------------------


def test_created_server_serves_with_the_kit_credentials(cmhost: Cmhost, client: Any,
                                                        created: dict[str, Any]) -> None:
    assert server(client, NAME)["Status"] == "HEALTHY"
    pivotal = attribute(created["EngineAttributes"], "CHEF_PIVOTAL_KEY")
    kit = _kit(created)
    assert kit[".chef/private.pem"] == pivotal
    # goiardi serves one organization at its root: knife and chef-client use no /organizations.
    endpoint = server(client, NAME)["Endpoint"]
    assert f"chef_server_url 'https://{endpoint}'" in kit[".chef/knife.rb"]
    assert '"https://$CHEF_SERVER_ENDPOINT"' in kit["userdata.sh"]
    assert "/organizations/" not in kit[".chef/knife.rb"] + kit["userdata.sh"]
    status, users = _chef(cmhost, client, kit[".chef/ca_certs/opsworks-cm-ca.pem"], "pivotal",
                          kit[".chef/private.pem"], "GET", "/users")
    assert status == 200 and set(users) == {"admin", "pivotal"}
    # goiardi's generated actor keys are gone; only cmhost's own admin client key stays.
    assert sorted(p.name for p in (_state(cmhost, client) / "conf").iterdir()) == [
        "ca.pem", "cmhost.pem", "server-key.pem", "server.pem"]


def test_the_pivotal_private_key_is_kept_nowhere(cmhost: Cmhost, client: Any,
                                                created: dict[str, Any]) -> None:
    private = _kit(created)[".chef/private.pem"]
    body = "".join(private.strip().splitlines()[1:-1])[:64].encode()
    assert body not in database_bytes(cmhost.database_url)
    for path in cmhost.data_dir.rglob("*"):
        if path.is_file():
            assert body not in path.read_bytes(), path


def test_userdata_points_at_the_root(client: Any, created: dict[str, Any]) -> None:
    answer = client.export_server_engine_attribute(ExportAttributeName="Userdata",
                                                   ServerName=NAME)
    script = base64.b64decode(answer["EngineAttribute"]["Value"]).decode()
    assert '"https://$CHEF_SERVER_ENDPOINT"' in script and "/organizations/" not in script


def test_node_key_works_until_disassociated(cmhost: Cmhost, client: Any,
                                            created: dict[str, Any]) -> None:
    key = rsa_key()
    ca = _kit(created)[".chef/ca_certs/opsworks-cm-ca.pem"]
    done = associate(cmhost, client, NAME, "web-1", [
        {"Name": "CHEF_ORGANIZATION", "Value": "default"},
        {"Name": "CHEF_NODE_PUBLIC_KEY", "Value": public_pem(key)}])
    assert done["NodeAssociationStatus"] == "SUCCESS", done
    status, node = _chef(cmhost, client, ca, "web-1", key, "GET", "/nodes/web-1")
    assert status == 200 and node["name"] == "web-1"
    assert "web-1" in _nodes(cmhost, client, created)
    assert disassociate(cmhost, client, NAME, "web-1")["NodeAssociationStatus"] == "SUCCESS"
    status, _ = _chef(cmhost, client, ca, "web-1", key, "GET", "/nodes/web-1")
    assert status == 401
    assert "web-1" not in _nodes(cmhost, client, created)


def test_node_names_of_server_actors_are_refused(client: Any, created: dict[str, Any]) -> None:
    with pytest.raises(client.exceptions.ValidationException, match="reserved"):
        client.associate_node(ServerName=NAME, NodeName="pivotal", EngineAttributes=[
            {"Name": "CHEF_NODE_PUBLIC_KEY", "Value": public_pem()}])


def test_killed_goiardi_is_seen_and_restarted(cmhost: Cmhost, client: Any,
                                              created: dict[str, Any]) -> None:
    state = _state(cmhost, client)
    pid = _engine_pid(state)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    seen = _wait_status(client, {"UNHEALTHY", "CONNECTION_LOST"})
    seen += _wait_status(client, {"HEALTHY"})
    assert _engine_pid(state) not in (None, pid)
    messages = events(client, NAME)
    assert messages[0].startswith("Health check: the server is HEALTHY")
    assert any(m.startswith(("Health check: the server is UNHEALTHY",
                             "Health check: the server is CONNECTION_LOST")) for m in messages)
    assert len(_nodes(cmhost, client, created)) == 0


def test_goiardi_keeps_serving_across_a_cmhost_restart(cmhost: Cmhost, client: Any,
                                                       created: dict[str, Any]) -> None:
    state = _state(cmhost, client)
    pid = _engine_pid(state)
    cmhost.stop()
    try:
        assert _engine_pid(state) == pid  # cmhost is gone, goiardi is not
        assert _nodes(cmhost, client, created) == set()
    finally:
        cmhost.start()
    time.sleep(2 * HEALTH_INTERVAL)  # the health monitor resumes the server
    assert server(client, NAME)["Status"] == "HEALTHY"
    assert _engine_pid(state) == pid  # re-attached, not restarted
    key = rsa_key()
    done = associate(cmhost, client, NAME, "after-restart", [
        {"Name": "CHEF_NODE_PUBLIC_KEY", "Value": public_pem(key)}])
    assert done["NodeAssociationStatus"] == "SUCCESS", done
    assert "after-restart" in _nodes(cmhost, client, created)
    assert disassociate(cmhost, client, NAME, "after-restart")["NodeAssociationStatus"] == (
        "SUCCESS")


def test_restore_brings_back_the_backups_nodes(cmhost: Cmhost, client: Any,
                                               created: dict[str, Any],
                                               node_keys: dict[str, Any]) -> None:
    ca = _kit(created)[".chef/ca_certs/opsworks-cm-ca.pem"]
    key_a = node_keys["node-a"] = rsa_key()
    key_b = rsa_key()
    assert associate(cmhost, client, NAME, "node-a", [
        {"Name": "CHEF_NODE_PUBLIC_KEY", "Value": public_pem(key_a)}])[
        "NodeAssociationStatus"] == "SUCCESS"
    backup = backup_now(cmhost, client, NAME)
    assert server(client, NAME)["Status"] == "HEALTHY"
    assert associate(cmhost, client, NAME, "node-b", [
        {"Name": "CHEF_NODE_PUBLIC_KEY", "Value": public_pem(key_b)}])[
        "NodeAssociationStatus"] == "SUCCESS"
    assert _nodes(cmhost, client, created) == {"node-a", "node-b"}
    endpoint = server(client, NAME)["Endpoint"]
    client.restore_server(ServerName=NAME, BackupId=backup["BackupId"])
    settle(cmhost)
    after = server(client, NAME)
    assert after["Status"] == "HEALTHY" and after["Endpoint"] == endpoint
    assert _nodes(cmhost, client, created) == {"node-a"}
    assert _chef(cmhost, client, ca, "node-a", key_a, "GET", "/nodes/node-a")[0] == 200
    assert _chef(cmhost, client, ca, "node-b", key_b, "GET", "/nodes/node-b")[0] == 401
    node_keys["backup"] = backup["BackupId"]


def test_a_new_server_from_the_backup_serves_its_nodes(cmhost: Cmhost, client: Any,
                                                       created: dict[str, Any],
                                                       node_keys: dict[str, Any]) -> None:
    copy = create_server(client, "chef-copy", BackupId=node_keys["backup"],
                         **quiet_windows(cmhost))
    assert "CHEF_PIVOTAL_KEY" not in {a["Name"] for a in copy["EngineAttributes"]}
    cmhost.advance(61)
    assert server(client, "chef-copy")["Status"] == "HEALTHY"
    kit = _kit(created)  # the same identity: the original's CA and pivotal key
    host, port = server(client, "chef-copy")["Endpoint"].rsplit(":", 1)
    context = ssl.create_default_context(cadata=kit[".chef/ca_certs/opsworks-cm-ca.pem"])
    for user, key, path in (("pivotal", kit[".chef/private.pem"], "/nodes"),
                            ("node-a", node_keys["node-a"], "/nodes/node-a")):
        conn = http.client.HTTPSConnection(host, int(port), timeout=10, context=context)
        try:
            conn.request("GET", path, headers=chef_auth.sign_request(
                key, user_id=user, method="GET", path=path))
            resp = conn.getresponse()
            assert resp.status == 200
            if path == "/nodes":
                assert set(json.loads(resp.read())) == {"node-a"}
        finally:
            conn.close()
    delete_server(cmhost, client, "chef-copy")


def test_maintenance_keeps_keys_and_nodes(cmhost: Cmhost, client: Any,
                                          created: dict[str, Any],
                                          node_keys: dict[str, Any]) -> None:
    before = _nodes(cmhost, client, created)
    client.start_maintenance(ServerName=NAME)
    settle(cmhost)
    after = server(client, NAME)
    assert after["Status"] == "HEALTHY" and after["MaintenanceStatus"] == "SUCCESS"
    assert _nodes(cmhost, client, created) == before == {"node-a"}
    ca = _kit(created)[".chef/ca_certs/opsworks-cm-ca.pem"]
    assert _chef(cmhost, client, ca, "node-a", node_keys["node-a"], "GET",
                 "/nodes/node-a")[0] == 200


def test_new_pivotal_key_replaces_the_old_one(cmhost: Cmhost, client: Any,
                                              created: dict[str, Any]) -> None:
    old = _kit(created)
    answer = client.update_server_engine_attributes(ServerName=NAME,
                                                    AttributeName="CHEF_PIVOTAL_KEY")["Server"]
    assert answer["Status"] == "MODIFYING"
    settle(cmhost)
    assert server(client, NAME)["Status"] == "HEALTHY"
    new = _kit(answer)
    ca = old[".chef/ca_certs/opsworks-cm-ca.pem"]
    assert _chef(cmhost, client, ca, "pivotal", new[".chef/private.pem"], "GET",
                 "/nodes")[0] == 200
    assert _chef(cmhost, client, ca, "pivotal", old[".chef/private.pem"], "GET",
                 "/nodes")[0] == 401


def test_a_given_pivotal_public_key_is_the_pivotal_key(cmhost: Cmhost, client: Any) -> None:
    key = rsa_key()
    given = healthy_server(cmhost, client, "chef-given", EngineAttributes=[
        {"Name": "CHEF_PIVOTAL_KEY", "Value": public_pem(key)}])
    assert attribute(given["EngineAttributes"], "CHEF_PIVOTAL_KEY") is None
    kit = _kit(given)
    assert ".chef/private.pem" not in kit
    host, port = server(client, "chef-given")["Endpoint"].rsplit(":", 1)
    context = ssl.create_default_context(cadata=kit[".chef/ca_certs/opsworks-cm-ca.pem"])
    conn = http.client.HTTPSConnection(host, int(port), timeout=10, context=context)
    try:
        conn.request("GET", "/nodes", headers=chef_auth.sign_request(
            key, user_id="pivotal", method="GET", path="/nodes"))
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    delete_server(cmhost, client, "chef-given")


def test_delete_stops_goiardi_and_removes_its_data(cmhost: Cmhost, client: Any,
                                                   created: dict[str, Any]) -> None:
    state = _state(cmhost, client)
    pid = _engine_pid(state)
    client.delete_server(ServerName=NAME)
    cmhost.advance(11)
    assert not state.exists()
    assert pid is not None and not Path(f"/proc/{pid}").exists()


# --- the driver on its own ------------------------------------------------------------------


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoiardiDriver]:
    data_dir = Path(tmp_path_factory.mktemp("goiardi-driver"))
    found = GoiardiDriver(DriverContext(data_dir=data_dir, port_min=28700, port_max=28799))
    yield found
    found.close()
    _kill_leftover_engines(data_dir)


def _spec(driver: GoiardiDriver, number: int) -> ServerSpec:
    server_id = f"00000000-0000-4000-8000-{number:012d}"
    return ServerSpec(server_id=server_id, name=f"drv-{number}", account="000000000000",
                      region="us-east-1", engine="Chef", family="Chef", engine_version="2",
                      endpoint=driver.allocate_endpoint(server_id, f"drv-{number}", "us-east-1"),
                      api_endpoint="http://127.0.0.1:4580")


def test_wrong_answers_are_unhealthy_and_a_hung_goiardi_is_lost(driver: GoiardiDriver) -> None:
    spec = _spec(driver, 1)
    material = driver.prepare(spec, {}).material
    driver.provision(spec, material)
    assert driver.check_health(spec, material).status == "HEALTHY"
    other_pivotal = EngineMaterial(public={**material.public,
                                           "pivotal_public_key": public_pem()},
                                   secrets=material.secrets)
    health = driver.check_health(spec, other_pivotal)
    assert (health.status, health.reason) == ("UNHEALTHY",
                                              "goiardi's pivotal key is not the server's.")
    other_ca = EngineMaterial(public={**material.public, "ca_cert": pki.generate_ca("x")[0]},
                              secrets=material.secrets)
    health = driver.check_health(spec, other_ca)
    assert health.status == "UNHEALTHY" and "certificate" in health.reason
    pid = _engine_pid(driver.server_dir(spec))
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # alive, but answers nothing
    try:
        health = driver.check_health(spec, material)
        assert health.status == "CONNECTION_LOST", health
    finally:
        os.kill(pid, signal.SIGCONT)
    assert driver.check_health(spec, material).status == "HEALTHY"
    driver.destroy(spec)
    assert not driver.server_dir(spec).exists() and not Path(f"/proc/{pid}").exists()


def test_a_damaged_artifact_leaves_the_engine_as_it_was(driver: GoiardiDriver) -> None:
    spec = _spec(driver, 2)
    material = driver.prepare(spec, {}).material
    driver.provision(spec, material)
    driver.associate_node(spec, material, "kept", {"CHEF_NODE_PUBLIC_KEY": public_pem()})
    artifact = bytearray(driver.backup(spec, material))
    artifact[len(artifact) // 2] ^= 0xFF
    pid = _engine_pid(driver.server_dir(spec))
    with pytest.raises(EngineError, match="unusable"):
        driver.restore(spec, bytes(artifact))
    assert _engine_pid(driver.server_dir(spec)) == pid
    assert driver.node_names(spec) == ["kept"]
    assert driver.check_health(spec, material).status == "HEALTHY"
    driver.destroy(spec)


def test_an_embedded_chef_backup_restores_into_goiardi(driver: GoiardiDriver,
                                                       tmp_path: Path) -> None:
    embedded = EmbeddedDriver(DriverContext(data_dir=tmp_path), "Chef")
    spec = _spec(driver, 3)
    prepared = embedded.prepare(spec, {})
    embedded.provision(spec, prepared.material)
    node_key = rsa_key()
    embedded.associate_node(spec, prepared.material, "old-node",
                            {"CHEF_NODE_PUBLIC_KEY": public_pem(node_key)})
    artifact = embedded.backup(spec, prepared.material)
    material = driver.restore(spec, artifact)
    assert material.public["ca_cert"] == prepared.material.public["ca_cert"]
    assert driver.check_health(spec, material).status == "HEALTHY"
    assert driver.node_names(spec) == ["old-node"]
    signature = node_key.sign(b"hello", padding.PKCS1v15(), hashes.SHA256())
    assert driver.accepts_client(spec, "old-node", b"hello", signature)
    assert not driver.accepts_client(spec, "old-node", b"other", signature)
    assert not driver.accepts_client(spec, "unknown", b"hello", signature)
    pivotal = dict(prepared.one_time_attributes)["CHEF_PIVOTAL_KEY"]
    host, port = spec.endpoint.rsplit(":", 1)
    api = ChefApi(host, int(port), material.public["ca_cert"], "pivotal", pivotal)
    assert api.call("GET", "/nodes/old-node")[0] == 200
    driver.destroy(spec)
