"""PuppetDB's configuration, database URL and names, and puppetserver's side of the wiring,
without running anything (tests/real_engines/test_puppetdb.py runs a real PuppetDB)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from cmhost.engines.base import DriverContext, EngineError
from cmhost.engines.puppetdb import PuppetDB
from cmhost.engines.puppetdb_config import (
    Layout,
    TlsFiles,
    puppetserver_config,
    render_puppetdb,
    with_server_settings,
)
from cmhost.engines.puppetdb_database import DatabaseServer, database_name
from cmhost.engines.puppetdb_http import check_archive
from cmhost.engines.supervisor import Supervisor, reserve_port

SECRET = "s3cr;t#pw"
URL = f"postgresql+psycopg://pdb:{SECRET.replace(';', '%3B').replace('#', '%23')}" \
      "@db.example:6543/postgres?sslmode=verify-full&sslrootcert=/etc/ssl/pg.pem"


# --- the database URL ---------------------------------------------------------------------


@pytest.mark.parametrize("url, expected", [
    (URL, ("db.example", 6543, "pdb", "postgres", SECRET)),
    ("postgresql://u:p@127.0.0.1/admin", ("127.0.0.1", 5432, "u", "admin", "p")),
    ("postgres://u@[::1]:5433", ("::1", 5433, "u", "postgres", None)),
    ("host=10.0.0.5 port=5444 user=u password=p dbname=x", ("10.0.0.5", 5444, "u", "x", "p")),
])
def test_database_urls_of_sqlalchemy_and_libpq_forms(url: str, expected: tuple[object, ...]
                                                     ) -> None:
    server = DatabaseServer.from_url(url)
    assert (server.host, server.port, server.user, server.admin_database,
            server.password) == expected


def test_the_password_stays_out_of_reprs_and_messages() -> None:
    server = DatabaseServer.from_url(URL)
    assert SECRET not in repr(server) and "s3cr" not in server.display
    assert server.display == "pdb@db.example:6543"
    assert server.jdbc_subname("cmhost_pdb_x") == (
        "//db.example:6543/cmhost_pdb_x?sslmode=verify-full&sslrootcert=/etc/ssl/pg.pem")
    for bad in ("postgresql://u:hunter2@/db", "postgresql://u:hunter2@/db?host=/run/pg",
                "mysql://u:hunter2@h/db", "postgresql://:hunter2@h/db", "host=h password=x'"):
        with pytest.raises(EngineError) as caught:
            DatabaseServer.from_url(bad)
        assert "hunter2" not in str(caught.value) and "password=x" not in str(caught.value)


def test_database_names_fit_postgresql() -> None:
    assert database_name("6f1c1d0a-2b3c-4d5e-8f90-123456789abc") == \
        "cmhost_pdb_6f1c1d0a2b3c4d5e8f90123456789abc"
    for odd in ("Server.With.Dots", "x" * 80):
        name = database_name(odd)
        assert name.startswith("cmhost_pdb_") and len(name) <= 63
        assert name.replace("_", "").isalnum() and name == name.lower()
    assert database_name("x" * 80) != database_name("x" * 81)


# --- PuppetDB's files ---------------------------------------------------------------------


def rendered(tmp_path: Path) -> dict[str, tuple[str, int]]:
    tls = TlsFiles(ca=tmp_path / "ssl/certs/ca.pem", cert=tmp_path / "ssl/certs/h.pem",
                   key=tmp_path / "ssl/private_keys/h.pem", crl=tmp_path / "ssl/crl.pem")
    return render_puppetdb(Layout(tmp_path / "puppetdb"), host="127.0.0.1", port=18150,
                           tls=tls, database=DatabaseServer.from_url(URL),
                           database_name="cmhost_pdb_abc",
                           allowed=["puppet.example", "cmhost-ca-client", "puppet.example"])


def test_puppetdb_listens_with_tls_only_and_allows_listed_certificates(tmp_path: Path
                                                                       ) -> None:
    files = rendered(tmp_path)
    jetty = json.loads(files["conf.d/jetty.conf"][0])["jetty"]
    assert "port" not in jetty and "host" not in jetty  # no cleartext listener
    assert (jetty["ssl-host"], jetty["ssl-port"], jetty["client-auth"]) == (
        "127.0.0.1", 18150, "need")
    assert jetty["ssl-cert"].endswith("ssl/certs/h.pem")
    assert jetty["ssl-crl-path"].endswith("ssl/crl.pem")
    config = json.loads(files["conf.d/config.conf"][0])
    assert config["global"]["vardir"] == str(tmp_path / "puppetdb" / "var")
    assert config["puppetdb"]["certificate-allowlist"] == str(tmp_path / "puppetdb/allowlist")
    assert files["allowlist"][0] == "puppet.example\ncmhost-ca-client\n"
    assert "dashboard" not in files["bootstrap.cfg"][0]


def test_only_the_database_file_holds_the_password(tmp_path: Path) -> None:
    files = rendered(tmp_path)
    text, mode = files["conf.d/database.conf"]
    assert mode == 0o600
    assert json.loads(text)["database"] == {
        "subname": "//db.example:6543/cmhost_pdb_abc?sslmode=verify-full"
                   "&sslrootcert=/etc/ssl/pg.pem",
        "username": "pdb", "password": SECRET}
    assert all(SECRET not in text for name, (text, _) in files.items()
               if name != "conf.d/database.conf")


# --- puppetserver's side ------------------------------------------------------------------


PUPPET_CONF = """\
# Written by cmhost.
[main]
certname = puppet.example

