"""A real PuppetDB run by cmhost.engines.puppetdb, in a database of its own on PostgreSQL.

The tests of this module share two PuppetDB start-ups and run in order: a server's PuppetDB
starts with the server's certificate, TLS only, its password nowhere but a 0600 file; it
takes facts, a report and a catalog with an exported resource through its command API from an
allowed certificate and serves them back through the query API; certificates it does not
allow are refused; its export, restored into another server's fresh PuppetDB after the first
is removed (database dropped), serves the same data.

PostgreSQL: CMHOST_TEST_PUPPETDB_DATABASE_URL, else the CI's superuser
postgresql://cmhost:cmhost@127.0.0.1:5432/postgres, which makes a role for the test that may
only log in and CREATE DATABASE, with a password unlike anything else on disk (so the test can
look for it), given to PuppetDB as --puppetdb-database-url would be.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import ssl
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from cmhost.engines import pki, puppet_ca
from cmhost.engines.base import DriverContext, EngineError
from cmhost.engines.puppetdb import PuppetDB, Site, TlsFiles, missing_package
from cmhost.engines.puppetdb_database import DatabaseServer, database_name
from cmhost.engines.puppetdb_http import PuppetDBClient, PuppetDBRefused
from cmhost.engines.supervisor import Supervisor

if missing_package():
    pytest.skip(missing_package(), allow_module_level=True)

ADMIN = DatabaseServer.from_url(os.environ.get(
    "CMHOST_TEST_PUPPETDB_DATABASE_URL", "postgresql://cmhost:cmhost@127.0.0.1:5432/postgres"))
try:
    ADMIN.connect().close()
except EngineError as exc:
    pytest.skip(f"no PostgreSQL for PuppetDB (CMHOST_TEST_PUPPETDB_DATABASE_URL): {exc}",
                allow_module_level=True)
ROLE = f"cmhost_pdb_test_{secrets.token_hex(4)}"
PASSWORD = f"pw;#{secrets.token_hex(12)}'"  # INI comment characters and a quote
DATABASE_URL = (f"postgresql+psycopg://{ROLE}:{urllib.parse.quote(PASSWORD, safe='')}@"
                f"{ADMIN.host}:{ADMIN.port}/{ADMIN.admin_database}")
SERVER = DatabaseServer.from_url(DATABASE_URL)

PORTS = (28400, 28449)
NODE = "web-1.example.com"
PUPPETSERVER = "puppet.example.com"  # the certificate puppetserver would use as a client


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> dict[str, str]:
    """A CA, the server certificate (127.0.0.1), and client certificates of the CA."""
    ca_cert, ca_key = pki.generate_ca("Test Puppet CA")
    server_cert, server_key = pki.issue_certificate(ca_cert, ca_key, "localhost",
                                                    ["localhost", "127.0.0.1"])
    cmhost_cert, cmhost_key = puppet_ca.issue_client(ca_cert, ca_key)
    ps_cert, ps_key = pki.issue_certificate(ca_cert, ca_key, PUPPETSERVER, [], server=False)
    node_cert, node_key = pki.issue_certificate(ca_cert, ca_key, NODE, [], server=False)
    return {"ca": ca_cert, "ca_key": ca_key, "server_cert": server_cert, "server_key": server_key,
            "cmhost_cert": cmhost_cert, "cmhost_key": cmhost_key,
            "ps_cert": ps_cert, "ps_key": ps_key, "node_cert": node_cert, "node_key": node_key}


@pytest.fixture(scope="module", autouse=True)
def role() -> Iterator[str]:
    """The test's role: LOGIN CREATEDB, nothing more (pg_trgm is a trusted extension)."""
    with ADMIN.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
            sql.Identifier(ROLE), sql.Literal(PASSWORD)))
    yield ROLE
    with ADMIN.connect() as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("puppetdb"))


@pytest.fixture(scope="module")
def pdb(data_dir: Path) -> Iterator[PuppetDB]:
    ctx = DriverContext(data_dir=data_dir, engine_host="127.0.0.1", port_min=PORTS[0],
                        port_max=PORTS[1], puppetdb_database_url=DATABASE_URL)
    supervisor = Supervisor()
    made = PuppetDB(ctx, supervisor)
    yield made
    for server in (data_dir / "engines").glob("*"):
        if server.is_dir():
            made.remove(server.name, server)
    supervisor.close()


def make_site(data_dir: Path, ca: dict[str, str]) -> Site:
    """A server's directory with the ssldir files puppetserver would have written."""
    server_id = str(uuid.uuid4())
    server_dir = data_dir / "engines" / server_id
    ssl_dir = server_dir / "ssl"
    for sub in ("certs", "private_keys"):
        (ssl_dir / sub).mkdir(parents=True)
    (ssl_dir / "certs" / "ca.pem").write_text(ca["ca"])
    (ssl_dir / "certs" / "localhost.pem").write_text(ca["server_cert"])
    key = ssl_dir / "private_keys" / "localhost.pem"
    key.write_text(ca["server_key"])
    key.chmod(0o600)
    tls = TlsFiles(ca=ssl_dir / "certs" / "ca.pem", cert=ssl_dir / "certs" / "localhost.pem",
                   key=key)
    return Site(server_id=server_id, name=f"pdb-{server_id[:8]}", server_dir=server_dir,
                host_name="127.0.0.1", tls=tls,
                allowed=(PUPPETSERVER, puppet_ca.CLIENT_NAME),
                client_cert=ca["cmhost_cert"], client_key=ca["cmhost_key"])


