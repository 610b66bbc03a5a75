"""The puppetserver driver's preparation, without starting a JVM (runs without the package)."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import pytest
from cryptography import x509

from cmhost.engines import archive, pki, puppet_ca, puppetserver
from cmhost.engines.base import DriverContext, EngineError, InvalidEngineAttribute, ServerSpec
from cmhost.engines.embedded import EmbeddedDriver
from cmhost.engines.embedded_identity import copy_material
from cmhost.engines.puppetserver import PuppetServerDriver, render_config
from tests.ops.helpers import csr_pem

SERVER_ID = "6f1c1f4e-1111-4222-8333-944444444444"


def spec(endpoint: str, family: str = "Puppet") -> ServerSpec:
    return ServerSpec(server_id=SERVER_ID, name="web", account="000000000000",
                      region="us-east-1", engine="Puppet" if family == "Puppet" else "Chef",
                      family=family, engine_version="2019", endpoint=endpoint,  # type: ignore[arg-type]
                      api_endpoint="http://127.0.0.1:4580")


@pytest.fixture
def driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PuppetServerDriver:
    monkeypatch.setattr(puppetserver, "missing_package", lambda: "")
    ctx = DriverContext(data_dir=tmp_path, port_min=28960, port_max=28969)
    return PuppetServerDriver(ctx)


def test_a_missing_package_is_a_clear_error(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(puppetserver, "PUPPETSERVER_JAR", tmp_path / "absent.jar")
    drv = PuppetServerDriver(DriverContext(data_dir=tmp_path))
    with pytest.raises(EngineError, match=r"apt-get install puppetserver"):
        drv.allocate_endpoint(SERVER_ID, "web", "us-east-1")
    with pytest.raises(EngineError, match=r"Debian package puppetserver"):
        drv.prepare(spec("127.0.0.1:28960"), {})


def test_prepare_makes_the_ca_and_writes_nothing_but_the_port(
        driver: PuppetServerDriver, tmp_path: Path) -> None:
    endpoint = driver.allocate_endpoint(SERVER_ID, "web", "us-east-1")
    assert endpoint == "127.0.0.1:28960"
    prepared = driver.prepare(spec(endpoint), {})
    material = prepared.material
    assert sorted(p.name for p in (tmp_path / "engines" / SERVER_ID).iterdir()) == ["port"]
    assert driver.public_attributes(spec(endpoint), material) == [
        ("PUPPET_API_CA_CERT", material.public["ca_cert"])]
    assert {"PUPPET_ADMIN_PASSWORD", "PUPPET_STARTER_KIT"} <= {
        n for n, _ in prepared.one_time_attributes}
    assert pki.verify_chain(material.public["server_cert"], material.public["ca_cert"])
    assert "127.0.0.1" in pki.certificate_names(material.public["server_cert"])
    client = x509.load_pem_x509_certificate(material.public[puppet_ca.CLIENT_CERT].encode())
    cli_auth = client.extensions.get_extension_for_oid(puppet_ca.PP_CLI_AUTH).value
    assert isinstance(cli_auth, x509.UnrecognizedExtension)
    assert cli_auth.value == b"\x0c\x04true"
    assert pki.verify_chain(material.public[puppet_ca.CLIENT_CERT], material.public["ca_cert"])
    assert material.secrets[puppet_ca.CLIENT_KEY].startswith("-----BEGIN PRIVATE KEY")


def test_the_ca_is_installed_as_puppetserver_expects(
        driver: PuppetServerDriver, tmp_path: Path) -> None:
    material = driver.prepare(spec("127.0.0.1:28960"), {}).material
    ca_dir = tmp_path / "ca"
    puppet_ca.install_ca(ca_dir, material)
    names = {p.name for p in ca_dir.iterdir()}
    assert {"ca_crt.pem", "ca_key.pem", "ca_pub.pem", "ca_crl.pem", "serial", "inventory.txt",
            "signed", "requests"} <= names
    assert (ca_dir / "ca_key.pem").stat().st_mode & 0o777 == 0o600
    assert (ca_dir / "serial").read_text() == "0001"
    assert (ca_dir / "ca_crt.pem").read_text() == material.public["ca_cert"]
    assert not puppet_ca.is_revoked(ca_dir, material.public["server_cert"])


def test_the_configuration_is_the_servers_own(tmp_path: Path) -> None:
    root = tmp_path / "engines" / SERVER_ID
    files = render_config(root=root, state=root / "state", conf=root / "conf",
                          ssl=root / "ssl", var=root / "var", run=root / "run",
                          log=root / "log", certname="127.0.0.1", host="127.0.0.1", port=28961,
                          alt_names=["127.0.0.1"], server_label="web")
    web = json.loads(files["conf.d/webserver.conf"])["webserver"]
    assert (web["ssl-host"], web["ssl-port"]) == ("127.0.0.1", 28961)
    jruby = json.loads(files["conf.d/puppetserver.conf"])["jruby-puppet"]
    for key in ("gem-home", "server-conf-dir", "server-code-dir", "server-var-dir",
                "server-run-dir", "server-log-dir"):
        assert jruby[key].startswith(str(root)), key
    assert "certname = 127.0.0.1" in files["puppet.conf"]
    assert f"cadir = {root / 'state' / 'ca'}" in files["puppet.conf"]
    assert "serverport = 28961" in files["puppet.conf"]
    assert "/etc/puppet" not in "".join(files.values())
    assert "analytics" not in files["services.d/bootstrap.cfg"]


def test_node_names_follow_puppets_certname_rules(driver: PuppetServerDriver) -> None:
    server = spec("127.0.0.1:28960")
    csr = {"PUPPET_NODE_CSR": csr_pem("web-1.example.com")}
    assert driver.check_node_request(server, "associate", "web-1.example.com", csr)
    # "admin" is the starter kit's client, which PuppetDB allows by name
    for bad in ("Web1", "node:1", "ends-", "127.0.0.1", puppet_ca.CLIENT_NAME, "admin"):
        attributes = {"PUPPET_NODE_CSR": csr_pem(bad)}
        with pytest.raises(InvalidEngineAttribute):
            driver.check_node_request(server, "associate", bad, attributes)
    with pytest.raises(EngineError):
        driver.prepare(spec("127.0.0.1:28960", family="Chef"), {})


def test_a_backup_of_an_embedded_server_restores_onto_puppetserver(
        driver: PuppetServerDriver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    embedded = EmbeddedDriver(DriverContext(data_dir=tmp_path / "embedded"), "Puppet")
    old = spec("web-abc.us-east-1.opsworks-cm.io")
    material = embedded.prepare(old, {}).material
    embedded.provision(old, material)
    embedded.associate_node(old, material, "kept.example.com",
                            {"PUPPET_NODE_CSR": csr_pem("kept.example.com")})
    embedded.associate_node(old, material, "gone.example.com",
                            {"PUPPET_NODE_CSR": csr_pem("gone.example.com")})
    embedded.disassociate_node(old, material, "gone.example.com", {})
    artifact = embedded.backup(old, material)

    started: list[str] = []
    monkeypatch.setattr(driver, "_start", lambda s, paths, restart: started.append(s.endpoint))
    new = spec(driver.allocate_endpoint(SERVER_ID, "web", "us-east-1"))
    restored = driver.restore(new, artifact)
    assert started == [new.endpoint]
    assert restored.public["ca_cert"] == material.public["ca_cert"]
    assert "127.0.0.1" in pki.certificate_names(restored.public["server_cert"])
    assert driver.node_names(new) == ["kept.example.com"]
    ca_dir = tmp_path / "engines" / SERVER_ID / "state" / "ca"
    assert (ca_dir / "ca_key.pem").stat().st_mode & 0o777 == 0o600
    # and the puppetserver backup of it restores again, with the same CA and nodes
    again = driver.backup(new, restored)
    assert driver.restore(new, again).public["ca_cert"] == material.public["ca_cert"]
    assert driver.node_names(new) == ["kept.example.com"]
    with pytest.raises(EngineError):
        driver.restore(new, again[:-10])  # a damaged artifact changes nothing
    assert driver.node_names(new) == ["kept.example.com"]


def test_a_server_certificate_that_is_not_also_a_client_certificate_is_renewed(
        driver: PuppetServerDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    """puppetserver presents its certificate to PuppetDB: servers made before that need a
    certificate with clientAuth, which their next maintenance (or restore) issues."""
    server = spec(driver.allocate_endpoint(SERVER_ID, "web", "us-east-1"))
    material = driver.prepare(server, {}).material
    assert pki.has_client_auth(material.public["server_cert"])
    old = copy_material(material)
    old.public["server_cert"], old.secrets["server_key"] = pki.issue_certificate(
        material.public["ca_cert"], material.secrets["ca_key"], "127.0.0.1", ["127.0.0.1"])
    assert not pki.has_client_auth(old.public["server_cert"])
    restarts: list[bool] = []
    monkeypatch.setattr(driver, "_start", lambda s, paths, restart: restarts.append(restart))
    driver.provision(server, old)
    renewed = driver.maintain(server, old, major_upgrade=False).material
    assert pki.has_client_auth(renewed.public["server_cert"])
    assert restarts == [False, True]  # restarted with the new certificate
    assert driver.maintain(server, renewed, major_upgrade=False).material is renewed


PUPPETDB_URL = "postgresql://cmhost:cmhost@127.0.0.1:5432/postgres"


@pytest.fixture
def restarts() -> list[bool]:
    """The `restart` argument of each puppetserver start of `pdb_driver`."""
    return []


@pytest.fixture
def pdb_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               restarts: list[bool]) -> PuppetServerDriver:
    """A driver with --puppetdb on whose PuppetDB and puppetserver are not started."""
    monkeypatch.setattr(puppetserver, "missing_package", lambda: "")
    monkeypatch.setattr(puppetserver, "missing_puppetdb", lambda: "")
    ctx = DriverContext(data_dir=tmp_path, port_min=28960, port_max=28969,
                        puppetdb_database_url=PUPPETDB_URL)
    made = PuppetServerDriver(ctx)
    monkeypatch.setattr(made, "_start", lambda s, paths, restart: restarts.append(restart))
    monkeypatch.setattr(made.puppetdb, "start", lambda site, restart=False: None)
    return made


def test_with_puppetdb_the_kit_names_it_and_puppetserver_stores_there(
        pdb_driver: PuppetServerDriver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        restarts: list[bool]) -> None:
    server = spec(pdb_driver.allocate_endpoint(SERVER_ID, "web", "us-east-1"))
    root = tmp_path / "engines" / SERVER_ID
    assert sorted(p.name for p in root.iterdir()) == ["port", "puppetdb.port"]
    pdb_port = int((root / "puppetdb.port").read_text())
    assert pdb_port != int((root / "port").read_text())
    prepared = pdb_driver.prepare(server, {})
    kit = base64.b64decode(dict(prepared.one_time_attributes)["PUPPET_STARTER_KIT"])
    with zipfile.ZipFile(io.BytesIO(kit)) as archive:
        conf = json.loads(archive.read("web/.config/puppetlabs/client-tools/puppetdb.conf"))
    assert conf["puppetdb"]["server_urls"] == f"https://127.0.0.1:{pdb_port}"
    pdb_driver.provision(server, prepared.material)
    assert f"server_urls = https://127.0.0.1:{pdb_port}" in (root / "conf/puppetdb.conf"
                                                            ).read_text()
    assert "terminus: puppetdb" in (root / "conf/routes.yaml").read_text()
    puppet_conf = (root / "conf/puppet.conf").read_text()
    assert "storeconfigs_backend = puppetdb" in puppet_conf
    assert "reports = store,puppetdb" in puppet_conf
    assert json.loads((root / "engine.json").read_text())["puppetdb"] is True

    # --puppetdb turned off later: puppetserver no longer uses it (restarted to see that)
    off = PuppetServerDriver(DriverContext(data_dir=tmp_path, port_min=28960, port_max=28969))
    monkeypatch.setattr(off, "_start", lambda s, paths, restart: restarts.append(restart))
    del restarts[:]
    off.resume(server, prepared.material)
    off.resume(server, prepared.material)
    assert restarts == [True, False]
    assert not (root / "conf/puppetdb.conf").exists()
    assert not (root / "conf/routes.yaml").exists()
    assert "storeconfigs" not in (root / "conf/puppet.conf").read_text()
    assert "reports =" not in (root / "conf/puppet.conf").read_text()


def test_with_puppetdb_missing_creation_names_the_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(puppetserver, "missing_package", lambda: "")
    monkeypatch.setattr(puppetserver, "missing_puppetdb",
                        lambda: "PuppetDB needs puppetdb.jar; apt-get install puppetdb")
    drv = PuppetServerDriver(DriverContext(data_dir=tmp_path,
                                           puppetdb_database_url=PUPPETDB_URL))
    with pytest.raises(EngineError, match=r"apt-get install puppetdb"):
        drv.allocate_endpoint(SERVER_ID, "web", "us-east-1")
    with pytest.raises(EngineError, match=r"apt-get install puppetdb"):
        drv.prepare(spec("127.0.0.1:28960"), {})


def test_a_server_certificate_from_before_puppetdb_is_wired_once_maintenance_renews_it(
        pdb_driver: PuppetServerDriver, tmp_path: Path, restarts: list[bool]) -> None:
    """A certificate without clientAuth would be refused by PuppetDB, failing every agent
    run: puppetserver is wired to PuppetDB only once maintenance has renewed it."""
    server = spec(pdb_driver.allocate_endpoint(SERVER_ID, "web", "us-east-1"))
    material = pdb_driver.prepare(server, {}).material
    old = copy_material(material)
    old.public["server_cert"], old.secrets["server_key"] = pki.issue_certificate(
        material.public["ca_cert"], material.secrets["ca_key"], "127.0.0.1", ["127.0.0.1"])
    root = tmp_path / "engines" / SERVER_ID
    pdb_driver.provision(server, old)
    pdb_driver.resume(server, old)
    assert not (root / "conf" / "puppetdb.conf").exists()
    assert json.loads((root / "engine.json").read_text())["puppetdb"] is False
    renewed = pdb_driver.maintain(server, old, major_upgrade=False).material
    assert pki.has_client_auth(renewed.public["server_cert"])
    assert (root / "conf" / "puppetdb.conf").exists()
    assert restarts == [False, False, True]


def test_a_backup_holds_puppetdbs_export_and_a_damaged_one_is_refused_unchanged(
        pdb_driver: PuppetServerDriver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = spec(pdb_driver.allocate_endpoint(SERVER_ID, "web", "us-east-1"))
    material = pdb_driver.prepare(server, {}).material
    pdb_driver.provision(server, material)
    monkeypatch.setattr(pdb_driver.puppetdb, "export", lambda site: b"not an export")
    artifact = pdb_driver.backup(server, material)
    assert archive.unpack(artifact).files["puppetdb/export.tgz"] == b"not an export"
    restored: list[bytes | None] = []
    monkeypatch.setattr(pdb_driver.puppetdb, "restore",
                        lambda site, archive: restored.append(archive))
    monkeypatch.setattr(pdb_driver.puppetdb, "check_database", lambda: None)
    serial = tmp_path / "engines" / SERVER_ID / "state" / "ca" / "serial"
    serial.write_text("0042")
    with pytest.raises(EngineError, match="PuppetDB archive is not a gzipped tar"):
        pdb_driver.restore(server, artifact)
    assert serial.read_text() == "0042" and restored == []  # nothing changed
    # With --puppetdb off, a backup's export is ignored.
    off = PuppetServerDriver(DriverContext(data_dir=tmp_path, port_min=28960, port_max=28969))
    monkeypatch.setattr(off, "_start", lambda s, paths, restart: None)
    off.restore(server, artifact)
    assert restored == [] and serial.read_text() != "0042"
