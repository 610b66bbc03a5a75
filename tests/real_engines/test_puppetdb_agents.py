"""PuppetDB beside a real puppetserver (`--puppetdb on`), via boto3, two real agents and the
query API a user reaches with the starter kit (issue 15, "PuppetDB").

The tests of this module share one cmhost and one Puppet server and run in order: the server
is HEALTHY once puppetserver and its PuppetDB both serve, and its kit names PuppetDB with host
and port; one agent's catalog exports a file that the other's collects, and both nodes' facts
and last reports are read from PuppetDB with the kit's certificate (a node's own certificate
is refused); both JVMs keep running across a cmhost restart; a backup holds PuppetDB's data,
which RestoreServer brings back after it was deleted; DeleteServer stops PuppetDB and drops
its database. Each start of the two JVMs takes one to two minutes on two cores.

PostgreSQL: CMHOST_TEST_PUPPETDB_DATABASE_URL, else postgresql://cmhost:cmhost@127.0.0.1:5432/
postgres (the CI's role); the module skips when none answers.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import signal
import ssl
import time
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cmhost.engines.base import EngineError
from cmhost.engines.puppetdb import missing_package
from cmhost.engines.puppetdb_database import DatabaseServer, database_name
from tests.ops.helpers import (
    attribute,
    backup_now,
    events,
    node_status,
    quiet_windows,
    server,
    server_id,
    settle,
)
from tests.real_engines.test_puppetserver import Agent, serves, split, wait_for
from tests.support import Cmhost, create_server

if missing_package():
    pytest.skip(missing_package(), allow_module_level=True)
DATABASE_URL = os.environ.get("CMHOST_TEST_PUPPETDB_DATABASE_URL",
                              "postgresql://cmhost:cmhost@127.0.0.1:5432/postgres")
POSTGRES = DatabaseServer.from_url(DATABASE_URL)
try:
    POSTGRES.connect().close()
except EngineError as exc:
    pytest.skip(f"no PostgreSQL for PuppetDB (CMHOST_TEST_PUPPETDB_DATABASE_URL): {exc}",
                allow_module_level=True)

NAME = "puppet-pdb"
PROVISIONING = 600
START_TIMEOUT = 600.0
PORTS = (28600, 28649)
EXPORTER, COLLECTOR = "exporter.example.com", "collector.example.com"
TAG = "cmhost_pdb"


@dataclass
class Kit:
    """The starter kit, unzipped as a user would, and PuppetDB's settings from it."""

    root: Path
    url: str
    cacert: Path
    cert: Path
    key: Path

    @property
    def ca(self) -> str:
        return self.cacert.read_text()

    def context(self, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca)
        context.load_cert_chain(cert or self.cert, key or self.key)
        return context

    def call(self, method: str, path: str, query: Any = None, body: Any = None, *,
             context: ssl.SSLContext | None = None) -> tuple[int, Any]:
        """What `curl --cacert ... --cert ... --key ... <url><path>?query=...` answers."""
        host, port = split(self.url.split("://", 1)[1])
        if query is not None:
            path += "?" + urllib.parse.urlencode({"query": json.dumps(query)})
        connection = http.client.HTTPSConnection(host, port, context=context or self.context(),
                                                 timeout=60)
        try:
            connection.request(method, path, body=None if body is None else json.dumps(body),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data.decode("utf-8", "replace")

    def query(self, path: str, query: Any = None) -> list[dict[str, Any]]:
        status, answer = self.call("GET", path, query)
        assert status == 200, (status, answer)
        assert isinstance(answer, list)
        return answer


def read_kit(created: dict[str, Any], into: Path) -> Kit:
    data = base64.b64decode(attribute(created["EngineAttributes"], "PUPPET_STARTER_KIT") or "")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(into)
    root = into / created["ServerName"]
    conf = json.loads((root / ".config/puppetlabs/client-tools/puppetdb.conf").read_text())
    pdb = conf["puppetdb"]
    return Kit(root=root, url=pdb["server_urls"], cacert=root / pdb["cacert"],
               cert=root / pdb["cert"], key=root / pdb["key"])


def pid_of(pid_file: Path, marker: Path) -> int | None:
    """The pid in `pid_file` when that process runs with `marker` on its command line."""
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if str(marker).encode() in cmdline else None


def puppetserver_pid(root: Path) -> int | None:
    return pid_of(root / "run" / "puppetserver.pid", root / "conf" / "conf.d")


def puppetdb_pid(root: Path) -> int | None:
    return pid_of(root / "puppetdb" / "run" / "puppetdb.pid", root / "puppetdb" / "conf.d")


def rss_mib(pid: int | None) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def eventually(read: Callable[[], list[dict[str, Any]]], what: str,
               timeout: float = 120.0) -> list[dict[str, Any]]:
    """PuppetDB stores commands asynchronously: the first non-empty answer of `read`."""
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(1.0)


def _kill_engines(data_dir: Path) -> None:
    """What the stopped cmhost left running (engines outlive cmhost on purpose)."""
    for root in [p for p in data_dir.glob("engines/*") if p.is_dir()]:
        for pid in (puppetserver_pid(root), puppetdb_pid(root)):
            if pid is not None:
                os.kill(pid, signal.SIGKILL)


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cmhost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmhost]:
    workdir = Path(tmp_path_factory.mktemp("puppetdb-agents"))
    server_ = Cmhost(workdir, provisioning_seconds=PROVISIONING, extra_args=[
        "--puppet-driver", "puppetserver", "--java-heap", "1g", "--health-interval", "2",
        "--engine-ports", f"{PORTS[0]}-{PORTS[1]}", "--log-level", "info",
        "--puppetdb", "on", "--puppetdb-database-url", DATABASE_URL]).start()
    yield server_
    server_.stop()
    _kill_engines(server_.data_dir)
    for root in server_.data_dir.glob("engines/*"):  # a test that failed before DeleteServer
        if root.is_dir():
            POSTGRES.drop_database(database_name(root.name))


