"""PuppetDB beside a Puppet server: Debian's puppetdb as a supervised JVM with a database of
its own, serving TLS with the server's certificate, backed up through its admin archive.

A server's PuppetDB has its TLS port recorded in `<data-dir>/engines/<server id>/puppetdb.port`
(from the engines' range, reserved like the servers' ports) and lives in
`<data-dir>/engines/<server id>/puppetdb/`:

    database.json   where its database is (host, port, user, name; never the password)
    conf.d/         config.conf, database.conf (0600: the password), jetty.conf, auth.conf
    allowlist       the certificate names that may use its API
    bootstrap.cfg, logback.xml, request-logging.xml
    var/            its vardir (the command queue, stockpile/)
    log/ run/       its logs; pid file, restart file, tmp/
    restore.tgz     a backup's archive waiting to be imported (0600; see puppetdb_restore)

It listens with TLS only, presenting the server's own certificate and trusting the server's CA
(files of puppetserver's ssldir), so puppetserver reaches it as it reaches itself. The
supervisor key is `<server id>/puppetdb`.

Backups use PuppetDB's export (GET /pdb/admin/v1/archive) rather than pg_dump: it is the
documented way to move PuppetDB's data, it is independent of the PostgreSQL server's version
(pg_dump must be at least the server's version, and cmhost may be given any PostgreSQL) and of
PuppetDB's schema (an import is a series of commands, which a newer PuppetDB migrates), and
it needs nothing but the running PuppetDB. It holds what PuppetDB serves: every node's facts,
catalog (exported resources with it) and reports, and fact expiry settings. A restore empties
the database and the command queue and imports the archive in the background once PuppetDB
serves; its health is UNHEALTHY ("restoring") until every command is stored.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import shutil
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cmhost.engines import puppet_ca
from cmhost.engines.base import DriverContext, EngineError, EngineEvent, Health
from cmhost.engines.puppetdb_config import (
    Layout,
    PuppetserverConfig,
    TlsFiles,
    puppetserver_config,
    render_puppetdb,
)
from cmhost.engines.puppetdb_database import DatabaseServer, database_name
from cmhost.engines.puppetdb_http import PuppetDBClient, check_archive
from cmhost.engines.puppetdb_process import missing_package, process_spec
from cmhost.engines.puppetdb_restore import Imports, in_progress, stage, unstage
from cmhost.engines.supervisor import (
    ProcessSpec,
    Supervisor,
    SupervisorError,
    port_file,
    port_is_free,
    read_pid,
    reserve_port,
)
from cmhost.messages import caller_message

__all__ = ["PuppetDB", "PuppetserverConfig", "Site", "TlsFiles", "missing_package"]

log = logging.getLogger("cmhost.puppetdb")

PART = "puppetdb"
# A first start migrates the database: ~40 s alone on two cores, 100 s on two busy ones.
START_TIMEOUT = 240.0
HEALTH_TIMEOUT = 5.0


@dataclass(frozen=True)
class Site:
    """What the driver tells about one server's PuppetDB."""

    server_id: str
    name: str  # the server's name, for messages
    server_dir: Path  # <data-dir>/engines/<server id>
    host_name: str  # the name clients reach it by (one of the server certificate's names)
    tls: TlsFiles
    allowed: tuple[str, ...]  # certificate names that may use PuppetDB (puppetserver, cmhost)
    client_cert: str  # what cmhost presents (health, export, import); must be in `allowed`
    client_key: str = field(repr=False)


