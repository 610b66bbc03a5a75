"""Test support: run cmhost as a real subprocess and talk to it through boto3."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from cmhost.config import is_loopback

ROOT = Path(__file__).resolve().parent.parent

# Set (by .ci/run's second pass) to a PostgreSQL URL whose user may create databases: then
# every cmhost of the tests gets a fresh database there instead of SQLite.
POSTGRES_URL = os.environ.get("CMHOST_TEST_DATABASE_URL")


# PostgreSQL databases this test process created; dropped when the session ends.
_CREATED_DATABASES: list[str] = []


def fresh_database_url(workdir: Path) -> str:
    """A new, empty database for one test's cmhost: SQLite in `workdir`, or PostgreSQL."""
    if not POSTGRES_URL:
        return f"sqlite:///{workdir / 'data' / 'cmhost.db'}"
    import uuid

    name = f"cmhost_test_{uuid.uuid4().hex[:12]}"
    _postgres_admin(f'CREATE DATABASE "{name}"')
    _CREATED_DATABASES.append(name)
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


def drop_created_databases() -> None:
    """Drop every database `fresh_database_url` made (a whole PostgreSQL pass makes over a
    thousand: left behind, they fill the disk and slow the cluster's crash recovery)."""
    if _CREATED_DATABASES:
        _postgres_admin(*(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
                          for name in _CREATED_DATABASES))
        _CREATED_DATABASES.clear()


