"""The embedded driver: a Chef or Puppet server kept inside cmhost (real CA, keys, registry)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from cmhost.engines import pki
from cmhost.engines.attributes import (
    CHEF_DELIVERY_ADMIN_PASSWORD,
    CHEF_PIVOTAL_KEY,
    PUPPET_ADMIN_PASSWORD,
    PUPPET_R10K_PRIVATE_KEY,
    PUPPET_R10K_REMOTE,
    generate_chef_password,
    generate_puppet_password,
)
from cmhost.engines.base import (
    DriverContext,
    EngineError,
    EngineFamily,
    EngineMaterial,
    Health,
    Prepared,
    ServerSpec,
)
from cmhost.engines.starter_kits import chef_starter_kit, puppet_starter_kit
from cmhost.engines.userdata import render_userdata

# The common name of the client certificate a Puppet starter kit carries.
PUPPET_KIT_CLIENT = "admin"

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_REQUIRED_PUBLIC = ("ca_cert", "server_cert")


def _endpoint_host(endpoint: str) -> str:
    if endpoint.startswith("["):
        return endpoint[1:].split("]", 1)[0]
    return endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so a reader sees the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class EmbeddedDriver:
    """Servers of one engine family that live in cmhost's data directory."""

    name: str = "embedded"

    def __init__(self, ctx: DriverContext, family: EngineFamily) -> None:
        self._ctx = ctx
        self._family: EngineFamily = family

    # ------------------------------------------------------------------ identity

    def prepare(self, spec: ServerSpec, attributes: dict[str, str]) -> Prepared:
        """Make the server's CA, server certificate and credentials; build the starter kit."""
        self._check_family(spec)
        ca_cert, ca_key = pki.generate_ca(f"{spec.name} CA")
        host = _endpoint_host(spec.endpoint)
        names = [host] + ([spec.custom_domain] if spec.custom_domain else [])
        server_cert, server_key = pki.issue_certificate(ca_cert, ca_key, host, names)
        material = EngineMaterial(
            public={"ca_cert": ca_cert, "server_cert": server_cert},
            secrets={"ca_key": ca_key, "server_key": server_key},
        )
        if spec.family == "Chef":
            one_time = self._prepare_chef(spec, attributes, material)
        else:
            one_time = self._prepare_puppet(spec, attributes, material)
        return Prepared(material=material, one_time_attributes=one_time)

    def _prepare_chef(
        self, spec: ServerSpec, attributes: dict[str, str], material: EngineMaterial
    ) -> list[tuple[str, str]]:
        automate = spec.engine == "ChefAutomate"
        one_time: list[tuple[str, str]] = []
        given_key = attributes.get(CHEF_PIVOTAL_KEY)
        private_pem: str | None = None
        if given_key:
            material.public["pivotal_public_key"] = pki.public_key_pem(
                pki.load_public_key(given_key)
            )
        else:
            key = pki.generate_rsa_key()
            material.public["pivotal_public_key"] = pki.public_key_pem(key)
            private_pem = pki.private_key_pem(key)
            name = "CHEF_AUTOMATE_PIVOTAL_KEY" if automate else CHEF_PIVOTAL_KEY
            one_time.append((name, private_pem))
        password = attributes.get(CHEF_DELIVERY_ADMIN_PASSWORD)
        if not password:
            password = generate_chef_password()
            name = "CHEF_AUTOMATE_ADMIN_PASSWORD" if automate else CHEF_DELIVERY_ADMIN_PASSWORD
            one_time.append((name, password))
        material.public["admin_password_hash"] = pki.hash_password(password)
        ca_cert = material.public["ca_cert"]
        kit = chef_starter_kit(
            spec,
            ca_cert_pem=ca_cert,
            pivotal_private_key_pem=private_pem,
            userdata=render_userdata(spec, ca_cert_pem=ca_cert),
        )
        one_time.append(("CHEF_STARTER_KIT", _b64(kit)))
        return one_time

    def _prepare_puppet(
        self, spec: ServerSpec, attributes: dict[str, str], material: EngineMaterial
    ) -> list[tuple[str, str]]:
        password = attributes.get(PUPPET_ADMIN_PASSWORD) or generate_puppet_password()
        material.public["admin_password_hash"] = pki.hash_password(password)
        if attributes.get(PUPPET_R10K_REMOTE):
            material.public["r10k_remote"] = attributes[PUPPET_R10K_REMOTE]
        if attributes.get(PUPPET_R10K_PRIVATE_KEY):
            material.secrets["r10k_private_key"] = attributes[PUPPET_R10K_PRIVATE_KEY]
        ca_cert = material.public["ca_cert"]
        # The kit's client key is handed out once and kept nowhere.
        client_cert, client_key = pki.issue_certificate(
            ca_cert, material.secrets["ca_key"], PUPPET_KIT_CLIENT, [], server=False
        )
        kit = puppet_starter_kit(
            spec,
            ca_cert_pem=ca_cert,
            client_cert_pem=client_cert,
            client_key_pem=client_key,
            userdata=render_userdata(spec, ca_cert_pem=ca_cert),
        )
        return [(PUPPET_ADMIN_PASSWORD, password), ("PUPPET_STARTER_KIT", _b64(kit))]

    def public_attributes(
        self, spec: ServerSpec, material: EngineMaterial
    ) -> list[tuple[str, str]]:
        """PUPPET_API_CA_CERT for Puppet; nothing for Chef."""
        if spec.family == "Puppet":
            return [("PUPPET_API_CA_CERT", material.public["ca_cert"])]
        return []

    # ----------------------------------------------------------------- lifecycle

    def server_dir(self, spec: ServerSpec) -> Path:
        """Where the server's state lives: data_dir/engines/<server_id>."""
        if not _SAFE_ID.fullmatch(spec.server_id) or ".." in spec.server_id:
            raise EngineError(f"server id {spec.server_id[:64]!r} is not a safe directory name")
        return self._ctx.data_dir / "engines" / spec.server_id

    def provision(self, spec: ServerSpec, material: EngineMaterial) -> None:
        """Write engine.json, ca.pem, server.pem and nodes/ (public material only)."""
        self._check_family(spec)
        missing = [k for k in _REQUIRED_PUBLIC if not material.public.get(k)]
        if missing:
            raise EngineError(f"the server's engine material lacks {', '.join(missing)}")
        root = self.server_dir(spec)
        (root / "nodes").mkdir(parents=True, exist_ok=True)
        engine = {
            "driver": self.name,
            "family": spec.family,
            "engine": spec.engine,
            "version": spec.engine_version,
            "endpoint": spec.endpoint,
            "name": spec.name,
        }
        _write_atomic(root / "engine.json", json.dumps(engine, indent=2, sort_keys=True) + "\n")
        _write_atomic(root / "ca.pem", material.public["ca_cert"])
        _write_atomic(root / "server.pem", material.public["server_cert"])

    def check_health(self, spec: ServerSpec, material: EngineMaterial) -> Health:
        """HEALTHY when the state is complete and consistent; CONNECTION_LOST when it is gone."""
        root = self.server_dir(spec)
        if not root.is_dir():
            return Health("CONNECTION_LOST", "The engine's state directory is gone.")
        problem = self._find_problem(root, spec, material)
        return Health("UNHEALTHY", problem) if problem else Health("HEALTHY")

    def _find_problem(self, root: Path, spec: ServerSpec, material: EngineMaterial) -> str:
        try:
            engine = json.loads((root / "engine.json").read_text(encoding="utf-8"))
            ca_cert = (root / "ca.pem").read_text(encoding="utf-8")
            server_cert = (root / "server.pem").read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            return f"The engine file {Path(str(exc.filename)).name} is missing."
        except (OSError, ValueError) as exc:
            return f"The engine state cannot be read: {exc.__class__.__name__}."
        if not isinstance(engine, dict) or engine.get("family") != spec.family:
            return "The engine description (engine.json) does not match the server."
        if not (root / "nodes").is_dir():
            return "The node registry is missing."
        if ca_cert != material.public.get("ca_cert"):
            return "The engine's CA certificate is not the server's CA."
        if not pki.verify_chain(server_cert, ca_cert):
            return "The engine's server certificate does not chain to its CA or has expired."
        return ""

    def destroy(self, spec: ServerSpec) -> None:
        """Remove the server's state directory (fine if it is already gone)."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.server_dir(spec))

    def _check_family(self, spec: ServerSpec) -> None:
        if spec.family != self._family:
            raise EngineError(
                f"the embedded {self._family} driver cannot run a {spec.family} server"
            )
