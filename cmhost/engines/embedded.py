"""The embedded driver: a Chef or Puppet server kept inside cmhost (real CA, keys, registry).

A server's state directory (data_dir/engines/<server_id>) holds public material only:
engine.json, ca.pem, server.pem, the node registry (nodes/) and, for Puppet, revoked.json
and crl.pem. Private keys live in the EngineMaterial the caller keeps encrypted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import string
import time
from pathlib import Path

from cmhost.engines import archive, embedded_nodes, pki
from cmhost.engines.base import (
    DriverContext,
    EngineError,
    EngineFamily,
    EngineMaterial,
    Health,
    InvalidEngineAttribute,
    Maintained,
    NodeAction,
    Prepared,
    ServerSpec,
)
from cmhost.engines.embedded_identity import (
    current_server_cert,
    prepare_identity,
    update_credential,
)
from cmhost.engines.issuance import Issued, open_ledger
from cmhost.engines.node_attributes import (
    CHEF_NODE_PUBLIC_KEY,
    CHEF_ORGANIZATION,
    PUPPET_NODE_CSR,
    check_node_attributes,
)
from cmhost.engines.statedir import locked, read_files, remove_leftovers, replace_dir, write_atomic
from cmhost.engines.userdata import render_userdata_for_inputs

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_REQUIRED_PUBLIC = ("ca_cert", "server_cert")
# The engine version a Chef 12 (Automate 1) server is upgraded to by CHEF_MAJOR_UPGRADE.
CHEF_UPGRADE_VERSION = "2"


def _dump(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


VERIFIED_SECONDS = 3600.0
_STAMPED = ("", "engine.json", "ca.pem", "server.pem", "crl.pem", "revoked.json", "nodes")


def _state_stamp(root: Path) -> tuple[tuple[int, int, int] | None, ...]:
    """(inode, size, mtime) of the state directory, its files and its node registry."""
    stamps: list[tuple[int, int, int] | None] = []
    for name in _STAMPED:
        try:
            st = os.stat(root / name) if name else os.stat(root)
        except FileNotFoundError:
            stamps.append(None)
        else:
            stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(stamps)


class EmbeddedDriver:
    """Servers of one engine family that live in cmhost's data directory."""

    name: str = "embedded"

    def __init__(self, ctx: DriverContext, family: EngineFamily) -> None:
        self._ctx = ctx
        # server id -> (state stamp, monotonic time until which a healthy check stands)
        self._verified: dict[str, tuple[object, float]] = {}
        self._family: EngineFamily = family
        # server id -> what its last restore revoked, until the restore job takes it
        self._restore_revoked: dict[str, list[Issued]] = {}

    # ------------------------------------------------------------------ identity

    def prepare(self, spec: ServerSpec, attributes: dict[str, str]) -> Prepared:
        """Make the server's CA, server certificate and credentials; build the starter kit."""
        self._check_family(spec)
        return prepare_identity(spec, attributes)

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
        """Write engine.json, ca.pem, server.pem, nodes/ and, for Puppet, crl.pem (public
        material only; the CA key signs the CRL but is never written)."""
        self._check_family(spec)
        missing = [k for k in _REQUIRED_PUBLIC if not material.public.get(k)]
        if missing:
            raise EngineError(f"the server's engine material lacks {', '.join(missing)}")
        root = self.server_dir(spec)
        with locked(root):
            self._write_engine(root, spec, material, spec.engine_version)

    def _write_engine(
        self, root: Path, spec: ServerSpec, material: EngineMaterial, version: str
    ) -> None:
        (root / embedded_nodes.NODES_DIR).mkdir(parents=True, exist_ok=True)
        engine = {
            "driver": self.name,
            "family": spec.family,
            "engine": spec.engine,
            "version": version,
            "endpoint": spec.endpoint,
            "name": spec.name,
        }
        write_atomic(root / "engine.json", _dump(engine))
        write_atomic(root / "ca.pem", material.public["ca_cert"])
        write_atomic(root / "server.pem", material.public["server_cert"])
        if spec.family == "Puppet" and not (root / embedded_nodes.CRL_FILE).exists():
            embedded_nodes.write_crl(root, material)

    def check_health(self, spec: ServerSpec, material: EngineMaterial) -> Health:
        """HEALTHY when the state is complete and consistent; CONNECTION_LOST when it is gone.

        A full check reads and verifies every file. A server found healthy is only checked
        again in full when a file or directory of its state changed (every change renames or
        rewrites one), or after VERIFIED_SECONDS (certificates expire): the health monitor
        looks at every server each interval, and most have not changed.
        """
        root = self.server_dir(spec)
        if not root.is_dir():
            return Health("CONNECTION_LOST", "The engine's state directory is gone.")
        stamp = (_state_stamp(root), material.public.get("ca_cert"))
        known = self._verified.get(spec.server_id)
        if known is not None and known[0] == stamp and time.monotonic() < known[1]:
            return Health("HEALTHY")
        problem = self._find_problem(root, spec, material)
        if problem:
            self._verified.pop(spec.server_id, None)
            return Health("UNHEALTHY", problem)
        self._verified[spec.server_id] = (stamp, time.monotonic() + VERIFIED_SECONDS)
        return Health("HEALTHY")

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
        if ca_cert != material.public.get("ca_cert"):
            return "The engine's CA certificate is not the server's CA."
        if not pki.verify_chain(server_cert, ca_cert):
            return "The engine's server certificate does not chain to its CA or has expired."
        return embedded_nodes.registry_problem(root, ca_cert)

    def allocate_endpoint(self, server_id: str, server_name: str, region: str) -> str:
        """`<name lower>-<16 lower alphanumerics>.<region>.opsworks-cm.io`, as AWS named them."""
        alphabet = string.ascii_lowercase + string.digits
        suffix = "".join(secrets.choice(alphabet) for _ in range(16))
        return f"{server_name.lower()}-{suffix}.{region}.opsworks-cm.io"

    def resume(self, spec: ServerSpec, material: EngineMaterial) -> None:
        """Nothing runs outside cmhost: the state on disk is the engine."""

    def close(self) -> None:
        """Nothing to stop."""

    def destroy(self, spec: ServerSpec) -> None:
        """Remove the server's state directory (fine if it is already gone)."""
        root = self.server_dir(spec)
        with locked(root):
            remove_leftovers(root)
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(root)
        (root.parent / f".{root.name}.lock").unlink(missing_ok=True)

    # --------------------------------------------------------------------- nodes

    def check_node_request(
        self, spec: ServerSpec, action: NodeAction, node_name: str, attributes: dict[str, str]
    ) -> dict[str, str]:
        """The node attributes with canonical names and values (see node_attributes)."""
        self._check_family(spec)
        return check_node_attributes(spec.family, spec.engine, action, node_name, attributes)

    def associate_node(
        self, spec: ServerSpec, material: EngineMaterial, node_name: str, attributes: dict[str, str]
    ) -> list[tuple[str, str]]:
        """Chef: register the node's public key. Puppet: sign its CSR; returns PUPPET_NODE_CERT.

        Associating a known node again replaces its key or certificate (the old certificate
        is revoked); with the same key it changes nothing.
        """
        checked = self.check_node_request(spec, "associate", node_name, attributes)
        root = self.server_dir(spec)
        with locked(root):
            if spec.family == "Chef":
                embedded_nodes.associate_chef(
                    root, node_name, checked[CHEF_ORGANIZATION], checked[CHEF_NODE_PUBLIC_KEY]
                )
                return []
            return embedded_nodes.associate_puppet(
                root, material, node_name, checked[PUPPET_NODE_CSR], self._ctx.data_dir
            )

    def disassociate_node(
        self, spec: ServerSpec, material: EngineMaterial, node_name: str, attributes: dict[str, str]
    ) -> None:
        """Forget the node (fine if unknown): its key stops working, its certificate is revoked
        and crl.pem re-signed."""
        self.check_node_request(spec, "disassociate", node_name, attributes)
        root = self.server_dir(spec)
        with locked(root):
            embedded_nodes.disassociate(root, material, node_name)

    def node_names(self, spec: ServerSpec) -> list[str]:
        """The associated nodes, sorted."""
        return embedded_nodes.node_names(self.server_dir(spec))

    def accepts_client(
        self, spec: ServerSpec, node_name: str, data: bytes, signature: bytes
    ) -> bool:
        """Chef: True when `signature` of `data` is by the node's registered key."""
        if spec.family != "Chef":
            return False
        return embedded_nodes.accepts_client(self.server_dir(spec), node_name, data, signature)

    def is_revoked(self, spec: ServerSpec, cert_pem: str) -> bool:
        """Puppet: True when the server's crl.pem lists the certificate."""
        return embedded_nodes.is_revoked(self.server_dir(spec), cert_pem)

    # ----------------------------------------------------------- backup, restore

    def backup(self, spec: ServerSpec, material: EngineMaterial) -> bytes:
        """A deterministic tar.gz of the material (secrets included) and every state file.

        The artifact holds the CA key and the server key: the caller must encrypt it before
        it is stored anywhere (see archive).
        """
        self._check_family(spec)
        root = self.server_dir(spec)
        with locked(root):
            if not root.is_dir():
                raise EngineError(
                    "The engine's state directory is gone; there is nothing to back up."
                )
            files = read_files(root)
        if files.get("ca.pem", b"").decode("ascii", "replace") != material.public.get("ca_cert"):
            raise EngineError("The engine's CA certificate is not the server's CA; not backed up.")
        meta = {
            "driver": self.name,
            "family": spec.family,
            "engine": spec.engine,
            "engine_version": spec.engine_version,
            "server_name": spec.name,
            "server_id": spec.server_id,
        }
        return archive.pack(meta, material, files)

    def restore(self, spec: ServerSpec, artifact: bytes) -> EngineMaterial:
        """Verify the artifact completely, then swap the state directory for its files."""
        self._check_family(spec)
        backup = archive.unpack(artifact)
        family = backup.manifest.get("family")
        if family != spec.family:
            raise EngineError(
                f"The backup is of a {str(family)[:32]} server; {spec.name} is a {spec.family} "
                "server."
            )
        files = dict(backup.files)
        try:
            engine = json.loads(files["engine.json"])
            ca_pem = files["ca.pem"].decode("ascii")
        except (KeyError, ValueError):
            raise EngineError(
                "The backup artifact is unusable: it lacks the engine files."
            ) from None
        if not isinstance(engine, dict) or engine.get("family") != spec.family:
            raise EngineError("The backup artifact is unusable: engine.json does not match.")
        if ca_pem != backup.material.public["ca_cert"]:
            raise EngineError("The backup artifact is unusable: ca.pem is not its CA.")
        material = current_server_cert(spec, backup.material)
        engine.update(driver=self.name, name=spec.name, endpoint=spec.endpoint)
        files["engine.json"] = _dump(engine).encode()
        files["server.pem"] = material.public["server_cert"].encode()
        root = self.server_dir(spec)
        revoked: list[Issued] = []
        with locked(root):
            if spec.family == "Puppet":
                revoked = self._revoke_later_issues(root, files, material)
            replace_dir(root, files, dirs=(embedded_nodes.NODES_DIR,))
        self._restore_revoked[spec.server_id] = revoked
        return material

    def _revoke_later_issues(self, root: Path, files: dict[str, bytes],
                             material: EngineMaterial) -> list[Issued]:
        """Add to the restored CRL (in `files`) every certificate the backup's CA issued
        that the backup does not know of: the CRL after a restore is the backup's plus those.
        The state being replaced is noted in its CA's issuance record first (certificates
        issued before the record existed)."""
        with contextlib.suppress(FileNotFoundError, UnicodeDecodeError, EngineError):
            current_ca = (root / "ca.pem").read_text(encoding="ascii")
            current = embedded_nodes.issued_serials(read_files(root))
            with open_ledger(self._ctx.data_dir, current_ca) as ledger:
                for serial, node in current.items():
                    ledger.record(serial, node)
        known = embedded_nodes.issued_serials(files)
        with open_ledger(self._ctx.data_dir, material.public["ca_cert"]) as ledger:
            later = ledger.issued_except(known)
        if later:
            embedded_nodes.revoke_in_files(files, material, later)
        return later

    def take_restore_revocations(self, server_id: str) -> list[Issued]:
        """What the server's last restore revoked (see EngineDriver.take_restore_revocations)."""
        return self._restore_revoked.pop(server_id, [])

    # --------------------------------------------------------------- maintenance

    def maintain(
        self, spec: ServerSpec, material: EngineMaterial, *, major_upgrade: bool
    ) -> Maintained:
        """Restart the engine from its material: rewrite its files, renew a server certificate
        that expires within 30 days and re-sign the CRL. A major upgrade takes Chef 12 to 2."""
        self._check_family(spec)
        if major_upgrade and not (spec.family == "Chef" and spec.engine_version.startswith("12")):
            raise InvalidEngineAttribute("CHEF_MAJOR_UPGRADE applies only to Chef 12 servers")
        root = self.server_dir(spec)
        with locked(root):
            if not root.is_dir():
                raise EngineError(
                    "The engine's state directory is gone; restore the server from a backup."
                )
            renewed = current_server_cert(spec, material)
            version = CHEF_UPGRADE_VERSION if major_upgrade else None
            self._write_engine(root, spec, renewed, version or spec.engine_version)
            if spec.family == "Puppet":
                embedded_nodes.write_crl(root, renewed)
        return Maintained(material=renewed, engine_version=version)

    # --------------------------------------------------------- engine attributes

    def update_attribute(
        self, spec: ServerSpec, material: EngineMaterial, name: str, value: str | None
    ) -> Prepared:
        """A new pivotal key (Chef) or admin password (Puppet), as a new material; a generated
        one is returned once (with a new Chef starter kit). `material` is not changed."""
        self._check_family(spec)
        return update_credential(spec, material, name, value)

    def userdata(self, spec: ServerSpec, material: EngineMaterial, inputs: dict[str, str]) -> str:
        """The node bootstrap script for ExportServerEngineAttribute Userdata (not base64)."""
        self._check_family(spec)
        if not material.public.get("ca_cert"):
            raise EngineError("the server's engine material lacks ca_cert")
        return render_userdata_for_inputs(
            spec, ca_cert_pem=material.public["ca_cert"], inputs=inputs
        )

    def _check_family(self, spec: ServerSpec) -> None:
        if spec.family != self._family:
            raise EngineError(
                f"the embedded {self._family} driver cannot run a {spec.family} server"
            )