def _postgres_admin(*statements: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(str(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for sql in statements:
                conn.execute(text(sql))
    finally:
        engine.dispose()


def database_bytes(url: str) -> bytes:
    """Everything a database holds, as bytes to search (the file for SQLite; every row of
    every table for PostgreSQL)."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    from sqlalchemy import MetaData, create_engine, select

    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    out = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                out.append(repr(tuple(row)).encode())
    engine.dispose()
    return b"\n".join(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cmhost:
    """One `cmhost serve` process with its own data directory and master key."""

    def __init__(self, workdir: Path, *, clock: str = "virtual", throttle: bool = False,
                 provisioning_seconds: float = 60.0, deletion_seconds: float = 10.0,
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None,
                 host: str = "127.0.0.1", command: str = "serve",
                 database_url: str | None = None, master_key_file: Path | None = None,
                 admin_token: str | None = None) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.command = command
        self.master_key_file = master_key_file or workdir / "secret" / "master.key"
        self.port = free_port()
        self.host = host
        listen = ["--host", host, "--port", str(self.port)] if command == "serve" else []
        throttling = ["--throttle", "on" if throttle else "off"] if command == "serve" else []
        self.args = [
            *listen, "--data-dir", str(self.data_dir),
            "--master-key-file", str(self.master_key_file), "--clock", clock,
            *throttling,
            "--provisioning-seconds", str(provisioning_seconds),
            "--deletion-seconds", str(deletion_seconds), "--log-level", "warning",
            *(extra_args or []),
        ]
        if command == "serve" and not is_loopback(host):
            # What cmhost requires off loopback: a URL nodes can reach (for an "every
            # address" bind), and an admin token to move a virtual clock; the helpers below
            # send the token.
            if "--public-url" not in self.args and host in ("0.0.0.0", "::"):
                self.args += ["--public-url", f"http://127.0.0.1:{self.port}"]
            if admin_token is None and clock == "virtual":
                admin_token = secrets.token_urlsafe(16)
        self.admin_token = admin_token
        if admin_token is not None:
            self.args += ["--admin-token", admin_token]
        # A small credential pool (one server's worth, the default is 4): every test goes
        # through the pool, without each of the suite's hundreds of processes spending CPU
        # on keys it never uses.
        self.env = {"CMHOST_CREDENTIAL_POOL": "1", **os.environ, **(env or {})}
        self.database_url = database_url or fresh_database_url(workdir)
        self.args += ["--database-url", self.database_url]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "cmhost.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "cmhost", *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env, check=check,
                              timeout=120)

    def storage_args(self) -> list[str]:
        return ["--data-dir", str(self.data_dir), "--master-key-file", str(self.master_key_file),
                "--database-url", self.database_url]

    def launcher(self) -> list[str]:
        """What the cmhost command runs under (nothing: itself)."""
        return []

    def start(self, timeout: float = 30.0) -> Cmhost:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.launcher(), sys.executable, "-m", "cmhost", self.command, *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        if self.command != "serve":
            return self  # a worker serves no HTTP: it works the database
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cmhost exited ({self.proc.returncode}):\n{self.log()}")
            try:
                self.get("/_cmhost/health")
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"cmhost did not start in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, as in a crash."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> Cmhost:
        self.stop()
        return self.start()

    # --- HTTP helpers -------------------------------------------------------------------

    def _admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}

    def get(self, path: str) -> Any:
        req = urllib.request.Request(self.url + path, headers=self._admin_headers())
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def post(self, path: str, payload: Any) -> Any:
        req = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json",
                                              **self._admin_headers()},
                                     method="POST")
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read())

    def advance(self, seconds: float) -> Any:
        return self.post("/_cmhost/clock", {"advance": seconds})

    def client(self, *, region: str = "us-east-1", key: str = "test", secret: str = "test",
               retries: int = 0) -> Any:
        return boto3.client(
            "opsworkscm", endpoint_url=self.url, region_name=region, aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": retries + 1, "mode": "standard"}
                          if retries else {"total_max_attempts": 1}))


SERVER_DEFAULTS: dict[str, Any] = {
    "InstanceProfileArn": "arn:aws:iam::000000000000:instance-profile/aws-opsworks-cm-ec2-role",
    "InstanceType": "m5.large",
    "ServiceRoleArn": "arn:aws:iam::000000000000:role/aws-opsworks-cm-service-role",
}


def create_server(client: Any, name: str, engine: str = "Chef", **kwargs: Any) -> Any:
    params = {**SERVER_DEFAULTS, "ServerName": name, "Engine": engine, **kwargs}
    return client.create_server(**params)["Server"]


def error_code(exc: Exception) -> str:
    return exc.response["Error"]["Code"]  # type: ignore[attr-defined]


def raw_call(cm: Cmhost, target: str | None, body: bytes, *, key: str = "test",
             secret: str = "test", region: str = "us-east-1",
             headers: dict[str, str] | None = None, sign: bool = True,
             method: str = "POST") -> tuple[int, dict[str, str], Any]:
    """Send one request as an SDK would (SigV4-signed), returning status, headers and JSON."""
    import http.client

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    hdrs = {"Content-Type": "application/x-amz-json-1.1", **(headers or {})}
    if target is not None:
        hdrs["X-Amz-Target"] = f"OpsWorksCM_V2016_11_01.{target}"
    request = AWSRequest(method=method, url=cm.url + "/", data=body, headers=hdrs)
    if sign:
        SigV4Auth(Credentials(key, secret), "opsworks-cm", region).add_auth(request)
    conn = http.client.HTTPConnection(cm.host, cm.port, timeout=30)
    try:
        conn.request(method, "/", body=body, headers=dict(request.headers.items()))
        resp = conn.getresponse()
        data = resp.read()
        parsed = json.loads(data) if data else None
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed
    finally:
        conn.close()


@contextmanager
def blocked_backup_store(cmhost: Cmhost, account: str = "000000000000",
                         region: str = "us-east-1") -> Iterator[None]:
    """Within it, a file stands where the account's backups go in the blob directory:
    storing a backup artifact or its log fails (EEXIST / ENOTDIR) every time."""
    region_dir = cmhost.data_dir / "blobs" / "backups" / account / region
    kept = region_dir.with_name(f"{region}.kept")
    if region_dir.exists():
        region_dir.rename(kept)
    region_dir.parent.mkdir(parents=True, exist_ok=True)
    region_dir.write_text("not a directory")
    try:
        yield
    finally:
        region_dir.unlink()
        if kept.exists():
            kept.rename(region_dir)
