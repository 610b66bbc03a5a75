"""A cmhost for tests: a `cmhost serve` process started on a free port with its own data
directory (or one already running, by URL), and what tests do with it: fresh accounts with
their boto3 clients, the clock, faults."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cmhost.admin_client import AdminClient, AdminError

DEFAULT_REGION = "us-east-1"
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class ServeOptions:
    """How a test cmhost is started (the plugin's ini options)."""

    puppet_driver: str = "embedded"
    chef_driver: str = "embedded"
    provisioning_seconds: float = 5.0
    throttle: bool = False
    extra_args: tuple[str, ...] = ()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_environment() -> dict[str, str]:
    """The environment of a started cmhost: this one without CMHOST_* variables (its settings
    are the plugin's options, not whatever the shell running the tests exports)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CMHOST_")}


@dataclass
class CmhostServer:
    """A cmhost the tests talk to: `start` runs one, `external` names one that runs."""

    url: str
    admin: AdminClient
    provisioning_seconds: float
    region: str = DEFAULT_REGION
    workdir: Path | None = None  # a started one's: data directory, master key, log
    process: subprocess.Popen[bytes] | None = None
    sdk_model_dir: Path | None = None  # set when botocore lacks opsworkscm (see sdk_session)
    _clock: Clock | None = field(default=None, repr=False)

    @classmethod
    def external(cls, url: str, *, admin_token: str | None = None,
                 provisioning_seconds: float = 5.0, region: str = DEFAULT_REGION
                 ) -> CmhostServer:
        server = cls(url=url.rstrip("/"), admin=AdminClient(url, admin_token),
                     provisioning_seconds=provisioning_seconds, region=region)
        server.admin.health()  # fails now, with the URL in the message, if nothing answers
        return server

    @classmethod
    def start(cls, workdir: Path, options: ServeOptions = ServeOptions(), *,
              region: str = DEFAULT_REGION, timeout: float = START_TIMEOUT) -> CmhostServer:
        """`cmhost serve` on a free loopback port, virtual clock, data in `workdir`."""
        workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a free port can be taken by someone else before cmhost binds it
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server = cls(url=url, admin=AdminClient(url, timeout=30.0),
                         provisioning_seconds=options.provisioning_seconds, region=region,
                         workdir=workdir)
            with open(workdir / "cmhost.log", "ab") as log:
                server.process = subprocess.Popen(
                    [sys.executable, "-m", "cmhost", "serve",
                     *server._serve_args(port, options)],
                    stdout=log, stderr=subprocess.STDOUT, env=_child_environment(),
                    cwd=workdir)
            if server._wait_until_serving(timeout):
                return server
            if "already in use" not in server.log():
                break
        raise RuntimeError(f"cmhost did not start (log {workdir / 'cmhost.log'}):\n"
                           f"{server.log()[-4000:]}")

    def _serve_args(self, port: int, options: ServeOptions) -> list[str]:
        assert self.workdir is not None
        data = self.workdir / "data"
        return ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data),
                "--database-url", f"sqlite:///{data / 'cmhost.db'}",
                "--master-key-file", str(self.workdir / "master.key"), "--clock", "virtual",
                "--throttle", "on" if options.throttle else "off",
                "--provisioning-seconds", repr(options.provisioning_seconds),
                "--puppet-driver", options.puppet_driver,
                "--chef-driver", options.chef_driver, "--credential-pool", "1",
                "--log-level", "warning", *options.extra_args]

    def _wait_until_serving(self, timeout: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if self.admin.health().get("status") == "ok":
                    return True
            except AdminError:
                pass
            time.sleep(0.05)
        self.stop()
        return False

    def log(self) -> str:
        path = self.workdir / "cmhost.log" if self.workdir else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self) -> None:
        """Stop a started cmhost (an external one is left alone)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # --- what tests use ---------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        if self._clock is None:
            self._clock = Clock(self.admin)
        return self._clock

    def new_account(self) -> Account:
        """A fresh account (a random 12-digit ID, never the development one) with a key."""
        account = f"{secrets.randbelow(10**12 - 1) + 1:012d}"
        key = self.admin.issue_key(account, "tester")
        return Account(id=account, access_key_id=key["AccessKeyId"],
                       secret_access_key=key["SecretAccessKey"], server=self)


class Clock:
    """cmhost's clock: `now()`, and `advance(seconds)` (a virtual clock only), which runs what
    falls due on the way, each at its own time."""

    def __init__(self, admin: AdminClient) -> None:
        self.admin = admin

    def now(self) -> float:
        return float(self.admin.clock()["now"])

    @property
    def mode(self) -> str:
        return str(self.admin.clock()["mode"])

    def advance(self, seconds: float) -> float:
        """Move the clock `seconds` forward; returns the new time."""
        return float(self.admin.advance(seconds)["now"])


@dataclass
class Account:
    """An account of a test: its ID, its access key, and clients that use them."""

    id: str
    access_key_id: str
    secret_access_key: str
    server: CmhostServer

    def client(self, service: str = "opsworkscm", *, retries: dict[str, Any] | None = None,
               **config: Any) -> Any:
        """A boto3 client of this account for the cmhost; no retries unless `retries` says
        (so an error fault armed once is the error the call raises)."""
        from botocore.config import Config

        from cmhost.testing.sdk import sdk_session

        session = sdk_session(self.server.sdk_model_dir)
        return session.client(
            service, region_name=self.server.region, endpoint_url=self.server.url,
            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key,
            config=Config(retries=retries or {"total_max_attempts": 1}, **config))
