"""The puppetserver driver's side of a server's Code Manager: its port (beside the engine's),
its supervised process (key `<server id>/code-manager`), the deployments cmhost asks of it,
the events it reports and whether it answers."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

import cmhost
from cmhost.engines.base import DriverContext, EngineError, EngineEvent, EngineMaterial
from cmhost.engines.code_manager.files import PART, ManagerFiles, request_deploy, take_events
from cmhost.engines.code_manager.token import TOKEN_DIGEST
from cmhost.engines.supervisor import (
    ProcessSpec,
    Supervisor,
    SupervisorError,
    recorded_port,
    reserve_port,
)
from cmhost.messages import caller_message

STATUS_PATH = "/code-manager/v1/deploys/status"
HEALTH_TIMEOUT = 5.0


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Identity:
    """The files of the server's certificate and key, which the Code Manager serves with."""

    cert_file: Path
    key_file: Path


class CodeManagerSide:
    """What the driver does about the Code Manager of its servers (see the module docstring)."""

    def __init__(self, ctx: DriverContext, supervisor: Supervisor) -> None:
        self._ctx = ctx
        self.supervisor = supervisor

    @staticmethod
    def enabled(material: EngineMaterial) -> bool:
        """Whether the server has a Code Manager: it was created with an r10k remote."""
        return bool(material.public.get("r10k_remote") and material.public.get(TOKEN_DIGEST))

    @staticmethod
    def key(server_id: str) -> str:
        return f"{server_id}/{PART}"

    def port(self, root: Path) -> int:
        """The Code Manager's port: the one recorded, else a newly reserved one."""
        try:
            return reserve_port(root, self._ctx.engine_host, self._ctx.port_min,
                                self._ctx.port_max, part=PART)
        except SupervisorError as exc:
            raise EngineError(f"No port for the Code Manager: {exc}") from None

    def url(self, root: Path) -> str:
        """The service URL of the server's Code Manager (as puppet-code.conf names it)."""
        return f"https://{_join(self._ctx.engine_host, self.port(root))}/code-manager"

    def process(self, server_id: str, root: Path, identity: Identity,
                material: EngineMaterial | None) -> ProcessSpec:
        """How the Code Manager runs; its secrets (from `material`) go through stdin."""
        files = ManagerFiles(root)
        port = recorded_port(root, PART) if material is None else self.port(root)
        argv = [sys.executable, "-m", "cmhost.engines.code_manager", "--dir", str(files.dir),
                "--host", self._ctx.engine_host, "--port", str(port or 0),
                "--cert", str(identity.cert_file), "--key", str(identity.key_file)]
        stdin = None
        if material is not None:
            settings = {"remote": material.public["r10k_remote"],
                        "token_sha256": material.public[TOKEN_DIGEST]}
            if material.secrets.get("r10k_private_key"):
                settings["private_key"] = material.secrets["r10k_private_key"]
            stdin = json.dumps(settings).encode("utf-8")
        # Its own small environment: nothing of cmhost's (a master key, say) reaches it.
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "HOME": str(files.dir), "PYTHONPATH": str(Path(cmhost.__file__).parent.parent)}
        return ProcessSpec(name=f"code-manager of {server_id}", argv=argv, cwd=root,
                           log_file=files.log_file, pid_file=files.pid_file,
                           marker=str(files.dir), env=env, stop_timeout=10.0,
                           stdin_data=stdin)

    def start(self, server_id: str, root: Path, identity: Identity, material: EngineMaterial,
              *, restart: bool) -> None:
        """Run the Code Manager (re-attach to a running one unless `restart`)."""
        process = self.process(server_id, root, identity, material)
        try:
            if restart:
                self.supervisor.restart(self.key(server_id), process)
            else:
                self.supervisor.ensure(self.key(server_id), process)
        except SupervisorError as exc:
            raise EngineError(f"The Code Manager could not start: {exc}") from None

    def stop(self, server_id: str, root: Path, identity: Identity) -> None:
        self.supervisor.stop(self.key(server_id), self.process(server_id, root, identity, None))

    @staticmethod
    def request_deploy(root: Path, reason: str) -> None:
        request_deploy(root, reason)

    @staticmethod
    def take_events(engines: Path) -> list[EngineEvent]:
        """The deployments' events of every server under `engines`, each handed out once."""
        taken: list[EngineEvent] = []
        for root in sorted(engines.glob(f"*/{PART}/events.jsonl")):
            server = root.parent.parent
            taken += [EngineEvent(server.name, m) for m in take_events(server)]
        return taken

    def problem(self, server_id: str, root: Path, context: ssl.SSLContext) -> str:
        """Why the Code Manager does not serve ("" when it does): it must answer its status
        path over TLS with the server's certificate (401 without a token)."""
        host, port = self._ctx.engine_host, recorded_port(root, PART)
        where = f"Code Manager at {_join(host, port or 0)}"
        if port is None:
            return f"The {where} has no port."
        connection = http.client.HTTPSConnection(host, port, context=context,
                                                 timeout=HEALTH_TIMEOUT)
        try:
            connection.request("GET", STATUS_PATH)
            response = connection.getresponse()
            response.read(4096)
        except ssl.SSLCertVerificationError as exc:
            return f"The {where} answers with another certificate: {exc.verify_message}"
        except (OSError, http.client.HTTPException) as exc:
            reason = ("connection refused" if isinstance(exc, ConnectionRefusedError) else
                      "timed out" if isinstance(exc, socket.timeout | TimeoutError) else
                      caller_message(exc))
            status = self.supervisor.status(self.key(server_id))
            state = "" if status is None else (
                f"; process {status.pid} is running" if status.alive
                else f"; its process stopped ({status.last_exit}) and is being restarted")
            return f"The {where} does not answer ({reason}){state}."
        finally:
            connection.close()
        if response.status != 401:
            return f"The {where} answers HTTP {response.status} on {STATUS_PATH}."
        return ""