class PuppetDB:
    """The PuppetDBs of one driver's servers."""

    def __init__(self, ctx: DriverContext, supervisor: Supervisor) -> None:
        self._ctx = ctx
        self.supervisor = supervisor
        self._contexts: dict[tuple[str, str], ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self._imports = Imports()

    @property
    def enabled(self) -> bool:
        """Whether cmhost runs a PuppetDB beside each Puppet server (--puppetdb on, which
        comes with a database URL)."""
        return self._ctx.puppetdb_database_url is not None

    @staticmethod
    def key(server_id: str) -> str:
        return f"{server_id}/{PART}"

    @staticmethod
    def layout(server_dir: Path) -> Layout:
        return Layout(server_dir / PART)

    def exists(self, server_dir: Path) -> bool:
        """Whether the server has a PuppetDB (one was started for it and not removed)."""
        return (self.layout(server_dir).root / "database.json").exists()

    def _database(self) -> DatabaseServer:
        if self._ctx.puppetdb_database_url is None:
            raise EngineError("PuppetDB is off (--puppetdb off): it has no database server.")
        return DatabaseServer.from_url(self._ctx.puppetdb_database_url)

    def check_database(self) -> None:
        """EngineError when the PostgreSQL server does not take a connection (a restore
        checks this before it changes anything)."""
        self._database().connect().close()

    # ------------------------------------------------------------------ address, config

    def reserve_port(self, server_dir: Path) -> int:
        """The PuppetDB port of the server (reserved on first use, then the recorded one):
        the driver may call this from allocate_endpoint, so that the starter kit made in
        `prepare` can name the URL before anything runs."""
        try:
            return reserve_port(server_dir, self._ctx.engine_host, self._ctx.port_min,
                                self._ctx.port_max, part=PART)
        except SupervisorError as exc:
            raise EngineError(f"PuppetDB has no port: {exc}") from None

    def url_of(self, server_dir: Path, host_name: str) -> str:
        """https://<host_name>:<port>, what puppetserver and the starter kit use."""
        host = f"[{host_name}]" if ":" in host_name else host_name
        return f"https://{host}:{self.reserve_port(server_dir)}"

    def port(self, site: Site) -> int:
        return self.reserve_port(site.server_dir)

    def url(self, site: Site) -> str:
        return self.url_of(site.server_dir, site.host_name)

    def puppetserver_config(self, site: Site) -> PuppetserverConfig:
        """What puppetserver's confdir needs to store facts, catalogs and reports here."""
        return puppetserver_config(self.url(site))

    def _write(self, site: Site, database: DatabaseServer) -> bool:
        """PuppetDB's files (idempotent); True when one changed."""
        paths = self.layout(site.server_dir)
        for directory in (paths.var, paths.log, paths.run / "tmp"):
            directory.mkdir(parents=True, exist_ok=True)
        name = database_name(site.server_id)
        record = {"host": database.host, "port": database.port, "user": database.user,
                  "database": name}
        changed = puppet_ca.write_if_changed(paths.root / "database.json",
                                             json.dumps(record, indent=2) + "\n")
        files = render_puppetdb(paths, host=self._ctx.engine_host, port=self.port(site),
                                tls=site.tls, database=database, database_name=name,
                                allowed=site.allowed)
        for relative, (text, mode) in files.items():
            changed = puppet_ca.write_if_changed(paths.root / relative, text, mode=mode) \
                or changed
        return changed

    def process(self, server_dir: Path, name: str = "") -> ProcessSpec:
        return process_spec(self.layout(server_dir), name or server_dir.name)

    # ------------------------------------------------------------------------ lifecycle

    def start(self, site: Site, *, restart: bool = False) -> None:
        """Create the database if missing, write the configuration, and run PuppetDB (without
        waiting for it to serve). A running PuppetDB is restarted when `restart` is given
        (its certificate changed) or its configuration changed; else it is left running."""
        problem = missing_package()
        if problem:
            raise EngineError(problem)
        database = self._database()
        database.ensure_database(database_name(site.server_id))
        changed = self._write(site, database)
        process = self.process(site.server_dir, site.name)
        key, port = self.key(site.server_id), self.port(site)
        try:
            status = self.supervisor.status(key)
            running = (status is not None and status.alive) or read_pid(process) is not None
            if running and (restart or changed):
                self.supervisor.restart(key, process)
            else:
                if not running and not port_is_free(self._ctx.engine_host, port):
                    raise EngineError(f"Port {port} on {self._ctx.engine_host} is taken by "
                                      "another program; PuppetDB cannot listen there.")
                self.supervisor.ensure(key, process)
        except SupervisorError as exc:
            raise EngineError(f"PuppetDB could not start: {exc}") from None
        paths = self.layout(site.server_dir)
        if in_progress(paths.root):
            self._imports.ensure(site.server_id, paths.root, paths.var,
                                 lambda: self.client(site, timeout=300.0))

    def stop(self, server_id: str, server_dir: Path) -> None:
        """Stop the server's PuppetDB (fine when it does not run)."""
        self.supervisor.stop(self.key(server_id), self.process(server_dir))

    def remove(self, server_id: str, server_dir: Path) -> None:
        """Stop PuppetDB, drop its database and delete its directory (idempotent)."""
        paths = self.layout(server_dir)
        if paths.root.exists():
            unstage(paths.root)
        self.stop(server_id, server_dir)
        name = database_name(server_id)
        where: tuple[str, int] | None = None
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
            record = json.loads((paths.root / "database.json").read_text())
            name, where = str(record["database"]), (str(record["host"]), int(record["port"]))
        if self._ctx.puppetdb_database_url is None:
            if where is not None:
                log.warning("PuppetDB of server %s: its database %s on %s:%s is left in place "
                            "(cmhost runs without --puppetdb-database-url)",
                            server_id, name, *where)
        else:
            database = self._database()
            if where is None or where == (database.host, database.port):
                database.drop_database(name)
            else:
                log.warning("PuppetDB of server %s: its database %s on %s:%s is left in place "
                            "(--puppetdb-database-url now names another server)",
                            server_id, name, *where)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(paths.root)
        (server_dir / port_file(PART)).unlink(missing_ok=True)
        (server_dir / f".{PART}.lock").unlink(missing_ok=True)

    # --------------------------------------------------------------------------- health

    def client(self, site: Site, *, timeout: float = 30.0) -> PuppetDBClient:
        """An API client presenting cmhost's certificate, trusting only the server's CA."""
        ca_pem = site.tls.ca.read_text(encoding="ascii")
        cache_key = (ca_pem, site.client_cert)
        with self._lock:
            context = self._contexts.get(cache_key)
            if context is None:
                context = puppet_ca.tls_context(ca_pem, (site.client_cert, site.client_key))
                self._contexts[cache_key] = context
        return PuppetDBClient(self._ctx.engine_host, self.port(site), context, timeout=timeout)

    def check_health(self, site: Site) -> Health:
        """HEALTHY when its puppetdb-status is "running" (both databases up), UNHEALTHY when
        it answers otherwise, CONNECTION_LOST when it does not answer."""
        paths = self.layout(site.server_dir)
        if not (paths.conf / "jetty.conf").exists():
            return Health("CONNECTION_LOST", "PuppetDB's directory is gone.")
        try:
            client = self.client(site, timeout=HEALTH_TIMEOUT)
            status = client.status()
        except ssl.SSLCertVerificationError as exc:
            return Health("UNHEALTHY", f"PuppetDB answers with a certificate that is not the "
                                       f"server's: {exc.verify_message}")
        except (OSError, http.client.HTTPException, EngineError) as exc:
            where = f"{self._ctx.engine_host}:{self._port_or_none(site)}"
            return Health("CONNECTION_LOST", f"PuppetDB at {where} does not answer "
                                             f"({_describe(exc)}){self._process_note(site)}")
        health = status.health()
        if health.status == "HEALTHY" and in_progress(paths.root):
            queued = f" ({status.queue_depth} commands queued)" if status.queue_depth else ""
            return Health("UNHEALTHY", f"PuppetDB is restoring the backup's data{queued}.")
        return health

    def _port_or_none(self, site: Site) -> int | None:
        with contextlib.suppress(EngineError):
            return self.port(site)
        return None

    def _process_note(self, site: Site) -> str:
        status = self.supervisor.status(self.key(site.server_id))
        if status is None:
            return "; it is not supervised by this cmhost"
        if not status.alive:
            return f"; its process stopped ({status.last_exit}) and is being restarted"
        return f"; process {status.pid} is starting"

    def wait_until_running(self, site: Site, timeout: float = START_TIMEOUT) -> None:
        """Return once PuppetDB serves; EngineError with its last health after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            health = self.check_health(site)
            if health.status == "HEALTHY":
                return
            if time.monotonic() > deadline:
                raise EngineError(f"PuppetDB did not start within {timeout:.0f} s: "
                                  f"{health.reason}")
            time.sleep(1.0)

    # --------------------------------------------------------------- backup, restore

    def export(self, site: Site) -> bytes:
        """PuppetDB's archive of everything it stores, for the server's backup."""
        try:
            return self.client(site, timeout=300.0).export()
        except (OSError, http.client.HTTPException) as exc:
            raise EngineError(f"PuppetDB does not answer, so its data cannot be backed up "
                              f"({_describe(exc)}).") from None

    def restore(self, site: Site, archive: bytes | None) -> None:
        """Make PuppetDB hold exactly the archive's data (nothing when it is None): stop it,
        empty its database and command queue, start it; the archive is imported once it
        serves (check_health is UNHEALTHY until every command is stored; the outcome is an
        event, see take_events). An unusable archive is refused before anything changes."""
        if archive is not None:
            check_archive(archive)
        paths = self.layout(site.server_dir)
        if paths.root.exists():
            unstage(paths.root)
        self.stop(site.server_id, site.server_dir)
        self._database().drop_database(database_name(site.server_id))
        # Commands queued before the restore must not be stored into the restored data.
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(paths.var)
        if archive is not None:
            stage(paths.root, archive)
        self.start(site)

    def take_events(self) -> list[EngineEvent]:
        """What the imports did (each handed out once), for the server's events."""
        return self._imports.take_events()

    def close(self) -> None:
        """Stop the imports' threads (a staged archive waits on disk for the next start)."""
        self._imports.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, EngineError):
        return caller_message(exc)
    return getattr(exc, "strerror", None) or exc.__class__.__name__
