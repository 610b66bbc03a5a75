"""Settings of one cmhost process, from command-line flags and CMHOST_* variables."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "cmhost"


def default_master_key_file() -> Path:
    # Outside the data directory on purpose: a copy of the data directory (or of the
    # database) alone does not decrypt anything.
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "cmhost" / "master.key"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 4580
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None
    master_key_file: Path | None = None
    clock: str = "real"  # "real" | "virtual"
    throttle: bool = True
    provisioning_seconds: float = 5.0
    deletion_seconds: float = 2.0
    server_limit: int = 10
    backup_limit: int = 50
    puppet_driver: str = "embedded"
    chef_driver: str = "embedded"
    run_worker: bool = True
    public_url: str | None = None  # how nodes reach this API (user data); default from host/port
    blob_url: str | None = None  # where backup artifacts go; default <data-dir>/blobs
    engine_host: str = "127.0.0.1"  # where real engines (puppetserver, goiardi) listen
    engine_ports: str = "18140-18999"  # the port range real engines take ports from
    java_heap: str = "1g"  # puppetserver heap
    health_interval: float = 30.0  # seconds between engine health checks of settled servers
    events_per_server: int = 10_000  # events retention: each server keeps its newest N
    job_lease_seconds: float = 300.0  # a job step a dead worker held is taken over after this
    credential_pool: int = 4  # servers' worth of keys and passwords workers make ahead; 0: off
    audit_retention_days: float = 90.0  # audit records are kept in the database this long
    log_level: str = "info"
    log_format: str = "text"  # "text" | "json" (JSON lines)
    # Bearer token that lets a non-loopback caller scrape GET /metrics.
    metrics_token: str | None = None
    # PuppetDB for puppetserver-driven servers (another JVM per server), and the PostgreSQL
    # server its databases are created in (one database per cmhost server).
    puppetdb: bool = False
    puppetdb_database_url: str | None = None
    # Bearer token for /_cmhost/ endpoints that change anything (required off loopback).
    admin_token: str | None = None
    # Start on an empty database although the data directory belongs to another one.
    accept_new_database: bool = False
    # Seconds a client has to send a request's headers (from connecting, or from the first
    # byte of a request): slow or silent clients must not hold connections open for ever.
    header_timeout: float = 10.0
    # Seconds a client has to send a request's body once its headers are in (bodies are at
    # most 1 MiB).
    body_timeout: float = 60.0

    def __post_init__(self) -> None:
        # Absolute from the start: paths built from it may end in messages, which hide only
        # absolute paths (cmhost/messages.py), and a relative one would move with the cwd.
        self.data_dir = Path(self.data_dir).expanduser().absolute()
        if self.master_key_file is not None:
            self.master_key_file = Path(self.master_key_file).expanduser().absolute()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'cmhost.db'}"

    @property
    def resolved_master_key_file(self) -> Path:
        return self.master_key_file or default_master_key_file()

    @property
    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def port_range(self) -> tuple[int, int]:
        low, _, high = self.engine_ports.partition("-")
        first, last = int(low), int(high or low)
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"engine port range {self.engine_ports!r} is not LOW-HIGH")
        return first, last

    def check_puppetdb(self) -> None:
        """ValueError when PuppetDB is asked for without a database server to put it in."""
        if self.puppetdb and not self.puppetdb_database_url:
            raise ValueError(
                "--puppetdb on needs --puppetdb-database-url (CMHOST_PUPPETDB_DATABASE_URL): "
                "the PostgreSQL server in which each Puppet server's PuppetDB gets a database, "
                "e.g. postgresql://puppetdb:secret@127.0.0.1:5432/postgres")

    def check_audit_retention(self) -> None:
        if not self.audit_retention_days > 0:
            raise ValueError("--audit-retention-days (CMHOST_AUDIT_RETENTION_DAYS) must be "
                             "more than 0")

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def unspecified_host(self) -> bool:
        """Whether the listen address means every address (0.0.0.0, ::): no node can use
        it to reach this API."""
        try:
            return self.host == "" or ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            return False

    @property
    def uses_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def check_public_url(self) -> None:
        """ValueError when the URL handed to nodes would be one they cannot reach."""
        if self.unspecified_host and not self.public_url:
            raise ValueError(
                f"listening on {self.host or 'every address'}, cmhost cannot tell nodes where "
                "to reach it (user data, S3LogUrl): give --public-url (CMHOST_PUBLIC_URL), "
                f"e.g. --public-url http://<this host's name or address>:{self.port}")

    def check_listening(self) -> None:
        """ValueError, with what to do, when a `serve` with these settings must not start."""
        for name in ("header_timeout", "body_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be more than 0 seconds")
        self.check_public_url()
        self.check_puppetdb()
        self.check_audit_retention()
        if self.admin_token is not None and not self.admin_token.strip():
            raise ValueError("--admin-token (CMHOST_ADMIN_TOKEN) must not be empty")
        if self.metrics_token is not None and not self.metrics_token.strip():
            raise ValueError("--metrics-token (CMHOST_METRICS_TOKEN) must not be empty")
        if self.clock == "virtual" and not self.loopback and not self.admin_token:
            raise ValueError(
                f"a virtual clock on {self.host} (not loopback) could be moved by anyone "
                "who reaches the port: give --admin-token (CMHOST_ADMIN_TOKEN), or listen "
                "on 127.0.0.1")


# Values a CMHOST_* variable may take when its flag takes a fixed set (the flag's choices).
CHOICES: dict[str, tuple[str, ...]] = {
    "CMHOST_CLOCK": ("real", "virtual"),
    "CMHOST_PUPPET_DRIVER": ("embedded", "puppetserver"),
    "CMHOST_CHEF_DRIVER": ("embedded", "goiardi"),
    "CMHOST_LOG_LEVEL": ("debug", "info", "warning", "error"),
    "CMHOST_LOG_FORMAT": ("text", "json"),
}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

# Variable, Settings field, and how its text becomes the field's value.
_SIMPLE: tuple[tuple[str, str, type], ...] = (
    ("CMHOST_HOST", "host", str),
    ("CMHOST_PORT", "port", int),
    ("CMHOST_DATA_DIR", "data_dir", Path),
    ("CMHOST_DATABASE_URL", "database_url", str),
    ("CMHOST_MASTER_KEY_FILE", "master_key_file", Path),
    ("CMHOST_PROVISIONING_SECONDS", "provisioning_seconds", float),
    ("CMHOST_DELETION_SECONDS", "deletion_seconds", float),
    ("CMHOST_SERVER_LIMIT", "server_limit", int),
    ("CMHOST_BACKUP_LIMIT", "backup_limit", int),
    ("CMHOST_BLOB_URL", "blob_url", str),
    ("CMHOST_ENGINE_HOST", "engine_host", str),
    ("CMHOST_ENGINE_PORTS", "engine_ports", str),
    ("CMHOST_JAVA_HEAP", "java_heap", str),
    ("CMHOST_HEALTH_INTERVAL", "health_interval", float),
    ("CMHOST_EVENTS_PER_SERVER", "events_per_server", int),
    ("CMHOST_JOB_LEASE_SECONDS", "job_lease_seconds", float),
    ("CMHOST_CREDENTIAL_POOL", "credential_pool", int),
    ("CMHOST_AUDIT_RETENTION_DAYS", "audit_retention_days", float),
    ("CMHOST_HEADER_TIMEOUT", "header_timeout", float),
    ("CMHOST_BODY_TIMEOUT", "body_timeout", float),
    ("CMHOST_PUBLIC_URL", "public_url", str),
    ("CMHOST_CLOCK", "clock", str),
    ("CMHOST_PUPPET_DRIVER", "puppet_driver", str),
    ("CMHOST_CHEF_DRIVER", "chef_driver", str),
    ("CMHOST_LOG_LEVEL", "log_level", str),
    ("CMHOST_LOG_FORMAT", "log_format", str),
    ("CMHOST_PUPPETDB_DATABASE_URL", "puppetdb_database_url", str),
)
# Variables that are on or off (as their flags are).
_SWITCHES: tuple[tuple[str, str], ...] = (
    ("CMHOST_THROTTLE", "throttle"),
    ("CMHOST_ACCEPT_NEW_DATABASE", "accept_new_database"),
    ("CMHOST_NO_WORKER", "no_worker"),
    ("CMHOST_PUPPETDB", "puppetdb"),
)
_KIND_WORDS = {int: "a whole number", float: "a number"}


def _switch(name: str, text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{name}={text!r} is neither on nor off (use one of: "
                     f"{', '.join(_TRUE + _FALSE)})")


def env_defaults() -> dict[str, object]:
    """CMHOST_* variables as Settings keyword arguments (flags override them).

    A value the variable's flag would refuse is refused here too, as a ValueError of one line
    that names the variable (the CLI prints it): a typo must not silently keep a default."""
    env = os.environ
    out: dict[str, object] = {}
    for name, key, kind in _SIMPLE:
        if name not in env:
            continue
        text = env[name]
        allowed = CHOICES.get(name)
        if allowed is not None and text not in allowed:
            raise ValueError(f"{name}={text!r} is not one of: {', '.join(allowed)}")
        try:
            out[key] = kind(text)
        except ValueError:
            raise ValueError(f"{name}={text!r} is not {_KIND_WORDS.get(kind, 'valid')}"
                             ) from None
    for name, key in _SWITCHES:
        if env.get(name, "").strip():  # set but empty: as if unset
            value = _switch(name, env[name])
            if key == "no_worker":
                out["run_worker"] = not value
            else:
                out[key] = value
    if env.get("CMHOST_ADMIN_TOKEN"):
        out["admin_token"] = env["CMHOST_ADMIN_TOKEN"]
    if env.get("CMHOST_METRICS_TOKEN"):
        out["metrics_token"] = env["CMHOST_METRICS_TOKEN"]
    return out
