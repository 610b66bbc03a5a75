"""The puppetserver driver: each Puppet server is a real Debian puppetserver (a supervised JVM).

A server lives in data_dir/engines/<server_id>/:

    port            the TCP port allocated to it (see supervisor.reserve_port)
    code-manager.port   the Code Manager's port, for a server with an r10k remote
    engine.json     what runs there (driver, endpoint, certname, port)
    state/          what a backup carries and a restore swaps atomically:
      ca/           puppetserver's cadir (ca_crt.pem, ca_key.pem 0600, ca_crl.pem, serial,
                    inventory.txt, signed/, requests/)
      code/         the codedir (environments/production/manifests/site.pp, modules...)
    conf/           puppet.conf (the server's confdir), conf.d/*.conf, services.d/, logback
                    files: rewritten from the server's material at every start
    ssl/            the ssldir: the server's certificate, private key (0600), the CA, crl.pem
    var/ run/ log/  puppetserver's vardir (and JRuby gem home), rundir (pid file), logs
    r10k/           code deployment: r10k's configuration, cache and staging (see r10k.py)
    code-manager/   the Code Manager process: its pid file, log, deploy requests and events
    puppetdb.port   PuppetDB's port, when cmhost runs with --puppetdb on
    puppetdb/       the server's PuppetDB (see puppetdb.py): config, vardir, logs

The CA is made by cmhost in `prepare` (so CreateServer can return PUPPET_API_CA_CERT without
starting anything) and installed as puppetserver's own CA. Keys are kept encrypted in the
server's material; puppetserver needs two of them on disk to run (ca/ca_key.pem and the server
key in ssl/private_keys), both 0600 inside the data directory. cmhost talks to the CA API with
a client certificate of its own (CN cmhost-ca-client, Puppet's pp_cli_auth extension), whose
key is only in the material and in memory.

A server created with PUPPET_R10K_REMOTE also runs a Code Manager (code_manager/): a
supervised process beside puppetserver, on a port of its own, that deploys the control
repository with r10k into code/environments at provisioning, after a restore whose backup
holds no deployed code, and on request (its API, a git host's webhook). puppet.conf's
environment_timeout of 0 makes puppetserver see new code at once.

With `--puppetdb on`, every server also runs a PuppetDB (puppetdb.py) with a database of its
own: puppetserver's storeconfigs, report store and facts terminus. It starts beside
puppetserver, the server is HEALTHY only when both answer, its export is part of backups and
a restore imports the backup's; DeleteServer drops its database. Turned off later, the
servers' puppetserver stops using it (their PuppetDBs' data stays until DeleteServer).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from cmhost.engines import archive, crl, pki, puppet_ca
from cmhost.engines.attributes import PUPPET_R10K_REMOTE
from cmhost.engines.base import (
    DriverContext,
    EngineError,
    EngineEvent,
    EngineMaterial,
    Health,
    InvalidEngineAttribute,
    Maintained,
    NodeAction,
    Prepared,
    ServerSpec,
)
from cmhost.engines.code_manager.side import CodeManagerSide, Identity
from cmhost.engines.embedded_identity import (
    PUPPET_KIT_CLIENT,
    copy_material,
    prepare_identity,
    update_credential,
)
from cmhost.engines.issuance import Issued, open_ledger
from cmhost.engines.node_attributes import PUPPET_NODE_CERT, PUPPET_NODE_CSR, check_node_attributes
from cmhost.engines.puppetdb import PuppetDB, Site, TlsFiles
from cmhost.engines.puppetdb import missing_package as missing_puppetdb
from cmhost.engines.puppetdb_http import check_archive
from cmhost.engines.r10k import has_deployed_code, missing_r10k
from cmhost.engines.statedir import locked, read_files, remove_leftovers, replace_dir
from cmhost.engines.supervisor import (
    ProcessSpec,
    Supervisor,
    SupervisorError,
    port_is_free,
    read_pid,
    recorded_port,
    reserve_port,
)
from cmhost.engines.userdata import render_userdata_for_inputs
from cmhost.messages import caller_message

PACKAGE_HINT = "install the Debian package puppetserver (apt-get install puppetserver)"
PUPPETSERVER_JAR = Path("/usr/share/puppetserver/puppetserver.jar")
RUBY_LOAD_PATH = Path("/usr/lib/puppetserver/ruby/vendor_ruby")
JAVA = "/usr/bin/java"

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Puppet's CA accepts these certnames only (lower case; dot-separated segments of letters,
# digits, '_' and '-', not starting or ending with '-').
_CERTNAME = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_-]*[a-z0-9_])*")
_HEAP = re.compile(r"[1-9][0-9]*[kKmMgG]?")
# Certificates this close to their end are renewed by maintenance and restores.
RENEW_BEFORE = dt.timedelta(days=30)
HEALTH_TIMEOUT = 5.0
# Tuned for start-up time and footprint of small servers: C1 only (C2 compiler threads fight
# the start-up for CPU: on 2 busy cores start-up took 45-70 s with it, 100-210 s without) and
# the serial collector (about 0.4 GiB less resident memory than G1 with a 1 GiB heap).
JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
STATUS_PATH = "/status/v1/simple"
# PuppetDB's export, among a backup's files (beside state/'s, which never start so).
PUPPETDB_ARCHIVE = "puppetdb/export.tgz"


def missing_package() -> str:
    """Why puppetserver cannot run on this machine ("" when it can)."""
    for path, what in ((PUPPETSERVER_JAR, "puppetserver.jar"), (RUBY_LOAD_PATH, "its Ruby")):
        if not path.exists():
            return f"The puppetserver driver needs {what} ({path}); {PACKAGE_HINT}."
    if not (os.access(JAVA, os.X_OK) or shutil.which("java")):
        return f"The puppetserver driver needs Java (/usr/bin/java); {PACKAGE_HINT}."
    return ""


def split_endpoint(endpoint: str) -> tuple[str, int | None]:
    """(host, port) of `host`, `host:port` or `[v6]:port`."""
    if endpoint.startswith("["):
        host, _, rest = endpoint[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if endpoint.count(":") == 1:
        host, port = endpoint.split(":")
        return host, int(port) if port.isdigit() else None
    return endpoint, None


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Layout:
    """The paths of one server's directory."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def ca(self) -> Path:
        return self.state / "ca"

    @property
    def code(self) -> Path:
        return self.state / "code"

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def ssl(self) -> Path:
        return self.root / "ssl"

    @property
    def var(self) -> Path:
        return self.root / "var"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "log"


