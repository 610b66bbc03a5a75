"""The configuration of a server's PuppetDB, and what its puppetserver needs to use it.

PuppetDB (trapperkeeper) reads every file of its config directory; cmhost writes them as JSON,
which is valid HOCON, so no value (a password with `;` or `#`) needs INI escaping.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cmhost.engines.puppetdb_database import DatabaseServer

PRIVATE = 0o600
PUBLIC = 0o644

# The package's bootstrap.cfg without the dashboard redirect (nothing of ours uses it).
_SERVICES = """\
puppetlabs.trapperkeeper.services.webserver.jetty9-service/jetty9-service
puppetlabs.trapperkeeper.services.webrouting.webrouting-service/webrouting-service
puppetlabs.trapperkeeper.services.authorization.authorization-service/authorization-service
puppetlabs.trapperkeeper.services.metrics.metrics-service/metrics-webservice
puppetlabs.trapperkeeper.services.status.status-service/status-service
puppetlabs.trapperkeeper.services.scheduler.scheduler-service/scheduler-service
puppetlabs.puppetdb.cli.services/puppetdb-service
puppetlabs.puppetdb.command/command-service
puppetlabs.puppetdb.pdb-routing/maint-mode-service
puppetlabs.puppetdb.pdb-routing/pdb-routing-service
puppetlabs.puppetdb.config/config-service
"""

# The authorization service guards /status and /metrics only (the /pdb routes are guarded by
# the certificate allowlist): status for anyone with a certificate of the CA, metrics for none.
_AUTH_RULES = [
    {"match-request": {"path": "/status/v1/services", "type": "path", "method": "get"},
     "allow-unauthenticated": True, "sort-order": 500, "name": "status - full"},
    {"match-request": {"path": "/status/v1/simple", "type": "path", "method": "get"},
     "allow-unauthenticated": True, "sort-order": 500, "name": "status - simple"},
    {"match-request": {"path": "/", "type": "path"}, "deny": "*", "sort-order": 999,
     "name": "deny all"},
]

_LOGBACK = """\
<configuration scan="false">
  <appender name="F1" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>{log}/puppetdb.log</file>
    <append>true</append>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>{log}/puppetdb.%i.log.gz</fileNamePattern>
      <minIndex>1</minIndex>
      <maxIndex>5</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>20MB</maxFileSize>
    </triggeringPolicy>
    <encoder>
      <pattern>%d{{yyyy-MM-dd'T'HH:mm:ss.SSSXXX}} %-5p [%c{{2}}] %m%n</pattern>
    </encoder>
  </appender>
  <logger name="org.springframework.jms.connection" level="warn"/>
  <root level="info">
    <appender-ref ref="F1"/>
  </root>
</configuration>
"""

_ACCESS_LOG = """\
<configuration debug="false">
  <appender name="FILE" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>{log}/puppetdb-access.log</file>
    <append>true</append>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>{log}/puppetdb-access.%i.log.gz</fileNamePattern>
      <minIndex>1</minIndex>
      <maxIndex>3</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>20MB</maxFileSize>
    </triggeringPolicy>
    <encoder>
      <pattern>%h %l %u [%t] "%r" %s %b "%i{{User-Agent}}" %D</pattern>
    </encoder>
  </appender>
  <appender-ref ref="FILE"/>
</configuration>
"""


@dataclass(frozen=True)
class TlsFiles:
    """The server's TLS files, which PuppetDB serves with (puppetserver's ssldir files)."""

    ca: Path  # the server's CA certificate: PuppetDB trusts the clients it signed
    cert: Path  # the server certificate
    key: Path  # its private key (0600)
    crl: Path | None = None  # the CA's CRL, read when PuppetDB starts


@dataclass(frozen=True)
class Layout:
    """The paths of one server's PuppetDB directory, `<server dir>/puppetdb/`."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "conf.d"

    @property
    def var(self) -> Path:
        return self.root / "var"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def run(self) -> Path:
        return self.root / "run"


def _hocon(value: object) -> str:
    return json.dumps(value, indent=2) + "\n"