[server]
cadir = /x/ca
reports = store
autosign = false
"""


def test_puppetserver_stores_in_puppetdb() -> None:
    config = puppetserver_config("https://puppet.example:18150")
    merged = config.merge({"puppet.conf": PUPPET_CONF, "conf.d/global.conf": "{}"})
    assert merged["conf.d/global.conf"] == "{}"
    assert "server_urls = https://puppet.example:18150\n" in merged["puppetdb.conf"]
    assert merged["puppetdb.conf"].startswith("# Written by cmhost") and "[main]" in \
        merged["puppetdb.conf"]
    assert merged["routes.yaml"].splitlines()[1:] == [
        "master:", "  facts:", "    terminus: puppetdb", "    cache: yaml"]
    assert merged["puppet.conf"] == """\
# Written by cmhost.
[main]
certname = puppet.example

[server]
cadir = /x/ca
autosign = false
storeconfigs = true
storeconfigs_backend = puppetdb
reports = store,puppetdb
"""


def test_server_settings_go_into_their_section_only() -> None:
    settings = [("storeconfigs", "true")]
    text = with_server_settings("[server]\na = 1\n\n[agent]\nstoreconfigs = false\n", settings)
    assert text == "[server]\na = 1\nstoreconfigs = true\n\n[agent]\nstoreconfigs = false\n"
    assert with_server_settings("[main]\nx = 1\n", settings) == \
        "[main]\nx = 1\n\n[server]\nstoreconfigs = true\n"
    assert with_server_settings(text, settings) == text  # idempotent


# --- ports, archives ----------------------------------------------------------------------


def test_a_part_port_is_never_a_server_or_another_part_port(tmp_path: Path) -> None:
    ctx = DriverContext(data_dir=tmp_path, engine_host="127.0.0.1", port_min=28900,
                        port_max=28910, puppetdb_database_url="postgresql://u@127.0.0.1/p")
    pdb = PuppetDB(ctx, Supervisor())
    engines = tmp_path / "engines"
    first = reserve_port(engines / "a", "127.0.0.1", 28900, 28910)
    part = pdb.reserve_port(engines / "a")
    other = pdb.reserve_port(engines / "b")
    code = reserve_port(engines / "b", "127.0.0.1", 28900, 28910, part="code-manager")
    assert len({first, part, other, code}) == 4
    assert (engines / "a" / "puppetdb.port").read_text().strip() == str(part)
    assert pdb.reserve_port(engines / "a") == part
    assert pdb.url_of(engines / "a", "puppet.example") == f"https://puppet.example:{part}"
    assert pdb.url_of(engines / "b", "::1") == f"https://[::1]:{other}"


def archive(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(out.getvalue())


def test_archives_are_checked_before_use() -> None:
    good = {"puppetdb-bak/export-metadata.json": b"{}",
            "puppetdb-bak/facts/web-1.json": b"{}",
            "puppetdb-bak/reports/web-1-0123456789012345678901234567890123456789.json": b"{}"}
    assert check_archive(archive(good)) == 2
    for bad, why in [
        (b"plain bytes", "not a gzipped tar"),
        (archive({"puppetdb-bak/facts/x.json": b"{}"}), "no export-metadata"),
        (archive({**good, "../etc/passwd": b""}), "outside"),
        (archive({**good, "puppetdb-bak/../../x": b""}), "outside"),
    ]:
        with pytest.raises(EngineError, match=why):
            check_archive(bad)