class PuppetServerDriver:
    """Puppet servers run by the Debian puppetserver package, one JVM per server."""

    name: str = "puppetserver"

    def __init__(self, ctx: DriverContext, *, supervisor: Supervisor | None = None) -> None:
        self._ctx = ctx
        self.supervisor = supervisor or Supervisor()
        self._contexts: dict[tuple[str, str], ssl.SSLContext] = {}
        self._lock = threading.Lock()
        # server id -> what its last restore revoked, until the restore job takes it
        self._restore_revoked: dict[str, list[Issued]] = {}
        self.code = CodeManagerSide(ctx, self.supervisor)
        # Its restart notices (key <id>/puppetdb) reach the health monitor through this
        # supervisor, like the engine's.
        self.puppetdb = PuppetDB(ctx, self.supervisor)

    # ------------------------------------------------------------------ endpoint, identity

    def server_dir(self, server_id: str) -> Path:
        if not _SAFE_ID.fullmatch(server_id) or ".." in server_id:
            raise EngineError(f"server id {server_id[:64]!r} is not a safe directory name")
        return self._ctx.data_dir / "engines" / server_id

    def allocate_endpoint(self, server_id: str, server_name: str = "", region: str = "") -> str:
        """Reserve a port for a new server; its Endpoint, `engine_host:port`.

        The service calls this in CreateServer before `prepare` (and before restoring a new
        server from a backup) and stores the result as the server's Endpoint. EngineError
        when puppetserver is not installed or no port is left.
        """
        self._check_package()
        self._check_puppetdb_package()
        try:
            port = reserve_port(self.server_dir(server_id), self._ctx.engine_host,
                                self._ctx.port_min, self._ctx.port_max)
        except SupervisorError as exc:
            raise EngineError(f"No port for the new Puppet server: {exc}") from None
        if self.puppetdb.enabled:  # a port file only, so that the kit can name its URL
            self.puppetdb.reserve_port(self.server_dir(server_id))
        return _join(self._ctx.engine_host, port)

    def prepare(self, spec: ServerSpec, attributes: dict[str, str]) -> Prepared:
        """A new CA (which becomes puppetserver's CA), the server certificate, cmhost's CA
        client certificate, the admin password and the starter kit. Starts nothing.

        With an r10k remote, the Code Manager's port is reserved as the engine's was (in
        allocate_endpoint) and its token made: the kit carries it, the material its digest.
        With --puppetdb on, the kit names the server's PuppetDB (its port reserved too)."""
        self._check_family(spec)
        self._check_package()
        self._check_puppetdb_package()
        puppetdb_url = (self.puppetdb.url_of(self.server_dir(spec.server_id), self.certname(spec))
                        if self.puppetdb.enabled else None)
        code_manager_url = None
        if attributes.get(PUPPET_R10K_REMOTE):
            problem = missing_r10k()
            if problem:
                raise EngineError(problem)
            code_manager_url = self.code.url(self.server_dir(spec.server_id))
        prepared = prepare_identity(spec, attributes, code_manager_url=code_manager_url,
                                    puppetdb_url=puppetdb_url)
        material = self._current_identity(spec, prepared.material)
        return Prepared(material=material, one_time_attributes=prepared.one_time_attributes)

    def public_attributes(self, spec: ServerSpec, material: EngineMaterial
                          ) -> list[tuple[str, str]]:
        """PUPPET_API_CA_CERT: the certificate of puppetserver's CA."""
        return [("PUPPET_API_CA_CERT", material.public["ca_cert"])]

    def certname(self, spec: ServerSpec) -> str:
        """The server's own certname: its endpoint host, lower case."""
        return split_endpoint(spec.endpoint)[0].lower()

    def _server_names(self, spec: ServerSpec) -> list[str]:
        names = [self.certname(spec), self._ctx.engine_host]
        if spec.custom_domain:
            names.append(spec.custom_domain)
        return list(dict.fromkeys(names))

    def _current_identity(self, spec: ServerSpec, material: EngineMaterial) -> EngineMaterial:
        """The material, or a copy with a renewed server certificate (when it expires within
        RENEW_BEFORE, lacks one of the server's names, or is not also a client certificate,
        which puppetserver presents to PuppetDB) and a CA client certificate."""
        names = self._server_names(spec)
        ca_cert, ca_key = material.public["ca_cert"], material.secrets["ca_key"]
        cert = material.public.get("server_cert", "")
        at = dt.datetime.now(dt.UTC) + RENEW_BEFORE
        try:
            good = (pki.verify_chain(cert, ca_cert, at=at)
                    and set(names) <= set(pki.certificate_names(cert))
                    and pki.has_client_auth(cert))
        except ValueError:
            good = False
        new = material
        if not good:
            new = copy_material(material)
            new.public["server_cert"], new.secrets["server_key"] = pki.issue_certificate(
                ca_cert, ca_key, names[0], names, client_auth=True)
        if puppet_ca.client_needs_renewal(new, within=RENEW_BEFORE):
            new = copy_material(new)
            client_cert, client_key = puppet_ca.issue_client(ca_cert, ca_key)
            new.public[puppet_ca.CLIENT_CERT] = client_cert
            new.secrets[puppet_ca.CLIENT_KEY] = client_key
        return new

    # ------------------------------------------------------------------------ lifecycle

    def _port(self, spec: ServerSpec) -> int:
        """The server's port: the endpoint's when it names one, else the recorded one, else a
        newly reserved one (servers created before the service gave engines host:port)."""
        root = self.server_dir(spec.server_id)
        host, port = split_endpoint(spec.endpoint)
        preferred = port if port is not None and host == self._ctx.engine_host else None
        recorded = recorded_port(root)
        if preferred is None and recorded is not None:
            return recorded
        try:
            return reserve_port(root, self._ctx.engine_host, self._ctx.port_min,
                                self._ctx.port_max, preferred=preferred)
        except SupervisorError as exc:
            raise EngineError(f"The Puppet server has no port: {exc}") from None

    def provision(self, spec: ServerSpec, material: EngineMaterial) -> None:
        """Write the server's configuration and state and start its puppetserver (without
        waiting for it to serve: check_health says when it does)."""
        self._check_family(spec)
        self._check_package()
        root = self.server_dir(spec.server_id)
        with locked(root):
            self._write_all(spec, material, Layout(root))
            problem = self._start_puppetdb(spec, material)
            self._start(spec, Layout(root), restart=False)
        self._run_code_manager(spec, Layout(root), material, restart=False,
                               deploy_reason="provisioning")
        if problem:
            raise problem  # the step is retried; every start above is idempotent

    def _write_all(self, spec: ServerSpec, material: EngineMaterial, paths: Layout) -> None:
        """Everything puppetserver needs, from the material (idempotent)."""
        for directory in (paths.var, paths.run, paths.log, paths.code / "environments"
                          / "production" / "manifests", paths.code / "environments"
                          / "production" / "modules"):
            directory.mkdir(parents=True, exist_ok=True)
        puppet_ca.install_ca(paths.ca, material)
        certname = self.certname(spec)
        ssl_dir = paths.ssl
        for sub, mode in (("certs", 0o755), ("public_keys", 0o755), ("private_keys", 0o700)):
            (ssl_dir / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(ssl_dir / sub, mode)
        write = puppet_ca.write_if_changed
        write(ssl_dir / "certs" / f"{certname}.pem", material.public["server_cert"])
        write(ssl_dir / "private_keys" / f"{certname}.pem", material.secrets["server_key"],
              mode=0o600)
        write(ssl_dir / "public_keys" / f"{certname}.pem",
              _public_of(material.secrets["server_key"]))
        write(ssl_dir / "certs" / "ca.pem", material.public["ca_cert"])
        write(ssl_dir / "crl.pem", (paths.ca / puppet_ca.CA_CRL).read_text())
        port = self._port(spec)
        files = render_config(
            root=paths.root, state=paths.state, conf=paths.conf, ssl=ssl_dir, var=paths.var,
            run=paths.run, log=paths.log, certname=certname, host=self._ctx.engine_host,
            port=port, alt_names=self._server_names(spec),
            server_label=f"{spec.name} ({spec.server_id})",
        )
        if self._uses_puppetdb(material):
            site = self._puppetdb_site(spec, material)
            files = self.puppetdb.puppetserver_config(site).merge(files)
        else:  # --puppetdb turned off since (or no certificate to use it yet)
            for stale in ("puppetdb.conf", "routes.yaml"):
                (paths.conf / stale).unlink(missing_ok=True)
        for relative, text in files.items():
            write(paths.conf / relative, text)
        engine = {"driver": self.name, "family": spec.family, "engine": spec.engine,
                  "version": spec.engine_version, "endpoint": spec.endpoint, "name": spec.name,
                  "certname": certname, "port": port,
                  "puppetdb": self._uses_puppetdb(material)}
        write(paths.root / "engine.json", json.dumps(engine, indent=2, sort_keys=True) + "\n")

    def _process(self, spec: ServerSpec, paths: Layout) -> ProcessSpec:
        heap = self._ctx.java_heap
        if not _HEAP.fullmatch(heap):
            raise EngineError(f"The Java heap size {heap[:32]!r} is not like 1g or 768m.")
        java = JAVA if os.access(JAVA, os.X_OK) else (shutil.which("java") or JAVA)
        confd = paths.conf / "conf.d"
        argv = [
            java, f"-Xms{heap}", f"-Xmx{heap}", *JVM_OPTIONS,
            "-Djruby.logger.class=com.puppetlabs.jruby_utils.jruby.Slf4jLogger",
            "-Djruby.lib=/usr/share/jruby/lib",
            f"-Djava.io.tmpdir={paths.run / 'tmp'}",
            "-XX:+CrashOnOutOfMemoryError",
            f"-XX:ErrorFile={paths.log / 'puppetserver_err_pid%p.log'}",
            "-jar", str(PUPPETSERVER_JAR),
            "--config", str(confd),
            "--bootstrap-config", str(paths.conf / "services.d"),
            "--restart-file", str(paths.run / "restart"),
        ]
        # A small environment of its own: nothing of cmhost's (a master key in
        # CMHOST_MASTER_KEY, say) reaches the engine.
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "HOME": str(paths.var)}
        return ProcessSpec(name=f"puppetserver of {spec.name}", argv=argv, cwd=paths.root,
                           log_file=paths.log / "console.log",
                           pid_file=paths.run / "puppetserver.pid", marker=str(confd),
                           env=env, stop_timeout=30.0)

    def _start(self, spec: ServerSpec, paths: Layout, *, restart: bool) -> None:
        process = self._process(spec, paths)
        (paths.run / "tmp").mkdir(parents=True, exist_ok=True)
        port = self._port(spec)
        try:
            if restart:
                self.supervisor.stop(spec.server_id, process)
            status = self.supervisor.status(spec.server_id)
            running = status is not None and status.alive
            if not running and read_pid(process) is None and not port_is_free(
                    self._ctx.engine_host, port):
                raise EngineError(
                    f"Port {port} on {self._ctx.engine_host} is taken by another program; "
                    "the Puppet server cannot listen there.")
            self.supervisor.ensure(spec.server_id, process)
        except SupervisorError as exc:
            raise EngineError(f"The Puppet server could not start: {exc}") from None

    # ------------------------------------------------------------------------- PuppetDB

    def _puppetdb_site(self, spec: ServerSpec, material: EngineMaterial) -> Site:
        """The server's PuppetDB: it serves with puppetserver's certificate and allows
        puppetserver (its certificate's CN is the certname), cmhost and the kit's client."""
        root = self.server_dir(spec.server_id)
        certname, ssl_dir = self.certname(spec), Layout(root).ssl
        return Site(
            server_id=spec.server_id, name=spec.name, server_dir=root, host_name=certname,
            tls=TlsFiles(ca=ssl_dir / "certs" / "ca.pem",
                         cert=ssl_dir / "certs" / f"{certname}.pem",
                         key=ssl_dir / "private_keys" / f"{certname}.pem",
                         crl=ssl_dir / "crl.pem"),
            allowed=(certname, puppet_ca.CLIENT_NAME, PUPPET_KIT_CLIENT),
            client_cert=material.public[puppet_ca.CLIENT_CERT],
            client_key=material.secrets[puppet_ca.CLIENT_KEY])

    def _start_puppetdb(self, spec: ServerSpec, material: EngineMaterial, *,
                        restart: bool = False) -> EngineError | None:
        """Start the server's PuppetDB (with --puppetdb on). A failure is returned, not
        raised: the caller starts puppetserver anyway (its CA keeps serving AssociateNode)
        and raises it after, so that the step is retried; health says why meanwhile."""
        if not self.puppetdb.enabled:
            return None
        try:
            self.puppetdb.start(self._puppetdb_site(spec, material), restart=restart)
        except EngineError as exc:
            return exc
        return None

    def _uses_puppetdb(self, material: EngineMaterial) -> bool:
        """Whether puppetserver is configured to use its PuppetDB: with --puppetdb on and a
        server certificate that is also a client certificate (one issued before that must
        first be renewed, by maintenance or a restore, else PuppetDB would refuse it and
        every agent run would fail)."""
        if not self.puppetdb.enabled:
            return False
        try:
            return pki.has_client_auth(material.public["server_cert"])
        except ValueError:
            return False

    @staticmethod
    def _wired_to_puppetdb(paths: Layout) -> bool:
        """Whether puppetserver's configuration, as last written, used PuppetDB."""
        try:
            engine = json.loads((paths.root / "engine.json").read_text())
        except (FileNotFoundError, ValueError):
            return False
        return bool(isinstance(engine, dict) and engine.get("puppetdb"))

    def _check_puppetdb_package(self) -> None:
        problem = missing_puppetdb() if self.puppetdb.enabled else ""
        if problem:
            raise EngineError(problem)

    # ------------------------------------------------------------------- code deployment

    def _identity_files(self, spec: ServerSpec, paths: Layout) -> Identity:
        certname = self.certname(spec)
        return Identity(cert_file=paths.ssl / "certs" / f"{certname}.pem",
                        key_file=paths.ssl / "private_keys" / f"{certname}.pem")

    def _run_code_manager(self, spec: ServerSpec, paths: Layout, material: EngineMaterial, *,
                          restart: bool, deploy_reason: str | None = None) -> None:
        """Run the server's Code Manager, if it has one; with `deploy_reason`, have it deploy
        every environment unless the server already serves deployed code. The deployment
        runs in the Code Manager while puppetserver starts; its outcome is an event (a
        failure leaves the server as it is: HEALTHY once puppetserver serves)."""
        if not self.code.enabled(material):
            return
        if deploy_reason and not has_deployed_code(paths.root):
            self.code.request_deploy(paths.root, deploy_reason)
        self.code.start(spec.server_id, paths.root, self._identity_files(spec, paths), material,
                        restart=restart)

    def take_events(self) -> list[EngineEvent]:
        """The deployments' and PuppetDB restores' outcomes since the last call (see
        EngineEvent), once each."""
        return [*self.code.take_events(self._ctx.data_dir / "engines"),
                *self.puppetdb.take_events()]

    def check_health(self, spec: ServerSpec, material: EngineMaterial) -> Health:
        """GET /status/v1/simple over TLS checked against the server's CA: "running" is
        HEALTHY, another answer UNHEALTHY, no answer CONNECTION_LOST. A running puppetserver
        is UNHEALTHY while its Code Manager or its PuppetDB (with --puppetdb on) is not
        serving, or PuppetDB is still importing a restored backup."""
        root = self.server_dir(spec.server_id)
        if not (root / "engine.json").exists():
            return Health("CONNECTION_LOST", "The engine's directory is gone.")
        try:
            port = self._port(spec)
            context = self._context(material, client=False)
        except (EngineError, ssl.SSLError, ValueError) as exc:
            return Health("UNHEALTHY", f"The engine cannot be checked: {caller_message(exc)}")
        host = self._ctx.engine_host
        connection = http.client.HTTPSConnection(host, port, context=context,
                                                 timeout=HEALTH_TIMEOUT)
        try:
            connection.request("GET", STATUS_PATH, headers={"Accept": "text/plain"})
            response = connection.getresponse()
            body = response.read(4096).decode("utf-8", "replace").strip()
        except ssl.SSLCertVerificationError as exc:
            return Health("UNHEALTHY", f"puppetserver at {_join(host, port)} answers with a "
                                       f"certificate that is not the server's: "
                                       f"{exc.verify_message}")
        except (OSError, http.client.HTTPException) as exc:
            return Health("CONNECTION_LOST", f"puppetserver at {_join(host, port)} does not "
                                             f"answer ({_describe(exc)}){self._process_note(spec)}")
        finally:
            connection.close()
        if response.status == 200 and body == "running":
            if self.code.enabled(material):
                problem = self.code.problem(spec.server_id, root, context)
                if problem:
                    return Health("UNHEALTHY", problem)
            if self.puppetdb.enabled and not self._uses_puppetdb(material):
                return Health("UNHEALTHY", "PuppetDB runs, but puppetserver cannot use it until "
                                           "the server's certificate is renewed (it predates "
                                           "PuppetDB): run StartMaintenance.")
            if self.puppetdb.enabled:
                db = self.puppetdb.check_health(self._puppetdb_site(spec, material))
                if db.status != "HEALTHY":  # its reasons start with "PuppetDB"
                    return Health("UNHEALTHY", db.reason)
            return Health("HEALTHY")
        return Health("UNHEALTHY", f"puppetserver at {_join(host, port)} answers "
                                   f"HTTP {response.status} {body[:100]!r} on {STATUS_PATH}")

    def _process_note(self, spec: ServerSpec) -> str:
        status = self.supervisor.status(spec.server_id)
        if status is None:
            return "; it is not supervised by this cmhost"
        if not status.alive:
            return f"; its process stopped ({status.last_exit}) and is being restarted"
        note = f"; process {status.pid} is starting"
        return note + (f" (restarted {status.restarts} times)" if status.restarts else "")

    def resume(self, spec: ServerSpec, material: EngineMaterial) -> None:
        """Re-attach to the server's puppetserver (and PuppetDB) if it still runs, else start
        it; restart it when --puppetdb was turned on or off since it started."""
        self._check_package()
        root = self.server_dir(spec.server_id)
        with locked(root):
            if not (Layout(root).ca / puppet_ca.CA_CERT).exists():
                raise EngineError("The engine's state is gone; restore the server from a "
                                  "backup.")
            # --puppetdb turned on or off since puppetserver last started: it must re-read
            # its configuration, and a PuppetDB no longer used is stopped.
            switched = self._wired_to_puppetdb(Layout(root)) != self._uses_puppetdb(material)
            self._write_all(spec, material, Layout(root))
            if not self.puppetdb.enabled and self.puppetdb.exists(root):
                self.puppetdb.stop(spec.server_id, root)
            problem = self._start_puppetdb(spec, material)
            self._start(spec, Layout(root), restart=switched)
        self._run_code_manager(spec, Layout(root), material, restart=False)
        if problem:
            raise problem

    def close(self) -> None:
        """Stop supervising; every puppetserver (and PuppetDB) keeps running for the next
        cmhost, which also resumes a PuppetDB import that was under way."""
        self.puppetdb.close()
        self.supervisor.close()

    def destroy(self, spec: ServerSpec) -> None:
        """Stop the server's puppetserver and PuppetDB, drop PuppetDB's database and remove
        the server's directory (fine if already gone). PostgreSQL not answering fails the
        step (EngineError), which is retried: a database is never left behind silently."""
        root = self.server_dir(spec.server_id)
        with locked(root):
            if self.puppetdb.enabled or self.puppetdb.exists(root):
                self.puppetdb.remove(spec.server_id, root)
            if root.exists():
                self.code.stop(spec.server_id, root, self._identity_files(spec, Layout(root)))
                self.supervisor.stop(spec.server_id, self._process(spec, Layout(root)))
            else:
                self.supervisor.release(self.code.key(spec.server_id))
                self.supervisor.release(spec.server_id)
            remove_leftovers(Layout(root).state)
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(root)
        (root.parent / f".{root.name}.lock").unlink(missing_ok=True)
        with self._lock:
            for key in [k for k in self._contexts if k[0] == spec.server_id]:
                del self._contexts[key]

    # ---------------------------------------------------------------------------- nodes

    def check_node_request(self, spec: ServerSpec, action: NodeAction, node_name: str,
                           attributes: dict[str, str]) -> dict[str, str]:
        """The embedded rules, plus Puppet's certname rules (lower case ASCII, segments of
        letters, digits, '_' and '-'); the server's own names are refused, and so is the
        starter kit's client (`admin`), whose certificate PuppetDB allows by name."""
        self._check_family(spec)
        checked = check_node_attributes(spec.family, spec.engine, action, node_name, attributes)
        if not _CERTNAME.fullmatch(node_name):
            raise InvalidEngineAttribute(
                "NodeName must be a Puppet certname: lower-case letters, digits, '_' and '-' "
                "in dot-separated parts, not starting or ending with '-'")
        if node_name in (self.certname(spec), puppet_ca.CLIENT_NAME, PUPPET_KIT_CLIENT):
            raise InvalidEngineAttribute(f"NodeName {node_name!r} is the server's own name")
        return checked

    def _client(self, spec: ServerSpec, material: EngineMaterial) -> puppet_ca.CaClient:
        return puppet_ca.CaClient(self._ctx.engine_host, self._port(spec),
                                  self._context(material, client=True))

    def _context(self, material: EngineMaterial, *, client: bool) -> ssl.SSLContext:
        ca_cert = material.public["ca_cert"]
        pair = None
        if client:
            cert = material.public.get(puppet_ca.CLIENT_CERT)
            key = material.secrets.get(puppet_ca.CLIENT_KEY)
            if not cert or not key:
                raise EngineError("The server's material lacks cmhost's CA client certificate.")
            pair = (cert, key)
        cache_key = (ca_cert, pair[0] if pair else "")
        with self._lock:
            context = self._contexts.get(cache_key)
            if context is None:
                context = puppet_ca.tls_context(ca_cert, pair)
                self._contexts[cache_key] = context
            return context

    def associate_node(self, spec: ServerSpec, material: EngineMaterial, node_name: str,
                       attributes: dict[str, str]) -> list[tuple[str, str]]:
        """Submit the node's CSR to puppetserver's CA and sign it; returns PUPPET_NODE_CERT.

        Associating again with the same key returns the certificate already signed; with
        another key the old certificate is revoked first. An unreachable engine raises
        OSError, so the worker retries the step.
        """
        checked = self.check_node_request(spec, "associate", node_name, attributes)
        csr_pem = checked[PUPPET_NODE_CSR]
        paths = Layout(self.server_dir(spec.server_id))
        existing = puppet_ca.signed_certificate(paths.ca, node_name)
        if existing is not None and self._still_good(paths, existing, csr_pem, node_name,
                                                     material):
            return [(PUPPET_NODE_CERT, existing)]
        client = self._client(spec, material)
        if existing is not None:
            client.revoke(node_name)
        client.delete(node_name)  # a signed certificate or a pending request of that name
        client.submit_csr(node_name, csr_pem)
        client.sign(node_name)
        cert = client.certificate(node_name)
        # Noted outside the state a restore rolls back (a crash before this line is made up
        # for by the restore, which notes the inventory it replaces).
        with open_ledger(self._ctx.data_dir, material.public["ca_cert"]) as ledger:
            ledger.record_certificate(cert, node_name)
        return [(PUPPET_NODE_CERT, cert)]

    @staticmethod
    def _still_good(paths: Layout, cert: str, csr_pem: str, node_name: str,
                    material: EngineMaterial) -> bool:
        try:
            csr = pki.load_csr(csr_pem, expected_cn=node_name)
            return (pki.certificate_matches_csr(cert, csr)
                    and pki.verify_chain(cert, material.public["ca_cert"],
                                         at=dt.datetime.now(dt.UTC) + RENEW_BEFORE)
                    and not puppet_ca.is_revoked(paths.ca, cert))
        except ValueError:
            return False

    def disassociate_node(self, spec: ServerSpec, material: EngineMaterial, node_name: str,
                          attributes: dict[str, str]) -> None:
        """Revoke the node's certificate (puppetserver re-signs its CRL and reloads it) and
        remove it from the CA; fine when the node is unknown."""
        self.check_node_request(spec, "disassociate", node_name, attributes)
        paths = Layout(self.server_dir(spec.server_id))
        client = self._client(spec, material)
        if puppet_ca.signed_certificate(paths.ca, node_name) is not None:
            client.revoke(node_name)
        client.delete(node_name)

    def node_names(self, spec: ServerSpec) -> list[str]:
        """The certnames puppetserver's CA has signed and not revoked, but the server's own
        and cmhost's client."""
        paths = Layout(self.server_dir(spec.server_id))
        own = {self.certname(spec), puppet_ca.CLIENT_NAME}
        names = []
        for name in puppet_ca.signed_names(paths.ca):
            cert = puppet_ca.signed_certificate(paths.ca, name)
            if name in own or cert is None:
                continue
            try:
                if puppet_ca.is_revoked(paths.ca, cert):
                    continue
            except ValueError:
                continue
            names.append(name)
        return names

    def accepts_client(self, spec: ServerSpec, node_name: str, data: bytes,
                       signature: bytes) -> bool:
        """Puppet servers have no Chef clients."""
        return False

    def is_revoked(self, spec: ServerSpec, cert_pem: str) -> bool:
        """True when puppetserver's CRL (ca_crl.pem) lists the certificate."""
        return puppet_ca.is_revoked(Layout(self.server_dir(spec.server_id)).ca, cert_pem)

    # ------------------------------------------------------------- backup, restore

    def backup(self, spec: ServerSpec, material: EngineMaterial) -> bytes:
        """The CA (but its key, which the material carries), the signed certificates, the CRL
        and the code directory (deployed environments included, but git's own data and
        symbolic links), with --puppetdb on PuppetDB's export (a PuppetDB that does not
        answer fails the backup rather than leave its data out), with the material, in
        archive's format."""
        self._check_family(spec)
        paths = Layout(self.server_dir(spec.server_id))
        with locked(paths.root):  # code deployments swap environments under it too
            if not (paths.ca / puppet_ca.CA_CERT).exists():
                raise EngineError("The engine's state is gone; there is nothing to back up.")
            files = read_files(paths.state, leave_out=_not_backed_up)
        files.pop(f"ca/{puppet_ca.CA_KEY}", None)
        if files.get(f"ca/{puppet_ca.CA_CERT}", b"").decode("ascii", "replace") != \
                material.public.get("ca_cert"):
            raise EngineError("The engine's CA is not the server's CA; not backed up.")
        meta = {"driver": self.name, "family": spec.family, "engine": spec.engine,
                "engine_version": spec.engine_version, "server_name": spec.name,
                "server_id": spec.server_id, "certname": self.certname(spec)}
        if self.puppetdb.enabled:  # outside the lock: an export may take a while
            files[PUPPETDB_ARCHIVE] = self.puppetdb.export(self._puppetdb_site(spec, material))
            meta["puppetdb"] = "yes"
        return archive.pack(meta, material, files)

    def restore(self, spec: ServerSpec, artifact: bytes) -> EngineMaterial:
        """Verify the artifact, stop puppetserver, swap the state directory for the backup's,
        and start puppetserver again (without waiting for it to serve). A backup of an
        embedded Puppet server is converted (its node certificates become signed/).

        With --puppetdb on, PuppetDB is emptied and started beside puppetserver; it imports
        the backup's export (none: it stays empty) once it serves, and check_health is
        UNHEALTHY until it holds all of it, so the restore's ready step waits for that too.
        A backup's export is ignored with --puppetdb off."""
        self._check_family(spec)
        self._check_package()
        backup = archive.unpack(artifact)
        if backup.manifest.get("family") != spec.family:
            raise EngineError(f"The backup is of a {str(backup.manifest.get('family'))[:32]} "
                              f"server; {spec.name} is a {spec.family} server.")
        if backup.manifest.get("driver") == "embedded":
            files = _from_embedded(backup.files, backup.material)
        else:
            files = {k: v for k, v in backup.files.items() if k != f"ca/{puppet_ca.CA_KEY}"}
        pdb_archive = files.pop(PUPPETDB_ARCHIVE, None)
        _check_state(files, backup.material)
        if self.puppetdb.enabled:
            if pdb_archive is not None:  # an unusable backup is refused before anything changes
                check_archive(pdb_archive)
            self.puppetdb.check_database()  # nor is anything changed while PostgreSQL is away
        material = self._current_identity(spec, backup.material)
        paths = Layout(self.server_dir(spec.server_id))
        problem: EngineError | None = None
        with locked(paths.root):
            revoked = self._revoke_later_issues(paths, files, material)
            process = self._process(spec, paths)
            self.supervisor.stop(spec.server_id, process)
            try:
                replace_dir(paths.state, files, dirs=(f"ca/{puppet_ca.SIGNED}",
                                                      f"ca/{puppet_ca.REQUESTS}", "code"))
            except (OSError, EngineError) as exc:
                if (paths.ca / puppet_ca.CA_CERT).exists() and (paths.conf / "conf.d").is_dir():
                    with contextlib.suppress(EngineError):
                        self._start(spec, paths, restart=False)  # the old state, as it was
                raise EngineError("The engine state could not be replaced: "
                                  f"{caller_message(exc)}") from None
            self._write_all(spec, material, paths)
            if self.puppetdb.enabled:  # returns at once: the two JVMs start side by side
                try:
                    self.puppetdb.restore(self._puppetdb_site(spec, material), pdb_archive)
                except EngineError as exc:
                    problem = exc
            self._start(spec, paths, restart=False)
        # The backup's material may be another server's (its remote, key and token): the
        # Code Manager starts again with it, and deploys when the backup held no code.
        self._run_code_manager(spec, paths, material, restart=True, deploy_reason="restore")
        self._restore_revoked[spec.server_id] = revoked
        if problem:
            raise EngineError(f"The server's state is the backup's, but its PuppetDB could not "
                              f"be restored: {caller_message(problem)}")
        return material

    def _revoke_later_issues(self, paths: Layout, files: dict[str, bytes],
                             material: EngineMaterial) -> list[Issued]:
        """Make the restored cadir (in `files`) safe: its CRL is the backup's plus every
        certificate the CA issued that the backup does not know, and its `serial` counts on
        past every serial the CA ever issued. The cadir being replaced is noted in its CA's
        issuance record first."""
        data_dir, ca_cert = self._ctx.data_dir, material.public["ca_cert"]
        current_number = 0
        with contextlib.suppress(FileNotFoundError, UnicodeDecodeError, ValueError,
                                 EngineError):
            current_ca = (paths.ca / puppet_ca.CA_CERT).read_text(encoding="ascii")
            current = {f"ca/{k}": v for k, v in read_files(paths.ca).items()}
            with open_ledger(data_dir, current_ca) as ledger:
                for serial, node in puppet_ca.issued_serials(current).items():
                    ledger.record(serial, node)
            if current_ca == ca_cert:
                current_number = crl.crl_entries(
                    current[f"ca/{puppet_ca.CA_CRL}"].decode("ascii"))[1]
        known = puppet_ca.issued_serials(files)
        with open_ledger(data_dir, ca_cert) as ledger:
            later = ledger.issued_except(known)
            highest = max((s for s in ledger.serials() | set(known)
                           if s < puppet_ca.SEQUENTIAL_LIMIT), default=0)
        try:
            counted = int(files.get(f"ca/{puppet_ca.SERIAL}", b"1").decode("ascii").strip(), 16)
        except ValueError:
            counted = 1
        files[f"ca/{puppet_ca.SERIAL}"] = puppet_ca.serial_text(
            max(highest + 1, counted)).encode("ascii")
        if later:
            entries, number = crl.crl_entries(files[f"ca/{puppet_ca.CA_CRL}"].decode("ascii"))
            listed = {serial for serial, _ in entries}
            now = crl.revocation_time()
            entries += [(e.serial, now) for e in later if e.serial not in listed]
            files[f"ca/{puppet_ca.CA_CRL}"] = crl.build_crl(
                ca_cert, material.secrets["ca_key"], entries,
                number=max(number, current_number) + 1).encode("ascii")
        return later

    def take_restore_revocations(self, server_id: str) -> list[Issued]:
        """What the server's last restore revoked (see EngineDriver.take_restore_revocations)."""
        return self._restore_revoked.pop(server_id, [])

    def maintain(self, spec: ServerSpec, material: EngineMaterial, *,
                 major_upgrade: bool) -> Maintained:
        """Renew what is close to expiry (the server and client certificates), rewrite the
        configuration and restart puppetserver and PuppetDB when the identity changed (a
        restore just started them otherwise). There is no major upgrade for Puppet."""
        self._check_family(spec)
        if major_upgrade:
            raise InvalidEngineAttribute("CHEF_MAJOR_UPGRADE applies only to Chef 12 servers")
        paths = Layout(self.server_dir(spec.server_id))
        renewed = self._current_identity(spec, material)
        with locked(paths.root):
            if not (paths.ca / puppet_ca.CA_CERT).exists():
                raise EngineError("The engine's state is gone; restore the server from a "
                                  "backup.")
            self._write_all(spec, renewed, paths)
            changed = renewed.public.get("server_cert") != material.public.get("server_cert")
            # A new server certificate is PuppetDB's too (its Jetty reads it at start).
            problem = self._start_puppetdb(spec, renewed, restart=changed)
            self._start(spec, paths, restart=changed)
        # A new server certificate is the Code Manager's too.
        self._run_code_manager(spec, paths, renewed, restart=changed)
        if problem:
            raise problem
        return Maintained(material=renewed)

    # -------------------------------------------------------------- engine attributes

    def update_attribute(self, spec: ServerSpec, material: EngineMaterial, name: str,
                         value: str | None) -> Prepared:
        """PUPPET_ADMIN_PASSWORD, as the embedded driver does it."""
        self._check_family(spec)
        return update_credential(spec, material, name, value)

    def userdata(self, spec: ServerSpec, material: EngineMaterial,
                 inputs: dict[str, str]) -> str:
        """The node bootstrap script (it reaches puppetserver at the server's Endpoint)."""
        self._check_family(spec)
        return render_userdata_for_inputs(spec, ca_cert_pem=material.public["ca_cert"],
                                          inputs=inputs)

    # ------------------------------------------------------------------------ checks

    def _check_family(self, spec: ServerSpec) -> None:
        if spec.family != "Puppet":
            raise EngineError(f"the puppetserver driver cannot run a {spec.family} server")

    def _check_package(self) -> None:
        problem = missing_package()
        if problem:
            raise EngineError(problem)


