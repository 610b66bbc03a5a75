"""The goiardi driver: every Chef server is its own supervised goiardi process (Chef in Go).

Each server owns data_dir/engines/<server_id>/:

    engine.json, port           driver, endpoint, version; the port (supervisor.reserve_port)
    conf/ca.pem, conf/server.pem  the server's CA and TLS certificate (public)
    conf/server-key.pem         the TLS key goiardi serves with (0600)
    conf/cmhost.pem             cmhost's admin client key, a copy of the material's (0600)
    data/goiardi-data.bin, data/goiardi-index.bin   goiardi's own persistence (--freeze-data)
    goiardi.log, goiardi.pid

goiardi runs with authentication, HTTPS (the certificate cmhost's per-server CA issued, so a
starter kit's CA verifies it), on ctx.engine_host and a port from [ctx.port_min, ctx.port_max]
recorded in `port`; the Endpoint is engine_host:port. It serves one organization at the
root: `/nodes`, not `/organizations/default/nodes` (that path answers 200 with an empty
body), so knife and chef-client use `https://<endpoint>` as chef_server_url.

Actors. On its first start goiardi creates the user `admin` and the clients `chef-webui`
(an admin) and `chef-validator`, writing their private keys into conf/. cmhost signs in once
as `admin` to create its own admin client `cmhost` (key pair made in `prepare`, private key in
EngineMaterial.secrets, encrypted in cmhost's database) and the admin user `pivotal` with the
pivotal public key (the caller's, or the one whose private half CreateServer handed out).
Then the three generated actors get public keys whose private halves were never kept, and
their key files are deleted: from then on only `pivotal`, `cmhost` and the nodes can sign in.
node_names and accepts_client get no material in the EngineDriver protocol, so the driver
keeps a 0600 copy of cmhost's key in conf/.

Backups are goiardi's own export (`goiardi -x`, run on a copy of the data file after a clean
stop that flushes it) in cmhost's checksummed artifact; restore imports it (`goiardi -m`) into
a fresh state and swaps the whole directory in atomically.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from cmhost.engines import archive, chef_auth, pki
from cmhost.engines.base import (
    DriverContext,
    EngineError,
    EngineMaterial,
    Health,
    InvalidEngineAttribute,
    Maintained,
    NodeAction,
    Prepared,
    ServerSpec,
)
from cmhost.engines.embedded_identity import (
    copy_material,
    current_server_cert,
    prepare_identity,
    server_names,
    update_credential,
)
from cmhost.engines.issuance import Issued
from cmhost.engines.node_attributes import (
    CHEF_NODE_PUBLIC_KEY,
    check_node_attributes,
    node_name_problem,
)
from cmhost.engines.statedir import locked, remove_leftovers, replace_dir, write_atomic
from cmhost.engines.supervisor import (
    PORT_FILE,
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

PACKAGE_HINT = "install the Debian package goiardi (apt-get install goiardi)"
CHEF_UPGRADE_VERSION = "2"  # what CHEF_MAJOR_UPGRADE makes of a Chef 12 server, as embedded

ENGINE_FILE = "engine.json"
CONF_DIR, DATA_DIR = "conf", "data"
CA_FILE, CERT_FILE, KEY_FILE = "conf/ca.pem", "conf/server.pem", "conf/server-key.pem"
CMHOST_KEY_FILE = "conf/cmhost.pem"
DATA_FILE, INDEX_FILE = "data/goiardi-data.bin", "data/goiardi-index.bin"
LOG_FILE, PID_FILE = "goiardi.log", "goiardi.pid"
EXPORT_FILE = "goiardi-export.json"  # the member of a backup artifact

CMHOST_CLIENT = "cmhost"
PIVOTAL = "pivotal"
CMHOST_KEY = "cmhost_client_key"  # EngineMaterial.secrets
# Actors goiardi makes on its first start, with their key files in conf/.
GENERATED_ACTORS = (("users", "admin"), ("clients", "chef-webui"), ("clients", "chef-validator"))
RESERVED_NAMES = frozenset({PIVOTAL, CMHOST_CLIENT} | {name for _, name in GENERATED_ACTORS})

FREEZE_SECONDS = 1  # goiardi writes changed data to disk this often
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 15.0
HEALTH_TIMEOUT = 5.0
TOOL_TIMEOUT = 120.0

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_WILDCARD = {"", "0.0.0.0", "::"}


class Unreachable(EngineError):
    """goiardi could not be reached (refused, timed out, reset)."""


class WrongAnswer(EngineError):
    """Something answered, but not as goiardi serving this server would."""


def _dump(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def _normal_key(pem: object) -> str | None:
    """A public key in canonical PEM, or None when it is not one."""
    try:
        return pki.public_key_pem(pki.load_public_key(str(pem)))
    except ValueError:
        return None


def goiardi_binary() -> str:
    """The goiardi executable; EngineError naming the package when it is not installed."""
    found = shutil.which("goiardi")
    if not found:
        raise EngineError(f"goiardi is not installed on the cmhost machine: {PACKAGE_HINT}")
    return found


def _clean_env() -> dict[str, str]:
    """cmhost's environment without GOIARDI_* variables, which goiardi would read as flags."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GOIARDI_")}