@pytest.fixture(scope="module")
def first(pdb: PuppetDB, data_dir: Path, ca: dict[str, str]) -> Site:
    """A server's PuppetDB, started and serving."""
    site = make_site(data_dir, ca)
    pdb.start(site)
    pdb.wait_until_running(site)
    return site


def client_as(pdb: PuppetDB, site: Site, ca: dict[str, str], who: str) -> PuppetDBClient:
    context = puppet_ca.tls_context(ca["ca"], (ca[f"{who}_cert"], ca[f"{who}_key"]))
    return PuppetDBClient("127.0.0.1", pdb.port(site), context)


def eventually(read: Callable[[], list[dict[str, Any]]], timeout: float = 60.0
               ) -> list[dict[str, Any]]:
    """What `read` returns once it is not empty (commands are stored asynchronously)."""
    deadline = time.monotonic() + timeout
    while not (rows := read()):
        assert time.monotonic() < deadline, "PuppetDB did not store the command in time"
        time.sleep(0.5)
    return rows


def database_exists(name: str) -> bool:
    return SERVER.database_exists(name)


def extensions(name: str) -> set[str]:
    with SERVER.connect(name) as conn:
        return {str(row[0]) for row in conn.execute("SELECT extname FROM pg_extension")}


def pid_of(pdb: PuppetDB, site: Site) -> int:
    status = pdb.supervisor.status(pdb.key(site.server_id))
    assert status is not None and status.alive and status.pid is not None
    return status.pid


def listening_ports(pid: int) -> set[int]:
    """The TCP ports the process listens on (its socket inodes in /proc/net/tcp{,6})."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


# --- what nodes send ------------------------------------------------------------------------


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def facts() -> dict[str, Any]:
    return {"certname": NODE, "environment": "production", "producer_timestamp": now(),
            "producer": PUPPETSERVER,
            "values": {"os": {"family": "Debian", "release": {"major": "12"}}, "role": "web"}}


def report() -> dict[str, Any]:
    at = now()
    return {
        "certname": NODE, "environment": "production", "puppet_version": "7.23.0",
        "report_format": 12, "configuration_version": "1700000000", "start_time": at,
        "end_time": at, "producer_timestamp": at, "producer": PUPPETSERVER,
        "corrective_change": False, "noop": False, "noop_pending": False,
        "transaction_uuid": str(uuid.uuid4()), "catalog_uuid": str(uuid.uuid4()),
        "code_id": None, "job_id": None, "cached_catalog_status": "not_used",
        "status": "changed", "type": "agent",
        "resources": [{
            "skipped": False, "timestamp": at, "resource_type": "Notify",
            "resource_title": "hello", "file": "/etc/puppet/code/site.pp", "line": 1,
            "containment_path": ["Stage[main]", "Main", "Notify[hello]"],
            "corrective_change": False,
            "events": [{"status": "success", "corrective_change": False, "timestamp": at,
                        "property": "message", "new_value": "hello", "old_value": "absent",
                        "message": "defined 'message' as 'hello'", "name": "message_changed"}],
        }],
        "metrics": [{"category": "time", "name": "total", "value": 1.25}],
        "logs": [{"file": None, "line": None, "level": "notice", "message": "hello",
                  "source": "Notify[hello]", "tags": ["notice"], "time": at}],
    }


def catalog() -> dict[str, Any]:
    return {"certname": NODE, "version": "1700000000", "environment": "production",
            "transaction_uuid": str(uuid.uuid4()), "catalog_uuid": str(uuid.uuid4()),
            "producer_timestamp": now(), "producer": PUPPETSERVER, "code_id": None,
            "job_id": None, "edges": [],
            "resources": [{"type": "Host", "title": NODE, "exported": True,
                           "tags": ["host", "web"], "file": None, "line": None,
                           "parameters": {"ip": "192.0.2.10"}}]}


def stored(client: PuppetDBClient) -> dict[str, Any]:
    """The node's facts, reports and exported resources, once all three are there."""
    node = ["=", "certname", NODE]
    return {
        "facts": {f["name"]: f["value"]
                  for f in eventually(lambda: client.query("facts", node))},
        "reports": eventually(lambda: client.query("reports", node)),
        "exported": eventually(lambda: client.query("resources", ["=", "exported", True])),
    }


def check_stored(data: dict[str, Any]) -> None:
    assert data["facts"] == {"os": {"family": "Debian", "release": {"major": "12"}},
                             "role": "web"}
    [last] = data["reports"]
    assert last["status"] == "changed" and last["puppet_version"] == "7.23.0"
    assert last["resource_events"]["data"][0]["new_value"] == "hello"
    [host] = data["exported"]
    assert (host["type"], host["title"], host["parameters"]) == (
        "Host", NODE, {"ip": "192.0.2.10"})