# ------------------------------------------------------------------------------ helpers


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return getattr(exc, "strerror", None) or exc.__class__.__name__


def _public_of(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _not_backed_up(relative: str, path: Path) -> bool:
    """What of the state a backup leaves out: in deployed code, git's data (r10k's checkouts
    refer to its cache, which is not backed up either) and symbolic links (an artifact holds
    regular files only)."""
    return relative.startswith("code/") and (path.name == ".git" or path.is_symlink())


def _check_state(files: dict[str, bytes], material: EngineMaterial) -> None:
    """Refuse a backup whose CA files do not belong to its material."""
    ca_cert = material.public["ca_cert"]
    if files.get(f"ca/{puppet_ca.CA_CERT}", b"").decode("ascii", "replace") != ca_cert:
        raise EngineError("The backup artifact is unusable: its CA certificate is not its "
                          "material's.")
    crl_pem = files.get(f"ca/{puppet_ca.CA_CRL}")
    if crl_pem is None:
        raise EngineError("The backup artifact is unusable: it has no CA CRL.")
    problem = crl.crl_problem(crl_pem.decode("ascii", "replace"), ca_cert)
    if problem:
        raise EngineError(f"The backup artifact is unusable: {problem}")
    for name, data in files.items():
        if name.startswith(f"ca/{puppet_ca.SIGNED}/") and not _signed_by(data, ca_cert):
            raise EngineError(f"The backup artifact is unusable: {name} is not signed by its "
                              "CA.")


def _signed_by(cert_pem: bytes, ca_cert: str) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_cert.encode("ascii")))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _from_embedded(files: dict[str, bytes], material: EngineMaterial) -> dict[str, bytes]:
    """The state of a puppetserver server holding an embedded server's CA, nodes and CRL."""
    ca_cert, ca_key = material.public["ca_cert"], material.secrets["ca_key"]
    out: dict[str, bytes] = {f"ca/{puppet_ca.CA_CERT}": ca_cert.encode("ascii")}
    out[f"ca/{puppet_ca.CA_CRL}"] = files.get("crl.pem") or crl.build_crl(
        ca_cert, ca_key, [], number=1).encode("ascii")
    out[f"ca/{puppet_ca.SERIAL}"] = b"0001"
    out[f"ca/{puppet_ca.INVENTORY}"] = b""
    for name, data in files.items():
        if not (name.startswith("nodes/") and name.endswith(".json")):
            continue
        try:
            record = json.loads(data)
            cert = record["certificate"]
            node = record["name"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(cert, str) and isinstance(node, str) and _CERTNAME.fullmatch(node):
            out[f"ca/{puppet_ca.SIGNED}/{node}.pem"] = cert.encode("ascii")
    return out


# ------------------------------------------------------------------------ configuration

# puppetserver's services (the package's bootstrap.cfg and ca.cfg), without the analytics
# service, which would phone home for update checks.
_SERVICES = """\
puppetlabs.services.request-handler.request-handler-service/request-handler-service
puppetlabs.services.jruby.jruby-puppet-service/jruby-puppet-pooled-service
puppetlabs.services.jruby-pool-manager.jruby-pool-manager-service/jruby-pool-manager-service
puppetlabs.services.puppet-profiler.puppet-profiler-service/puppet-profiler-service
puppetlabs.trapperkeeper.services.webserver.jetty9-service/jetty9-service
puppetlabs.trapperkeeper.services.webrouting.webrouting-service/webrouting-service
puppetlabs.services.config.puppet-server-config-service/puppet-server-config-service
puppetlabs.services.master.master-service/master-service
puppetlabs.services.puppet-admin.puppet-admin-service/puppet-admin-service
puppetlabs.trapperkeeper.services.authorization.authorization-service/authorization-service
puppetlabs.services.versioned-code-service.versioned-code-service/versioned-code-service
puppetlabs.trapperkeeper.services.scheduler.scheduler-service/scheduler-service
puppetlabs.trapperkeeper.services.status.status-service/status-service
puppetlabs.trapperkeeper.services.metrics.metrics-service/metrics-service
puppetlabs.trapperkeeper.services.metrics.metrics-service/metrics-webservice
puppetlabs.services.jruby.jruby-metrics-service/jruby-metrics-service
puppetlabs.services.ca.certificate-authority-service/certificate-authority-service
puppetlabs.trapperkeeper.services.watcher.filesystem-watch-service/filesystem-watch-service
"""

_CLI_AUTH = {"extensions": {"pp_cli_auth": "true"}}


def _rule(name: str, path: str, kind: str, methods: list[str] | str | None,
          **access: object) -> dict[str, object]:
    match: dict[str, object] = {"path": path, "type": kind}
    if methods is not None:
        match["method"] = methods
    return {"match-request": match, **access, "sort-order": 500, "name": name}


# The package's auth.conf rules: nodes reach only their own catalog, node, report and facts;
# the CA's management endpoints need pp_cli_auth (cmhost's client certificate).
_AUTH_RULES = [
    _rule("puppetlabs v3 catalog from agents", "^/puppet/v3/catalog/([^/]+)$", "regex",
          ["get", "post"], allow="$1"),
    _rule("puppetlabs v4 catalog for services", "^/puppet/v4/catalog/?$", "regex", "post",
          deny="*"),
    _rule("puppetlabs certificate", "/puppet-ca/v1/certificate/", "path", "get",
          **{"allow-unauthenticated": True}),
    _rule("puppetlabs crl", "/puppet-ca/v1/certificate_revocation_list/ca", "path", "get",
          **{"allow-unauthenticated": True}),
    _rule("puppetlabs csr", "/puppet-ca/v1/certificate_request", "path", ["get", "put"],
          **{"allow-unauthenticated": True}),
    _rule("puppetlabs cert status", "/puppet-ca/v1/certificate_status", "path",
          ["get", "put", "delete"], allow=_CLI_AUTH),
    _rule("puppetlabs CRL update", "^/puppet-ca/v1/certificate_revocation_list$", "regex",
          "put", allow=_CLI_AUTH),
    _rule("puppetlabs cert statuses", "/puppet-ca/v1/certificate_statuses", "path", "get",
          allow=_CLI_AUTH),
    _rule("puppetlabs CA cert and CRL expirations", "/puppet-ca/v1/expirations", "path", "get",
          allow="*"),
    _rule("puppetlabs cert clean", "/puppet-ca/v1/clean", "path", "put", allow=_CLI_AUTH),
    _rule("puppetlabs status service - full", "/status/v1/services", "path", "get",
          **{"allow-unauthenticated": True}),
    _rule("puppetlabs status service - simple", "/status/v1/simple", "path", "get",
          **{"allow-unauthenticated": True}),
    _rule("puppetlabs environments", "/puppet/v3/environments", "path", "get", allow="*"),
    _rule("puppetlabs file bucket file", "/puppet/v3/file_bucket_file", "path",
          ["get", "head", "post", "put"], allow="*"),
    _rule("puppetlabs file content", "/puppet/v3/file_content", "path", ["get", "post"],
          allow="*"),
    _rule("puppetlabs file metadata", "/puppet/v3/file_metadata", "path", ["get", "post"],
          allow="*"),
    _rule("puppetlabs node", "^/puppet/v3/node/([^/]+)$", "regex", "get", allow="$1"),
    _rule("puppetlabs report", "^/puppet/v3/report/([^/]+)$", "regex", "put", allow="$1"),
    _rule("puppetlabs facts", "^/puppet/v3/facts/([^/]+)$", "regex", "put", allow="$1"),
    _rule("puppetlabs static file content", "/puppet/v3/static_file_content", "path", "get",
          allow="*"),
    _rule("puppet tasks information", "/puppet/v3/tasks", "path", None, allow="*"),
    {"match-request": {"path": "/", "type": "path"}, "deny": "*", "sort-order": 999,
     "name": "puppetlabs deny all"},
]

_LOGBACK = """\
<configuration scan="false">
  <appender name="F1" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>{log}/puppetserver.log</file>
    <append>true</append>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>{log}/puppetserver.%i.log.gz</fileNamePattern>
      <minIndex>1</minIndex>
      <maxIndex>5</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>20MB</maxFileSize>
    </triggeringPolicy>
    <encoder>
      <pattern>%d{{yyyy-MM-dd'T'HH:mm:ss.SSSXXX}} %-5p [%t] [%c{{2}}] %m%n</pattern>
    </encoder>
  </appender>
  <logger name="org.eclipse.jetty" level="INFO"/>
  <logger name="org.apache.http" level="INFO"/>
  <logger name="jruby" level="info"/>
  <root level="info">
    <appender-ref ref="F1"/>
  </root>
</configuration>
"""

_ACCESS_LOG = """\
<configuration debug="false">
  <appender name="FILE" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>{log}/puppetserver-access.log</file>
    <append>true</append>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>{log}/puppetserver-access.%i.log.gz</fileNamePattern>
      <minIndex>1</minIndex>
      <maxIndex>3</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>20MB</maxFileSize>
    </triggeringPolicy>
    <encoder>
      <pattern>%h %l %u [%t] "%r" %s %b "%i{{Referer}}" "%i{{User-Agent}}" %D</pattern>
    </encoder>
  </appender>
  <appender-ref ref="FILE"/>
</configuration>
"""


def _hocon(value: object) -> str:
    """JSON, which is valid HOCON, with every string quoted (paths with ':' stay intact)."""
    return json.dumps(value, indent=2) + "\n"


def _xml_path(path: Path) -> str:
    return str(path).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_config(*, root: Path, state: Path, conf: Path, ssl: Path, var: Path, run: Path,
                  log: Path, certname: str, host: str, port: int, alt_names: list[str],
                  server_label: str) -> dict[str, str]:
    """The server's configuration files, relative to its conf/ directory."""
    code, cadir = state / "code", state / "ca"
    gem_home = var / "jruby-gems"
    puppet_conf = "\n".join([
        f"# Written by cmhost for the Puppet server {server_label}; rewritten at every start.",
        "[main]",
        f"ssldir = {ssl}",
        f"certname = {certname}",
        f"server = {certname}",
        f"ca_server = {certname}",
        f"serverport = {port}",
        f"ca_port = {port}",
        # cmhost writes the keys 0600; puppetserver would make them group-readable.
        "manage_internal_file_permissions = false",
        "",
        "[server]",
        f"cadir = {cadir}",
        f"dns_alt_names = {','.join(alt_names)}",
        "autosign = false",
        "ca_ttl = 5y",
        "environment_timeout = 0",
        "",
    ])
    files = {
        "puppet.conf": puppet_conf,
        "conf.d/global.conf": _hocon({"global": {"logging-config": str(conf / "logback.xml")}}),
        "conf.d/webserver.conf": _hocon({"webserver": {
            "access-log-config": str(conf / "request-logging.xml"), "client-auth": "want",
            "ssl-host": host, "ssl-port": port}}),
        "conf.d/puppetserver.conf": _hocon({
            "jruby-puppet": {
                "ruby-load-path": [str(RUBY_LOAD_PATH)],
                "gem-home": str(gem_home),
                "gem-path": [str(gem_home), "/usr/lib/puppetserver/vendored-jruby-gems"],
                "server-conf-dir": str(conf),
                "server-code-dir": str(code),
                "server-var-dir": str(var),
                "server-run-dir": str(run),
                "server-log-dir": str(log),
                "max-active-instances": 1,
            },
            "http-client": {},
            "profiler": {"enabled": False},
            "dropsonde": {"enabled": False},
        }),
        "conf.d/auth.conf": _hocon({"authorization": {"version": 1, "rules": _AUTH_RULES}}),
        "conf.d/ca.conf": _hocon({"certificate-authority": {
            "allow-subject-alt-names": False, "allow-authorization-extensions": False,
            "enable-infra-crl": False}}),
        "conf.d/web-routes.conf": _hocon({"web-router-service": {
            "puppetlabs.services.ca.certificate-authority-service/"
            "certificate-authority-service": "/puppet-ca",
            "puppetlabs.services.master.master-service/master-service": "/puppet",
            "puppetlabs.services.legacy-routes.legacy-routes-service/legacy-routes-service": "",
            "puppetlabs.services.puppet-admin.puppet-admin-service/puppet-admin-service":
                "/puppet-admin-api",
            "puppetlabs.trapperkeeper.services.status.status-service/status-service": "/status",
            "puppetlabs.trapperkeeper.services.metrics.metrics-service/metrics-webservice":
                "/metrics"}}),
        "conf.d/metrics.conf": _hocon({"metrics": {
            "server-id": certname,
            "registries": {"puppetserver": {"reporters": {"jmx": {"enabled": False}}}},
            "metrics-webservice": {"jolokia": {"enabled": False}}}}),
        "conf.d/product.conf": _hocon({"product": {"check-for-updates": False}}),
        "services.d/bootstrap.cfg": _SERVICES,
        "logback.xml": _LOGBACK.format(log=_xml_path(log)),
        "request-logging.xml": _ACCESS_LOG.format(log=_xml_path(log)),
    }
    return files