# ----------------------------------------------------------------------------- chef URLs

_KNIFE_URL = "chef_server_url 'https://{endpoint}/organizations/default'"
_USERDATA_URL = '"https://$CHEF_SERVER_ENDPOINT/organizations/$CHEF_ORGANIZATION"'


def root_url_userdata(script: str) -> str:
    """The user data script with chef_server_url at goiardi's root (it has no /organizations)."""
    if _USERDATA_URL not in script:
        raise EngineError("the user data template no longer names chef_server_url as expected")
    return script.replace(_USERDATA_URL, '"https://$CHEF_SERVER_ENDPOINT"')


def root_url_kit(spec: ServerSpec, kit_b64: str) -> str:
    """The Chef starter kit (base64 ZIP) with knife.rb and userdata.sh pointing at the root.

    A stopgap until starter_kits/userdata take the server URL as a parameter.
    """
    old_knife = _KNIFE_URL.format(endpoint=spec.endpoint)
    new_knife = f"chef_server_url 'https://{spec.endpoint}'"
    source = zipfile.ZipFile(io.BytesIO(base64.b64decode(kit_b64)))
    out = io.BytesIO()
    with source, zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("/.chef/knife.rb"):
                text = data.decode("utf-8")
                if old_knife not in text:
                    raise EngineError("the starter kit's knife.rb does not name the server URL")
                data = text.replace(old_knife, new_knife).encode("utf-8")
            elif info.filename.endswith("/userdata.sh"):
                data = root_url_userdata(data.decode("utf-8")).encode("utf-8")
            target.writestr(info, data)
    return base64.b64encode(out.getvalue()).decode("ascii")


def _with_root_urls(spec: ServerSpec, prepared: Prepared) -> Prepared:
    attrs = [
        (name, root_url_kit(spec, value) if name == "CHEF_STARTER_KIT" else value)
        for name, value in prepared.one_time_attributes
    ]
    return Prepared(material=prepared.material, one_time_attributes=attrs)


# ------------------------------------------------------------------------ the Chef API


class ChefApi:
    """Signed requests to one goiardi over HTTPS, verified against the server's CA."""

    def __init__(self, host: str, port: int, ca_cert: str, user: str, key_pem: str,
                 timeout: float = REQUEST_TIMEOUT) -> None:
        self.host, self.port, self.user, self.timeout = host, port, user, timeout
        self._ca_cert = ca_cert
        try:
            self._key = chef_auth.load_private_key(key_pem)
        except ValueError as exc:
            raise EngineError(f"the key of Chef actor {user!r} is unusable: {exc}") from None

    def as_actor(self, user: str, key_pem: str) -> ChefApi:
        return ChefApi(self.host, self.port, self._ca_cert, user, key_pem, self.timeout)

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self._ca_cert)

    def raw(self, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        """One HTTPS request: (status, body, lower-cased headers)."""
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                           context=self._context())
        try:
            conn.request(method, path, body=body or None, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}
        except ssl.SSLCertVerificationError as exc:
            raise WrongAnswer(f"its TLS certificate is not the server's: {exc.verify_message}"
                              ) from None
        except ssl.SSLError as exc:
            raise WrongAnswer(f"it does not speak TLS as goiardi does ({exc.reason})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(f"{self.host}:{self.port} cannot be reached "
                              f"({exc.__class__.__name__}: {caller_message(exc)})") from None
        finally:
            conn.close()

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
        """A signed request as this actor: (status, parsed JSON or None)."""
        raw = b"" if body is None else json.dumps(body).encode("utf-8")
        headers = chef_auth.sign_request(self._key, user_id=self.user, method=method,
                                         path=path, body=raw)
        headers.update({"Accept": "application/json", "X-Chef-Version": "12.0.0"})
        if raw:
            headers["Content-Type"] = "application/json"
        status, data, got = self.raw(method, path, raw, headers)
        if got.get("x-goiardi") != "yes":
            raise WrongAnswer(f"the program at {self.host}:{self.port} is not goiardi")
        try:
            parsed = json.loads(data) if data.strip() else None
        except ValueError:
            raise WrongAnswer(f"goiardi answered {method} {path} with something not JSON"
                              ) from None
        return status, parsed

    def expect(self, method: str, path: str, body: object | None = None,
               ok: tuple[int, ...] = (200, 201)) -> tuple[int, Any]:
        status, parsed = self.call(method, path, body)
        if status not in ok:
            detail = parsed.get("error") if isinstance(parsed, dict) else parsed
            raise EngineError(f"goiardi refused {method} {path} ({status}): {detail}")
        return status, parsed


# ----------------------------------------------------------------------------- driver