def _xml_path(path: Path) -> str:
    return str(path).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_puppetdb(paths: Layout, *, host: str, port: int, tls: TlsFiles,
                    database: DatabaseServer, database_name: str,
                    allowed: Sequence[str]) -> dict[str, tuple[str, int]]:
    """PuppetDB's files, relative to its directory, with their modes. It listens with TLS
    only (no cleartext port: every client shows a certificate of the server's CA), and only
    the certificate names in `allowed` may use its API."""
    db: dict[str, object] = {"subname": database.jdbc_subname(database_name),
                             "username": database.user}
    if database.password is not None:
        db["password"] = database.password
    jetty: dict[str, object] = {
        "ssl-host": host, "ssl-port": port, "ssl-cert": str(tls.cert), "ssl-key": str(tls.key),
        "ssl-ca-cert": str(tls.ca), "client-auth": "need",
        "access-log-config": str(paths.root / "request-logging.xml")}
    if tls.crl is not None:
        jetty["ssl-crl-path"] = str(tls.crl)
    return {
        "conf.d/config.conf": (_hocon({
            "global": {"vardir": str(paths.var),
                       "logging-config": str(paths.root / "logback.xml")},
            "puppetdb": {"certificate-allowlist": str(paths.root / "allowlist"),
                         "disable-update-checking": "true"},
        }), PUBLIC),
        "conf.d/database.conf": (_hocon({"database": db}), PRIVATE),
        "conf.d/jetty.conf": (_hocon({"jetty": jetty}), PUBLIC),
        "conf.d/auth.conf": (_hocon({"authorization": {"version": 1, "rules": _AUTH_RULES}}),
                             PUBLIC),
        "allowlist": ("".join(f"{name}\n" for name in dict.fromkeys(allowed)), PUBLIC),
        "bootstrap.cfg": (_SERVICES, PUBLIC),
        "logback.xml": (_LOGBACK.format(log=_xml_path(paths.log)), PUBLIC),
        "request-logging.xml": (_ACCESS_LOG.format(log=_xml_path(paths.log)), PUBLIC),
    }


# ------------------------------------------------------------------ puppetserver's side

# puppet.conf [server] settings: PuppetDB stores exported resources (storeconfigs), catalogs
# (the storeconfigs backend) and reports (beside puppetserver's own YAML store).
SERVER_SETTINGS = (("storeconfigs", "true"), ("storeconfigs_backend", "puppetdb"),
                   ("reports", "store,puppetdb"))

# Facts go to PuppetDB, with puppetserver's YAML copy as the cache (the package's example).
ROUTES_YAML = """\
---
master:
  facts:
    terminus: puppetdb
    cache: yaml
"""


@dataclass(frozen=True)
class PuppetserverConfig:
    """What puppetserver's confdir needs to use the server's PuppetDB."""

    url: str  # https://host:port of the PuppetDB
    files: dict[str, str] = field(default_factory=dict)  # relative to the confdir
    settings: tuple[tuple[str, str], ...] = SERVER_SETTINGS  # for puppet.conf's [server]

    def merge(self, rendered: dict[str, str]) -> dict[str, str]:
        """puppetserver's rendered confdir files (relative path -> text) with these added:
        the files, and the settings in puppet.conf's [server] section."""
        merged = dict(rendered)
        merged.update(self.files)
        merged["puppet.conf"] = with_server_settings(rendered.get("puppet.conf", ""),
                                                     self.settings)
        return merged


def puppetserver_config(url: str) -> PuppetserverConfig:
    """puppetdb.conf (where PuppetDB is) and routes.yaml (facts terminus), for the confdir."""
    puppetdb_conf = "\n".join([
        "# Written by cmhost: this Puppet server's PuppetDB.",
        "[main]",
        f"server_urls = {url}",
        # A command PuppetDB cannot take fails the agent's run instead of vanishing.
        "soft_write_failure = false",
        "",
    ])
    return PuppetserverConfig(url=url, files={"puppetdb.conf": puppetdb_conf,
                                              "routes.yaml": ROUTES_YAML})


def with_server_settings(puppet_conf: str, settings: Sequence[tuple[str, str]]) -> str:
    """puppet.conf with `settings` set in its [server] section (replacing the same names
    there; the section is added when missing)."""
    names = {name for name, _ in settings}
    lines = puppet_conf.splitlines()
    out: list[str] = []
    section, placed = "", False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if section in ("server", "master") and not placed:
                _place(out, settings)
                placed = True
            section = stripped[1:-1].strip()
        elif section in ("server", "master") and stripped.split("=", 1)[0].strip() in names:
            continue
        out.append(line)
    if section in ("server", "master") and not placed:
        _place(out, settings)
        placed = True
    if not placed:
        if out and out[-1].strip():
            out.append("")
        out.append("[server]")
        _place(out, settings)
    return "\n".join(out) + "\n"


def _place(out: list[str], settings: Sequence[tuple[str, str]]) -> None:
    """Append the settings before the blank lines that end the section."""
    blanks = 0
    while out and not out[-1].strip():
        out.pop()
        blanks += 1
    out.extend(f"{name} = {value}" for name, value in settings)
    out.extend([""] * blanks)