@pytest.fixture(scope="module")
def client(cmhost: Cmhost) -> Any:
    return cmhost.client()


@pytest.fixture(scope="module")
def created(cmhost: Cmhost, client: Any,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The CreateServer answer of a HEALTHY server, with when it was asked for."""
    started = time.monotonic()
    answer = create_server(client, NAME, "Puppet", **quiet_windows(cmhost))
    assert answer["Status"] == "CREATING"
    kit = read_kit(answer, Path(tmp_path_factory.mktemp("kit")))

    def both_serve() -> bool:
        if not serves(answer["Endpoint"], kit.ca):
            return False
        try:
            return kit.call("GET", "/pdb/query/v4/nodes")[0] == 200
        except OSError:
            return False

    wait_for(both_serve, START_TIMEOUT, "puppetserver and PuppetDB to serve")
    serving = time.monotonic() - started
    assert server(client, NAME)["Status"] == "CREATING"
    cmhost.advance(PROVISIONING + 1)

    def healthy() -> bool:
        settle(cmhost)
        return bool(server(client, NAME)["Status"] == "HEALTHY")

    wait_for(healthy, 120, "HEALTHY")
    return {**answer, "kit": kit, "serving_seconds": serving,
            "healthy_seconds": time.monotonic() - started}


def engine_dir(cmhost: Cmhost, created: dict[str, Any]) -> Path:
    return cmhost.data_dir / "engines" / server_id(created["ServerArn"])


def associated(cmhost: Cmhost, client: Any, node: str, csr: str) -> dict[str, Any]:
    """AssociateNode with the CSR, and its status once no longer IN_PROGRESS."""
    token = client.associate_node(
        ServerName=NAME, NodeName=node,
        EngineAttributes=[{"Name": "PUPPET_NODE_CSR", "Value": csr}],
    )["NodeAssociationStatusToken"]
    answer: dict[str, Any] = {}

    def done() -> bool:
        nonlocal answer
        answer = node_status(cmhost, client, NAME, token)
        return bool(answer["NodeAssociationStatus"] != "IN_PROGRESS")

    wait_for(done, 120, f"the association of {node}")
    return answer


def associated_agent(cmhost: Cmhost, client: Any, created: dict[str, Any], node: str,
                     root: Path) -> Agent:
    """A real agent whose CSR went through AssociateNode and which holds its certificate."""
    agent = Agent(root, node, created["Endpoint"], created["kit"].ca)
    first = agent.run("--waitforcert", "0")  # makes the key and the CSR; nobody signs it
    assert first.returncode == 1 and agent.csr.startswith("-----BEGIN CERTIFICATE REQUEST")
    answer = associated(cmhost, client, node, agent.csr)
    assert answer["NodeAssociationStatus"] == "SUCCESS", answer
    agent.install_certificate(attribute(answer["EngineAttributes"], "PUPPET_NODE_CERT") or "")
    return agent


def latest_report(kit: Kit, node: str) -> list[dict[str, Any]]:
    return kit.query("/pdb/query/v4/reports", ["and", ["=", "certname", node],
                                               ["=", "latest_report?", True]])


def facts(kit: Kit, node: str) -> dict[str, Any]:
    return {f["name"]: f["value"]
            for f in kit.query("/pdb/query/v4/facts", ["=", "certname", node])}


# --- tests --------------------------------------------------------------------------------


def test_the_server_is_healthy_with_puppetdb_named_by_its_kit(
        cmhost: Cmhost, client: Any, created: dict[str, Any]) -> None:
    root = engine_dir(cmhost, created)
    kit: Kit = created["kit"]
    host, port = split(kit.url.split("://", 1)[1])
    assert kit.url == f"https://{host}:{port}"
    assert host == split(created["Endpoint"])[0] == "127.0.0.1"
    assert PORTS[0] <= port <= PORTS[1] and port != split(created["Endpoint"])[1]
    assert int((root / "puppetdb.port").read_text()) == port
    readme = (kit.root / "README.md").read_text()
    assert f"at `{kit.url}` (host `{host}`, port {port})" in readme
    assert f"{kit.url}/pdb/query/v4/nodes" in readme and "--cert .config/ssl/cert/admin.pem" \
        in readme
    assert POSTGRES.database_exists(database_name(server_id(created["ServerArn"])))
    # puppetserver stores into it (its certificate is a client certificate too)
    assert "storeconfigs_backend = puppetdb" in (root / "conf" / "puppet.conf").read_text()
    ps, pdb = puppetserver_pid(root), puppetdb_pid(root)
    assert ps is not None and pdb is not None
    print(f"\nPuppet server with PuppetDB: both serving {created['serving_seconds']:.0f} s "
          f"after CreateServer, HEALTHY at {created['healthy_seconds']:.0f} s; "
          f"RSS puppetserver {rss_mib(ps):.0f} MiB, PuppetDB {rss_mib(pdb):.0f} MiB")


def test_one_agent_exports_a_file_that_the_other_collects(
        cmhost: Cmhost, client: Any, created: dict[str, Any],
        tmp_path_factory: pytest.TempPathFactory) -> None:
    kit: Kit = created["kit"]
    collected = Path(tmp_path_factory.mktemp("collected"))
    target = collected / "from-exporter"
    site = (engine_dir(cmhost, created) / "state" / "code" / "environments" / "production"
            / "manifests" / "site.pp")
    site.write_text(
        f"node '{EXPORTER}' {{\n"
        f"  @@file {{ '{target}':\n"
        f"    content => \"exported by ${{trusted['certname']}}\\n\", tag => '{TAG}' }}\n"
        f"}}\n"
        f"node '{COLLECTOR}' {{ File <<| tag == '{TAG}' |>> }}\n")
    agents = {node: associated_agent(cmhost, client, created, node,
                                     Path(tmp_path_factory.mktemp("agent")))
              for node in (EXPORTER, COLLECTOR)}

    exported = agents[EXPORTER].run()
    assert exported.returncode in (0, 2), exported.stdout + exported.stderr
    assert not target.exists()  # an exported resource is not applied where it is declared
    resources = eventually(lambda: kit.query("/pdb/query/v4/resources",
                                             ["=", "exported", True]), "the exported file")
    assert [(r["type"], r["title"], r["certname"]) for r in resources] == [
        ("File", str(target), EXPORTER)]

    applied = agents[COLLECTOR].run()
    assert applied.returncode == 2, applied.stdout + applied.stderr
    assert target.read_text() == f"exported by {EXPORTER}\n"  # it came from PuppetDB

    for node in (EXPORTER, COLLECTOR):
        def node_facts(node: str = node) -> list[dict[str, Any]]:
            found = facts(kit, node)
            return [found] if found else []

        known = eventually(node_facts, f"the facts of {node}")[0]
        assert known["clientcert"] == node and "os" in known
        def node_report(node: str = node) -> list[dict[str, Any]]:
            return latest_report(kit, node)

        report = eventually(node_report, f"the report of {node}")
        assert len(report) == 1 and report[0]["certname"] == node
    assert latest_report(kit, EXPORTER)[0]["status"] in ("changed", "unchanged")
    last = latest_report(kit, COLLECTOR)[0]
    assert last["status"] == "changed"
    # (the report's resource_events href answers HTTP 500 in PuppetDB 7.12: query events)
    changed = kit.query("/pdb/query/v4/events", ["=", "report", last["hash"]])
    assert ("File", str(target), "success") in {
        (e["resource_type"], e["resource_title"], e["status"]) for e in changed}
    nodes = kit.query(f"/pdb/query/v4/nodes/{COLLECTOR}/facts")
    assert {f["name"] for f in nodes} >= {"clientcert", "os"}

    # A node's own certificate is refused: nodes reach PuppetDB only through puppetserver.
    ssl_dir = agents[COLLECTOR].root / "ssl"
    node_context = kit.context(ssl_dir / "certs" / f"{COLLECTOR}.pem",
                               ssl_dir / "private_keys" / f"{COLLECTOR}.pem")
    status, _ = kit.call("GET", "/pdb/query/v4/nodes", context=node_context)
    assert status == 403
    root = engine_dir(cmhost, created)
    print(f"\nafter two agent runs: RSS puppetserver {rss_mib(puppetserver_pid(root)):.0f} MiB,"
          f" PuppetDB {rss_mib(puppetdb_pid(root)):.0f} MiB")


def test_puppetdb_keeps_serving_across_a_cmhost_restart(
        cmhost: Cmhost, created: dict[str, Any]) -> None:
    root = engine_dir(cmhost, created)
    pids = (puppetserver_pid(root), puppetdb_pid(root))
    cmhost.restart()
    fresh = cmhost.client()
    time.sleep(3 * 2)  # the new cmhost re-attached to both and checked them (2 s interval)
    assert server(fresh, NAME)["Status"] == "HEALTHY"
    assert (puppetserver_pid(root), puppetdb_pid(root)) == pids  # the same processes
    assert facts(created["kit"], COLLECTOR)


def test_a_restore_brings_back_puppetdbs_data(
        cmhost: Cmhost, created: dict[str, Any]) -> None:
    client = cmhost.client()  # cmhost was restarted
    kit: Kit = created["kit"]
    root = engine_dir(cmhost, created)
    before = facts(kit, COLLECTOR)
    assert before
    backup = backup_now(cmhost, client, NAME)
    # What the backup holds is then deleted from PuppetDB (PuppetDB's admin command).
    status, answer = kit.call("POST", "/pdb/admin/v1/cmd", body={
        "command": "delete", "version": 1, "payload": {"certname": COLLECTOR}})
    assert status == 200, answer
    assert not facts(kit, COLLECTOR) and not latest_report(kit, COLLECTOR)
    old_pid = puppetdb_pid(root)

    asked = time.monotonic()
    client.restore_server(ServerName=NAME, BackupId=backup["BackupId"])
    seen: list[str] = []

    def healthy() -> bool:
        settle(cmhost)
        seen.append(server(client, NAME)["Status"])
        return seen[-1] == "HEALTHY"

    wait_for(healthy, START_TIMEOUT, "HEALTHY after the restore")
    print(f"\nRestoreServer to HEALTHY: {time.monotonic() - asked:.0f} s")
    # HEALTHY only once PuppetDB holds the backup's data again: no waiting here.
    assert set(seen) <= {"RESTORING", "HEALTHY"}, (seen, events(client, NAME)[:6])
    assert puppetdb_pid(root) not in (None, old_pid)
    assert facts(kit, COLLECTOR) == before
    assert latest_report(kit, COLLECTOR)[0]["status"] == "changed"
    assert latest_report(kit, EXPORTER)
    assert [r["certname"] for r in kit.query("/pdb/query/v4/resources",
                                             ["=", "exported", True])] == [EXPORTER]
    wait_for(lambda: any(m.startswith("PuppetDB holds the backup's data again")
                         for m in events(client, NAME)), 60, "the restore's PuppetDB event")


def test_delete_server_stops_puppetdb_and_drops_its_database(
        cmhost: Cmhost, created: dict[str, Any]) -> None:
    client = cmhost.client()
    root = engine_dir(cmhost, created)
    name = database_name(server_id(created["ServerArn"]))
    pids = [puppetserver_pid(root), puppetdb_pid(root)]
    assert None not in pids and POSTGRES.database_exists(name)
    client.delete_server(ServerName=NAME)
    settle(cmhost, 60)
    wait_for(lambda: not root.exists(), 120, "the engine directory to go")
    assert not POSTGRES.database_exists(name)
    for pid, marker in zip(pids, (root / "conf" / "conf.d", root / "puppetdb" / "conf.d"),
                           strict=True):
        try:
            assert str(marker).encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            pass  # the process is gone