class GoiardiDriver:
    """Chef servers run by goiardi processes, one per server."""

    name: str = "goiardi"

    def __init__(self, ctx: DriverContext) -> None:
        self._ctx = ctx
        self.supervisor = Supervisor()
        # The goiardi pid cmhost expects to serve each server: set when cmhost starts or
        # attaches to it, cleared when cmhost stops it. A different live pid means goiardi
        # died and was started again (by the supervisor, or by whoever ensured it first).
        self._expected_pid: dict[str, int] = {}

    # ------------------------------------------------------------------ places

    def _dir(self, server_id: str) -> Path:
        if not _SAFE_ID.fullmatch(server_id) or ".." in server_id:
            raise EngineError(f"server id {server_id[:64]!r} is not a safe directory name")
        return self._ctx.data_dir / "engines" / server_id

    def server_dir(self, spec: ServerSpec) -> Path:
        """Where the server's state lives: data_dir/engines/<server_id>."""
        return self._dir(spec.server_id)

    def _connect_host(self) -> str:
        host = self._ctx.engine_host
        return "127.0.0.1" if host in _WILDCARD else host

    @staticmethod
    def _engine(root: Path) -> dict[str, Any]:
        try:
            value = json.loads((root / ENGINE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    @staticmethod
    def _port_of(root: Path) -> int | None:
        return recorded_port(root)

    # ------------------------------------------------------------------- ports

    def _endpoint_port(self, spec: ServerSpec) -> int | None:
        """The port of an endpoint `engine_host:port` (what allocate_endpoint hands out)."""
        host, sep, port = spec.endpoint.rpartition(":")
        if sep and port.isdigit() and host.strip("[]") == self._ctx.engine_host:
            return int(port)
        return None

    def _reserve_port(self, root: Path, preferred: int | None = None) -> int:
        """The server's port, recorded in <root>/port (shared with the other real drivers)."""
        try:
            return reserve_port(root, self._ctx.engine_host, self._ctx.port_min,
                                self._ctx.port_max, preferred=preferred)
        except SupervisorError as exc:
            raise EngineError(str(exc)) from None

    def allocate_endpoint(self, server_id: str, server_name: str = "", region: str = "") -> str:
        """A reachable Endpoint `engine_host:port` for a new server (CreateServer calls this
        before `prepare`, so the server certificate names it), its port recorded in
        data_dir/engines/<server_id>/port; `destroy` releases it. Raises EngineError naming
        the package when goiardi is not installed, or when no port is free."""
        goiardi_binary()
        port = self._reserve_port(self._dir(server_id))
        host = self._ctx.engine_host
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # ---------------------------------------------------------------- identity

    def _with_engine_names(self, spec: ServerSpec, material: EngineMaterial) -> EngineMaterial:
        """The material with a server certificate that is current, names the endpoint (and
        custom domain) and also the address goiardi listens on, which cmhost connects to."""
        current = current_server_cert(spec, material)
        host = self._ctx.engine_host
        names = server_names(spec)
        if host in _WILDCARD or host in pki.certificate_names(current.public["server_cert"]):
            return current
        names.append(host)
        cert, key = pki.issue_certificate(current.public["ca_cert"], current.secrets["ca_key"],
                                          names[0], names)
        renewed = copy_material(current)
        renewed.public["server_cert"], renewed.secrets["server_key"] = cert, key
        return renewed

    def prepare(self, spec: ServerSpec, attributes: dict[str, str]) -> Prepared:
        """The embedded identity (CA, server certificate, pivotal key, starter kit), a
        certificate that also names the engine address, and cmhost's own admin client key."""
        self._check_family(spec)
        goiardi_binary()
        prepared = prepare_identity(spec, attributes)
        material = self._with_engine_names(spec, prepared.material)
        material.secrets[CMHOST_KEY] = pki.private_key_pem(pki.generate_rsa_key())
        return _with_root_urls(spec, Prepared(material, prepared.one_time_attributes))

    def public_attributes(self, spec: ServerSpec, material: EngineMaterial
                          ) -> list[tuple[str, str]]:
        """Nothing: a Chef server shows no engine attribute in DescribeServers."""
        return []

    # ------------------------------------------------------------ the process

    @staticmethod
    def _process(spec: ServerSpec, root: Path, argv: list[str]) -> ProcessSpec:
        """How the supervisor runs (and recognises, by its data file) the server's goiardi."""
        return ProcessSpec(name=f"goiardi of {spec.name}", argv=argv, cwd=root,
                           log_file=root / LOG_FILE, pid_file=root / PID_FILE,
                           marker=str(root / DATA_FILE), env=_clean_env(),
                           stop_timeout=STOP_TIMEOUT)

    def _stop(self, spec: ServerSpec, root: Path) -> None:
        """Stop goiardi (SIGTERM: it writes its data file, then exits) and its supervision."""
        self.supervisor.stop(spec.server_id, self._process(spec, root, []))
        self._expected_pid.pop(spec.server_id, None)

    def _alive(self, spec: ServerSpec) -> bool:
        status = self.supervisor.status(spec.server_id)
        return status is not None and status.alive

    def _argv(self, spec: ServerSpec, root: Path, port: int) -> list[str]:
        # goiardi names itself in the URLs it returns: the endpoint's host when the Endpoint
        # is engine_host:port, else the address cmhost connects to.
        hostname = (self._connect_host() if self._endpoint_port(spec) is None
                    else spec.endpoint.rpartition(":")[0].strip("[]"))
        return [
            goiardi_binary(), "--use-auth",
            "--ipaddress", self._ctx.engine_host, "--port", str(port), "--hostname", hostname,
            "--conf-root", str(root / CONF_DIR),
            "--data-file", str(root / DATA_FILE), "--index-file", str(root / INDEX_FILE),
            "--freeze-interval", str(FREEZE_SECONDS),
            "--use-ssl", "--ssl-cert", str(root / CERT_FILE), "--ssl-key", str(root / KEY_FILE),
            "--disable-webui", "--log-level", "warning", "--log-file", str(root / LOG_FILE),
        ]

    def _api(self, root: Path, material: EngineMaterial, *,
             timeout: float = REQUEST_TIMEOUT) -> ChefApi:
        port = self._port_of(root)
        key = material.secrets.get(CMHOST_KEY)
        if port is None or not key:
            raise EngineError("the engine has no port or cmhost has no admin key for it")
        return ChefApi(self._connect_host(), port, material.public["ca_cert"], CMHOST_CLIENT,
                       key, timeout)

    def _api_from_disk(self, root: Path, timeout: float = REQUEST_TIMEOUT) -> ChefApi:
        port = self._port_of(root)
        try:
            ca_cert = (root / CA_FILE).read_text(encoding="ascii")
            key = (root / CMHOST_KEY_FILE).read_text(encoding="ascii")
        except OSError:
            raise EngineError("the engine's state is incomplete; restore it from a backup"
                              ) from None
        if port is None:
            raise EngineError("the engine has no port recorded")
        return ChefApi(self._connect_host(), port, ca_cert, CMHOST_CLIENT, key, timeout)

    def _write_conf(self, root: Path, material: EngineMaterial) -> bool:
        """Write the certificate, keys and CA goiardi and cmhost use; True if one changed."""
        (root / CONF_DIR).mkdir(parents=True, exist_ok=True)
        (root / DATA_DIR).mkdir(parents=True, exist_ok=True)
        os.chmod(root / CONF_DIR, 0o700)
        wanted = {
            CA_FILE: (material.public["ca_cert"], 0o644),
            CERT_FILE: (material.public["server_cert"], 0o644),
            KEY_FILE: (material.secrets["server_key"], 0o600),
            CMHOST_KEY_FILE: (material.secrets[CMHOST_KEY], 0o600),
        }
        changed = False
        for relative, (text, mode) in wanted.items():
            path = root / relative
            with contextlib.suppress(OSError):
                if path.read_text(encoding="ascii") == text:
                    continue
            write_atomic(path, text, mode=mode)
            changed = True
        return changed

    def _log_tail(self, root: Path) -> str:
        try:
            lines = (root / LOG_FILE).read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][-300:] if lines else ""

    def _wait_serving(self, spec: ServerSpec, root: Path, api: ChefApi) -> None:
        """Until goiardi answers over TLS (401 to an unsigned request is an answer)."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if not self._alive(spec):
                raise EngineError(f"goiardi exited at start: {self._log_tail(root)}")
            try:
                _, _, headers = api.raw("GET", "/users")
                if headers.get("x-goiardi") == "yes":
                    return
            except Unreachable:
                pass
            if time.monotonic() > deadline:
                raise EngineError(f"goiardi did not answer within {START_TIMEOUT:.0f} s")
            time.sleep(0.05)

    def _ensure_running(self, spec: ServerSpec, root: Path, material: EngineMaterial) -> None:
        """Supervise goiardi: re-attach to it, or start it, with the current certificate,
        and wait until it serves. Run under the server's lock."""
        port = self._reserve_port(root, self._endpoint_port(spec))
        process = self._process(spec, root, self._argv(spec, root, port))
        changed = self._write_conf(root, material)
        running = read_pid(process) is not None
        # Expected to run but dead: a crash, which check_health reports once it sees the pid.
        crashed = not running and spec.server_id in self._expected_pid
        try:
            if not running and not port_is_free(self._ctx.engine_host, port):
                raise EngineError(f"port {port} on {self._ctx.engine_host} is taken by another "
                                  "program; goiardi cannot listen there")
            if running and changed:
                pid = self.supervisor.restart(spec.server_id, process)  # the new certificate
            else:
                pid = self.supervisor.ensure(spec.server_id, process)
        except SupervisorError as exc:
            raise EngineError(str(exc)) from None
        if not crashed:
            self._expected_pid[spec.server_id] = pid
        self._wait_serving(spec, root, self._api(root, material))

    # ---------------------------------------------------------------- actors

    def _wait_saved(self, spec: ServerSpec, root: Path) -> None:
        """Return once goiardi has written the changes just made to its data file, so a
        crash cannot undo them (it writes changed data every FREEZE_SECONDS).

        goiardi's save holds its store's read lock until the file is renamed into place and
        every change takes the write lock, so a data file written after this call began holds
        the changes. If none is written within a tick (and a second of slack for a loaded
        machine), the save that held them finished just before this call: goiardi would have
        saved again on its next tick had anything been left unsaved.
        """
        after = time.time_ns()
        deadline = time.monotonic() + 2 * FREEZE_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                if (root / DATA_FILE).stat().st_mtime_ns > after:
                    return
            if not self._alive(spec):
                raise EngineError("goiardi stopped before it had saved the change")
            time.sleep(0.05)
        if not (root / DATA_FILE).exists():
            raise EngineError(f"goiardi has not written {DATA_FILE}")

    def _sync_actors(self, spec: ServerSpec, root: Path, material: EngineMaterial) -> None:
        """Make goiardi's actors match the material (idempotent): cmhost's admin client,
        the pivotal admin user, and the generated actors' keys discarded; saved to disk."""
        api = self._api(root, material)
        cmhost_public = pki.public_key_pem(chef_auth.load_private_key(material.secrets[CMHOST_KEY]))
        changed = False
        status, _ = api.call("GET", f"/clients/{CMHOST_CLIENT}")
        if status == 401:
            self._bootstrap(root, api, cmhost_public)
            changed = True
        elif status != 200:
            raise EngineError(f"goiardi answered GET /clients/{CMHOST_CLIENT} with {status}")
        pivotal = material.public.get("pivotal_public_key")
        if not pivotal:
            raise EngineError("the server's engine material lacks the pivotal public key")
        status, user = api.call("GET", f"/users/{PIVOTAL}")
        if status == 404:
            password = pki.random_password(32)  # nobody signs in with it: keys only
            api.expect("POST", "/users", {"name": PIVOTAL, "admin": True, "password": password,
                                          "public_key": pivotal})
            changed = True
        elif status != 200 or not isinstance(user, dict):
            raise EngineError(f"goiardi answered GET /users/{PIVOTAL} with {status}")
        elif _normal_key(user.get("public_key")) != _normal_key(pivotal) or not user.get("admin"):
            api.expect("PUT", f"/users/{PIVOTAL}", {"name": PIVOTAL, "admin": True,
                                                    "public_key": pivotal})
            changed = True
        key_files = self._discard_generated_keys(root, api)
        if changed or key_files:
            self._wait_saved(spec, root)
        for key_file in key_files:  # only once goiardi can no longer lose cmhost's client
            key_file.unlink(missing_ok=True)

    def _bootstrap(self, root: Path, api: ChefApi, cmhost_public: str) -> None:
        """cmhost's client is unknown to goiardi: create it as goiardi's generated admin."""
        try:
            admin_key = (root / CONF_DIR / "admin.pem").read_text(encoding="ascii")
        except OSError:
            raise EngineError("goiardi does not accept cmhost's admin client, and its own "
                              "admin key is gone; restore the server from a backup") from None
        admin = api.as_actor("admin", admin_key)
        body = {"name": CMHOST_CLIENT, "admin": True, "public_key": cmhost_public}
        status, _ = admin.call("POST", "/clients", body)
        if status == 409:
            admin.expect("PUT", f"/clients/{CMHOST_CLIENT}", body)
        elif status != 201:
            raise EngineError(f"goiardi refused to create cmhost's admin client ({status})")

    def _discard_generated_keys(self, root: Path, api: ChefApi) -> list[Path]:
        """Give goiardi's generated actors keys nobody holds; returns their key files, for
        the caller to delete once that is saved."""
        key_files: list[Path] = []
        nobodys_key = ""  # one public key for all: its private half is never kept
        for kind, name in GENERATED_ACTORS:
            key_file = root / CONF_DIR / f"{name}.pem"
            if not key_file.exists():
                continue
            status, actor = api.call("GET", f"/{kind}/{name}")
            if status == 200 and isinstance(actor, dict):
                nobodys_key = nobodys_key or pki.public_key_pem(pki.generate_rsa_key())
                body = {"name": name, "admin": bool(actor.get("admin")),
                        "public_key": nobodys_key}
                if kind == "clients":
                    body["validator"] = bool(actor.get("validator"))
                api.expect("PUT", f"/{kind}/{name}", body)
            key_files.append(key_file)
        return key_files

    # ----------------------------------------------------------------- lifecycle

    def provision(self, spec: ServerSpec, material: EngineMaterial) -> None:
        """Start goiardi (or keep it running) and make its actors match the material."""
        self._check_family(spec)
        root = self.server_dir(spec)
        with locked(root):
            self._ensure_running(spec, root, material)
            self._sync_actors(spec, root, material)
            self._write_engine(spec, root)

    def _write_engine(self, spec: ServerSpec, root: Path, version: str | None = None) -> None:
        engine = {**self._engine(root), "driver": self.name, "family": spec.family,
                  "engine": spec.engine, "version": version or spec.engine_version,
                  "endpoint": spec.endpoint, "name": spec.name}
        write_atomic(root / ENGINE_FILE, _dump(engine))

    def check_health(self, spec: ServerSpec, material: EngineMaterial) -> Health:
        """HEALTHY when goiardi answers cmhost's signed GET /users/pivotal with the server's
        pivotal key; UNHEALTHY when it answers wrongly, or once after it died and was started
        again; CONNECTION_LOST when it is not running or cannot be reached."""
        root = self.server_dir(spec)
        if not (root / ENGINE_FILE).exists():
            return Health("CONNECTION_LOST", "The engine's state directory is gone.")
        if self.supervisor.status(spec.server_id) is None:  # not supervised by this cmhost yet
            try:
                with locked(root):
                    self._ensure_running(spec, root, material)
            except EngineError as exc:
                return Health("CONNECTION_LOST",
                              f"goiardi could not be started: {caller_message(exc)}")
        status = self.supervisor.status(spec.server_id)
        if status is None or not status.alive or status.pid is None:
            exit_ = status.last_exit if status and status.last_exit else "not running"
            return Health("CONNECTION_LOST", f"goiardi has stopped ({exit_}); cmhost is "
                                             "restarting it.")
        expected = self._expected_pid.setdefault(spec.server_id, status.pid)
        if status.pid != expected:
            self._expected_pid[spec.server_id] = status.pid
            return Health("UNHEALTHY", f"goiardi (pid {expected}) stopped "
                                       f"({status.last_exit or 'it exited'}); cmhost restarted "
                                       f"it (pid {status.pid}).")
        try:
            code, user = self._api(root, material, timeout=HEALTH_TIMEOUT).call(
                "GET", f"/users/{PIVOTAL}")
        except Unreachable as exc:
            return Health("CONNECTION_LOST", f"goiardi cannot be reached: {caller_message(exc)}")
        except EngineError as exc:
            return Health("UNHEALTHY", f"goiardi answers wrongly: {caller_message(exc)}")
        if code == 401:
            return Health("UNHEALTHY", "goiardi does not accept cmhost's admin client.")
        if code != 200 or not isinstance(user, dict):
            return Health("UNHEALTHY", f"goiardi answered GET /users/{PIVOTAL} with {code}.")
        if _normal_key(user.get("public_key")) != _normal_key(
                material.public.get("pivotal_public_key")):
            return Health("UNHEALTHY", "goiardi's pivotal key is not the server's.")
        return Health("HEALTHY")

    def resume(self, spec: ServerSpec, material: EngineMaterial) -> None:
        """Re-attach to the goiardi that survived cmhost, or start it again."""
        root = self.server_dir(spec)
        if not (root / ENGINE_FILE).exists():
            raise EngineError("the engine's state directory is gone; restore from a backup")
        with locked(root):
            self._ensure_running(spec, root, material)

    def close(self) -> None:
        """Stop watching; the goiardi processes keep serving until resumed or destroyed."""
        self.supervisor.close()

    def destroy(self, spec: ServerSpec) -> None:
        """Stop goiardi and remove the server's directory (fine if already gone)."""
        root = self.server_dir(spec)
        with locked(root):
            if root.is_dir():
                self._stop(spec, root)
            remove_leftovers(root)
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(root)
        (root.parent / f".{root.name}.lock").unlink(missing_ok=True)

    # --------------------------------------------------------------------- nodes

    def check_node_request(self, spec: ServerSpec, action: NodeAction, node_name: str,
                           attributes: dict[str, str]) -> dict[str, str]:
        """The shared node attribute rules, and no node named like a server actor."""
        self._check_family(spec)
        checked = check_node_attributes(spec.family, spec.engine, action, node_name,
                                        attributes)
        if node_name in RESERVED_NAMES:
            raise InvalidEngineAttribute(
                f"NodeName {node_name!r} is reserved on this Chef server (it names one of its "
                f"own actors: {', '.join(sorted(RESERVED_NAMES))})")
        return checked

    def associate_node(self, spec: ServerSpec, material: EngineMaterial, node_name: str,
                       attributes: dict[str, str]) -> list[tuple[str, str]]:
        """Create (or re-key) the node's client with its public key, and the node; returns
        once goiardi has saved them."""
        checked = self.check_node_request(spec, "associate", node_name, attributes)
        key = checked[CHEF_NODE_PUBLIC_KEY]
        root = self.server_dir(spec)
        api = self._api(root, material)
        status, client = api.call("GET", f"/clients/{node_name}")
        body = {"name": node_name, "admin": False, "public_key": key}
        changed = True
        if status == 404:
            api.expect("POST", "/clients", body)
        elif status == 200 and isinstance(client, dict):
            changed = _normal_key(client.get("public_key")) != key or bool(client.get("admin"))
            if changed:
                api.expect("PUT", f"/clients/{node_name}", body)
        else:
            raise EngineError(f"goiardi answered GET /clients/{node_name} with {status}")
        node = {"name": node_name, "json_class": "Chef::Node", "chef_type": "node",
                "chef_environment": "_default", "run_list": []}
        status, _ = api.expect("POST", "/nodes", node, ok=(201, 409))
        if changed or status == 201:
            self._wait_saved(spec, root)
        return []

    def disassociate_node(self, spec: ServerSpec, material: EngineMaterial, node_name: str,
                          attributes: dict[str, str]) -> None:
        """Delete the node's client (its key stops working at once) and the node; returns
        once goiardi has saved that."""
        self.check_node_request(spec, "disassociate", node_name, attributes)
        root = self.server_dir(spec)
        api = self._api(root, material)
        deleted = [api.expect("DELETE", path, ok=(200, 404))[0] == 200
                   for path in (f"/clients/{node_name}", f"/nodes/{node_name}")]
        if any(deleted):
            self._wait_saved(spec, root)

    def node_names(self, spec: ServerSpec) -> list[str]:
        """The nodes goiardi knows, sorted; [] when the server has no state."""
        root = self.server_dir(spec)
        if not root.is_dir():
            return []
        _, nodes = self._api_from_disk(root).expect("GET", "/nodes", ok=(200,))
        return sorted(nodes) if isinstance(nodes, dict) else []

    def accepts_client(self, spec: ServerSpec, node_name: str, data: bytes,
                       signature: bytes) -> bool:
        """True when `signature` of `data` is by the key goiardi holds for the node's client."""
        root = self.server_dir(spec)
        if spec.family != "Chef" or node_name_problem(node_name) or not root.is_dir():
            return False
        status, client = self._api_from_disk(root).call("GET", f"/clients/{node_name}")
        if status != 200 or not isinstance(client, dict):
            return False
        key = client.get("public_key")
        return isinstance(key, str) and pki.verify_signature(key, data, signature)

    def is_revoked(self, spec: ServerSpec, cert_pem: str) -> bool:
        """Chef servers revoke no certificates (ValueError if `cert_pem` is not one)."""
        pki.certificate_serial(cert_pem)
        return False

    # ----------------------------------------------------------- backup, restore

    def _run_tool(self, args: list[str], cwd: Path) -> None:
        try:
            done = subprocess.run([goiardi_binary(), *args], cwd=cwd, env=_clean_env(),
                                  capture_output=True, timeout=TOOL_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise EngineError(f"goiardi {args[-2]} took longer than {TOOL_TIMEOUT:.0f} s"
                              ) from None
        if done.returncode != 0:
            lines = (done.stdout + done.stderr).decode(errors="replace").strip().splitlines()
            raise EngineError(f"goiardi {args[-2]} failed: {lines[-1][-300:] if lines else ''}")

    def _export(self, root: Path) -> bytes:
        """goiardi's export of the (stopped) server's data, run on a copy of its files."""
        with tempfile.TemporaryDirectory(dir=root.parent, prefix=f".{root.name}.export-") as tmp:
            work = Path(tmp)
            for relative in (DATA_FILE, INDEX_FILE):
                if not (root / relative).is_file():
                    raise EngineError(f"goiardi has not written {relative}; nothing to back up")
                shutil.copyfile(root / relative, work / Path(relative).name)
            self._run_tool(["--data-file", str(work / "goiardi-data.bin"),
                            "--index-file", str(work / "goiardi-index.bin"),
                            "--conf-root", str(work), "--export", str(work / EXPORT_FILE)],
                           work)
            return (work / EXPORT_FILE).read_bytes()

    def _import(self, parent: Path, export: bytes) -> tuple[bytes, bytes]:
        """goiardi's data and index files made by importing `export` into an empty state."""
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=parent, prefix=".goiardi-import-") as tmp:
            work = Path(tmp)
            (work / EXPORT_FILE).write_bytes(export)
            self._run_tool(["--data-file", str(work / "goiardi-data.bin"),
                            "--index-file", str(work / "goiardi-index.bin"),
                            "--conf-root", str(work), "--import", str(work / EXPORT_FILE)],
                           work)
            try:
                return ((work / "goiardi-data.bin").read_bytes(),
                        (work / "goiardi-index.bin").read_bytes())
            except OSError:
                raise EngineError("goiardi's import wrote no data file") from None

    def backup(self, spec: ServerSpec, material: EngineMaterial) -> bytes:
        """goiardi's export and the material as one artifact; goiardi stops for the export
        (a clean stop flushes its data file) and is started again."""
        self._check_family(spec)
        root = self.server_dir(spec)
        with locked(root):
            if not (root / ENGINE_FILE).exists():
                raise EngineError("The engine's state directory is gone; nothing to back up.")
            self._stop(spec, root)
            try:
                export = self._export(root)
            finally:
                self._ensure_running(spec, root, material)
        meta = {"driver": self.name, "family": spec.family, "engine": spec.engine,
                "engine_version": spec.engine_version, "server_name": spec.name,
                "server_id": spec.server_id}
        return archive.pack(meta, material, {EXPORT_FILE: export})

    def restore(self, spec: ServerSpec, artifact: bytes) -> EngineMaterial:
        """Import the artifact's export into a fresh state, swap it in, start goiardi on it.
        A backup of an embedded Chef server is taken too: its nodes are associated anew."""
        self._check_family(spec)
        backup = archive.unpack(artifact)
        if backup.manifest.get("family") != spec.family:
            raise EngineError(f"The backup is of a {str(backup.manifest.get('family'))[:32]} "
                              f"server; {spec.name} is a {spec.family} server.")
        material = copy_material(backup.material)
        material.secrets.setdefault(CMHOST_KEY, pki.private_key_pem(pki.generate_rsa_key()))
        if not material.public.get("pivotal_public_key"):
            raise EngineError("The backup artifact is unusable: it has no pivotal key.")
        material = self._with_engine_names(spec, material)
        source = backup.manifest.get("driver")
        root = self.server_dir(spec)
        files: dict[str, bytes] = {}
        nodes: dict[str, str] = {}
        if source == self.name:
            export = backup.files.get(EXPORT_FILE)
            if export is None:
                raise EngineError("The backup artifact is unusable: it has no goiardi export.")
            files[DATA_FILE], files[INDEX_FILE] = self._import(root.parent, export)
        elif source == "embedded":
            nodes = _embedded_nodes(backup.files)
        else:
            raise EngineError(f"The backup artifact is unusable: it was made by the "
                              f"{str(source)[:32]} driver.")
        with locked(root):
            port = self._reserve_port(root, self._endpoint_port(spec))
            self._stop(spec, root)
            files[PORT_FILE] = f"{port}\n".encode()
            files[ENGINE_FILE] = _dump({**self._engine(root), "driver": self.name}).encode()
            replace_dir(root, files, dirs=(CONF_DIR, DATA_DIR))
            for relative in (DATA_FILE, INDEX_FILE):  # as goiardi writes them
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(root / relative, 0o600)
            self._ensure_running(spec, root, material)
            self._sync_actors(spec, root, material)
            self._write_engine(spec, root)
        for name, key in sorted(nodes.items()):
            self.associate_node(spec, material, name, {CHEF_NODE_PUBLIC_KEY: key})
        return material

    def take_restore_revocations(self, server_id: str) -> list[Issued]:
        """Nothing: a Chef server issues no certificates (a client created after the backup
        is gone with the restored state)."""
        return []

    # ------------------------------------------------------------- maintenance

    def maintain(self, spec: ServerSpec, material: EngineMaterial, *,
                 major_upgrade: bool) -> Maintained:
        """Renew a server certificate close to expiry, restart goiardi if it changed, and
        make its actors match the material; nodes and keys stay. A major upgrade takes a
        Chef 12 server to 2 (goiardi serves both)."""
        self._check_family(spec)
        if major_upgrade and not spec.engine_version.startswith("12"):
            raise InvalidEngineAttribute("CHEF_MAJOR_UPGRADE applies only to Chef 12 servers")
        root = self.server_dir(spec)
        renewed = self._with_engine_names(spec, material)
        version = CHEF_UPGRADE_VERSION if major_upgrade else None
        with locked(root):
            if not (root / ENGINE_FILE).exists():
                raise EngineError("The engine's state directory is gone; restore the server "
                                  "from a backup.")
            self._ensure_running(spec, root, renewed)
            self._sync_actors(spec, root, renewed)
            self._write_engine(spec, root, version)
        return Maintained(material=renewed, engine_version=version)

    # --------------------------------------------------------- engine attributes

    def update_attribute(self, spec: ServerSpec, material: EngineMaterial, name: str,
                         value: str | None) -> Prepared:
        """A new pivotal key, as a new material (a generated one is returned once, with a
        starter kit). goiardi takes it when the MODIFYING job provisions the server."""
        self._check_family(spec)
        return _with_root_urls(spec, update_credential(spec, material, name, value))

    def userdata(self, spec: ServerSpec, material: EngineMaterial,
                 inputs: dict[str, str]) -> str:
        """The node bootstrap script, with chef_server_url at goiardi's root."""
        self._check_family(spec)
        script = render_userdata_for_inputs(spec, ca_cert_pem=material.public["ca_cert"],
                                            inputs=inputs)
        return root_url_userdata(script)

    def _check_family(self, spec: ServerSpec) -> None:
        if spec.family != "Chef":
            raise EngineError(f"the goiardi driver runs Chef servers, not {spec.family} ones")


def _embedded_nodes(files: dict[str, bytes]) -> dict[str, str]:
    """Node name -> public key from an embedded Chef backup's nodes/<name>.json records."""
    nodes: dict[str, str] = {}
    for relative, data in files.items():
        if not (relative.startswith("nodes/") and relative.endswith(".json")):
            continue
        try:
            record = json.loads(data)
        except ValueError:
            raise EngineError(f"The backup artifact is unusable: {relative} is damaged.") from None
        key = record.get("public_key") if isinstance(record, dict) else None
        name = relative[len("nodes/"):-len(".json")]
        if isinstance(key, str) and not node_name_problem(name) and name not in RESERVED_NAMES:
            nodes[name] = key
    return nodes