# --- tests --------------------------------------------------------------------------------


def test_puppetdb_serves_tls_only_with_the_servers_certificate(pdb: PuppetDB,
                                                               first: Site) -> None:
    assert pdb.check_health(first).status == "HEALTHY"
    port = pdb.port(first)
    assert PORTS[0] <= port <= PORTS[1]
    root = first.server_dir / "puppetdb"
    assert (first.server_dir / "puppetdb.port").read_text().strip() == str(port)
    assert pdb.url(first) == f"https://127.0.0.1:{port}"
    pid = pid_of(pdb, first)
    assert listening_ports(pid) == {port}  # no cleartext port
    served = ssl.get_server_certificate(("127.0.0.1", port))
    assert pki.certificate_names(served) == pki.certificate_names(first.tls.cert.read_text())
    # Its own database, with the extension PuppetDB needs.
    name = database_name(first.server_id)
    assert database_exists(name) and "pg_trgm" in extensions(name)
    # The password only in a private file: not in argv, the environment or other files.
    database_conf = root / "conf.d" / "database.conf"
    assert (database_conf.stat().st_mode & 0o777) == 0o600
    if PASSWORD:
        assert PASSWORD in database_conf.read_text()
        assert PASSWORD.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert PASSWORD.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
        for path in root.rglob("*"):
            if path.is_file() and path != database_conf and path.stat().st_size < 10**6:
                assert PASSWORD.encode() not in path.read_bytes(), path


def test_facts_report_and_catalog_are_stored_and_queried(pdb: PuppetDB, first: Site,
                                                         ca: dict[str, str]) -> None:
    client = client_as(pdb, first, ca, "ps")
    client.submit("replace_facts", 5, NODE, facts())
    client.submit("store_report", 8, NODE, report())
    client.submit("replace_catalog", 9, NODE, catalog())
    check_stored(stored(client))


def test_only_allowed_certificates_use_the_api(pdb: PuppetDB, first: Site,
                                               ca: dict[str, str]) -> None:
    # A node's certificate, signed by the server's CA but not allowed: refused.
    with pytest.raises(PuppetDBRefused, match="HTTP 403"):
        client_as(pdb, first, ca, "node").query("facts")
    # No client certificate, or one of another CA: no TLS session at all.
    bare = PuppetDBClient("127.0.0.1", pdb.port(first),
                          ssl.create_default_context(cadata=ca["ca"]))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        bare.query("facts")
    # An allowed name on a certificate that is not for clients (serverAuth only, as cmhost's
    # server certificates were): Java's TLS refuses it, so puppetserver's own certificate must
    # carry clientAuth too to be its PuppetDB client.
    server_only = pki.issue_certificate(ca["ca"], ca["ca_key"], PUPPETSERVER, [PUPPETSERVER])
    with pytest.raises((ssl.SSLError, ConnectionError)):
        PuppetDBClient("127.0.0.1", pdb.port(first),
                       puppet_ca.tls_context(ca["ca"], server_only)).query("facts")
    other_ca, other_key = pki.generate_ca("Another CA")
    stranger = puppet_ca.issue_client(other_ca, other_key)
    foreign = PuppetDBClient("127.0.0.1", pdb.port(first),
                             puppet_ca.tls_context(ca["ca"], stranger))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        foreign.query("facts")


def test_export_then_restore_into_a_fresh_puppetdb(pdb: PuppetDB, first: Site, data_dir: Path,
                                                   ca: dict[str, str]) -> None:
    archive = pdb.export(first)
    old_name = database_name(first.server_id)
    pdb.remove(first.server_id, first.server_dir)
    assert not database_exists(old_name)
    assert not (first.server_dir / "puppetdb").exists()
    assert not (first.server_dir / "puppetdb.port").exists()
    assert pdb.supervisor.status(pdb.key(first.server_id)) is None
    assert pdb.check_health(first).status == "CONNECTION_LOST"

    second = make_site(data_dir, ca)
    with pytest.raises(EngineError, match="not a gzipped tar"):
        pdb.restore(second, b"not an archive")
    assert not (second.server_dir / "puppetdb").exists()  # refused before anything changed

    pdb.restore(second, archive)  # returns at once: the import waits for PuppetDB to serve
    staged = second.server_dir / "puppetdb" / "restore.tgz"
    assert staged.read_bytes() == archive and (staged.stat().st_mode & 0o777) == 0o600
    assert pdb.check_health(second).status != "HEALTHY"
    pdb.wait_until_running(second)  # HEALTHY once every command of the archive is stored
    assert not staged.exists()
    assert [e.message for e in pdb.take_events()] == [
        "PuppetDB holds the backup's data again (3 records)."]
    check_stored(stored(client_as(pdb, second, ca, "ps")))

    name = database_name(second.server_id)
    assert database_exists(name)
    pdb.remove(second.server_id, second.server_dir)
    assert not database_exists(name)
    pdb.remove(second.server_id, second.server_dir)  # idempotent
