"""What a server's own dashboard shows, read from its engine: Chef nodes, clients, roles,
environments and cookbooks; Puppet nodes with their certificates, reports, facts and code.

Each driver keeps this where its engine does: the embedded engine in its node registry
(engines/embedded_nodes.py), goiardi behind its Chef API (signed as cmhost's admin client),
puppetserver in its CA directory, its vardir (stored reports, cached facts) and its code
directory. Only public attributes and the files of each driver's documented layout are read;
nothing here changes an engine.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from cmhost.engines import crl, embedded_nodes, pki, puppet_ca
from cmhost.engines.base import EngineDriver, EngineError, EngineMaterial, ServerSpec
from cmhost.engines.embedded import EmbeddedDriver
from cmhost.engines.goiardi import CA_FILE, CMHOST_CLIENT, CMHOST_KEY_FILE, ChefApi, GoiardiDriver
from cmhost.engines.puppetserver import Layout, PuppetServerDriver, split_endpoint
from cmhost.engines.supervisor import recorded_port

# goiardi's own actors, which are not nodes' clients.
_GOIARDI_ACTORS = frozenset({"cmhost", "pivotal", "chef-webui", "chef-validator", "admin"})
# At most this many facts of a node are shown (a real node has hundreds).
MAX_FACTS = 400


@dataclass(frozen=True)
class ChefNode:
    name: str
    platform: str = ""
    environment: str = ""
    run_list: tuple[str, ...] = ()
    last_check_in: float | None = None  # epoch seconds (ohai_time), None if never
    registered_at: str = ""  # the embedded registry's association time


@dataclass(frozen=True)
class ChefData:
    source: str  # where the data comes from, shown on the page
    nodes: list[ChefNode] = field(default_factory=list)
    clients: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    environments: list[str] = field(default_factory=list)
    cookbooks: list[tuple[str, str]] = field(default_factory=list)  # (name, latest version)


@dataclass(frozen=True)
class PuppetNode:
    name: str
    state: str  # signed | revoked
    serial: str  # hexadecimal
    not_after: str = ""  # ISO 8601, UTC
    revoked_at: str = ""
    last_report: str = ""  # ISO 8601 time of the newest stored report
    report_status: str = ""  # changed | unchanged | failed
    facts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Deployment:
    environment: str
    deployed_at: str  # ISO 8601, UTC (when its directory last changed)


@dataclass(frozen=True)
class PuppetData:
    source: str
    nodes: list[PuppetNode] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_time(epoch: float) -> str:
    """Epoch seconds as the dashboards show times (ISO 8601, UTC)."""
    return _iso(dt.datetime.fromtimestamp(epoch, dt.UTC))


def _mtime_iso(path: Path) -> str:
    return _iso(dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC))


# ------------------------------------------------------------------------------- Chef


def read_chef(driver: EngineDriver, spec: ServerSpec, material: EngineMaterial) -> ChefData:
    """The Chef server's objects; EngineError when the engine cannot be read."""
    # By name, not class: the app may wrap drivers (fault injection holds their health).
    if driver.name == GoiardiDriver.name:
        return _goiardi(cast(GoiardiDriver, driver), spec)
    if driver.name == EmbeddedDriver.name:
        return _embedded_chef(cast(EmbeddedDriver, driver).server_dir(spec))
    raise EngineError(f"The {driver.name} engine has no dashboard data.")


def _embedded_chef(root: Path) -> ChefData:
    nodes = []
    for name in embedded_nodes.node_names(root):
        record = embedded_nodes.read_node(root, name) or {}
        nodes.append(ChefNode(name=name, environment="_default",
                              registered_at=str(record.get("associated_at", ""))))
    # Every associated node is a client with its own key; the embedded engine runs no
    # chef-client, so it has no platform, run list or check-in, and no roles or cookbooks.
    return ChefData(source="the embedded engine's node registry (it runs no Chef service)",
                    nodes=nodes, clients=[n.name for n in nodes], environments=["_default"])


def goiardi_api(driver: GoiardiDriver, spec: ServerSpec) -> ChefApi:
    """cmhost's admin client of a goiardi server, from the files the driver keeps for it."""
    root = driver.server_dir(spec)
    port = recorded_port(root)
    try:
        ca_cert = (root / CA_FILE).read_text(encoding="ascii")
        key = (root / CMHOST_KEY_FILE).read_text(encoding="ascii")
    except OSError:
        raise EngineError("The engine's state is incomplete; restore it from a backup.") from None
    if port is None:
        raise EngineError("The engine has no port recorded.")
    host = split_endpoint(spec.endpoint)[0]
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return ChefApi(host, port, ca_cert, CMHOST_CLIENT, key, timeout=5.0)


def _names(api: ChefApi, path: str) -> list[str]:
    _, found = api.expect("GET", path, ok=(200,))
    return sorted(found) if isinstance(found, dict) else []


def _goiardi(driver: GoiardiDriver, spec: ServerSpec) -> ChefData:
    api = goiardi_api(driver, spec)
    nodes = [_goiardi_node(api, name) for name in _names(api, "/nodes")]
    clients = [c for c in _names(api, "/clients") if c not in _GOIARDI_ACTORS]
    _, books = api.expect("GET", "/cookbooks", ok=(200,))
    cookbooks = []
    for name, entry in sorted((books or {}).items()):
        versions = entry.get("versions", []) if isinstance(entry, dict) else []
        latest = versions[0].get("version", "") if versions and isinstance(versions[0], dict) \
            else ""
        cookbooks.append((name, str(latest)))
    return ChefData(source="goiardi's Chef API", nodes=nodes, clients=clients,
                    roles=_names(api, "/roles"), environments=_names(api, "/environments"),
                    cookbooks=cookbooks)


def _goiardi_node(api: ChefApi, name: str) -> ChefNode:
    status, node = api.call("GET", f"/nodes/{name}")
    if status != 200 or not isinstance(node, dict):
        return ChefNode(name=name)
    found = node.get("automatic")
    automatic: dict[str, Any] = found if isinstance(found, dict) else {}
    platform = " ".join(str(automatic[k]) for k in ("platform", "platform_version")
                        if automatic.get(k))
    ohai_time = automatic.get("ohai_time")
    listed = node.get("run_list")
    run_list: list[Any] = listed if isinstance(listed, list) else []
    return ChefNode(name=name, platform=platform,
                    environment=str(node.get("chef_environment") or "_default"),
                    run_list=tuple(str(item) for item in run_list),
                    last_check_in=float(ohai_time) if isinstance(ohai_time, int | float)
                    else None)


# ----------------------------------------------------------------------------- Puppet


def read_puppet(driver: EngineDriver, spec: ServerSpec, material: EngineMaterial) -> PuppetData:
    """The Puppet server's nodes and code; EngineError when the engine cannot be read."""
    if driver.name == PuppetServerDriver.name:
        puppetserver = cast(PuppetServerDriver, driver)
        return _puppetserver(Layout(puppetserver.server_dir(spec.server_id)),
                             puppetserver.certname(spec))
    if driver.name == EmbeddedDriver.name:
        return _embedded_puppet(cast(EmbeddedDriver, driver).server_dir(spec))
    raise EngineError(f"The {driver.name} engine has no dashboard data.")


def _cert_facts(cert: str) -> tuple[str, str]:
    """(serial in hex, expiry) of a PEM certificate."""
    return f"{pki.certificate_serial(cert):X}", _iso(pki.certificate_not_after(cert))


def _embedded_puppet(root: Path) -> PuppetData:
    nodes = []
    for name in embedded_nodes.node_names(root):
        cert = (embedded_nodes.read_node(root, name) or {}).get("certificate")
        if not isinstance(cert, str):
            continue
        serial, not_after = _cert_facts(cert)
        nodes.append(PuppetNode(name=name, state="signed", serial=serial, not_after=not_after))
    try:
        revoked = json.loads((root / embedded_nodes.REVOKED_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        revoked = {"revoked": []}
    except ValueError:
        raise EngineError("The revocation list (revoked.json) is damaged.") from None
    for entry in revoked.get("revoked", []):
        nodes.append(PuppetNode(name=str(entry.get("node", "")), state="revoked",
                                serial=f"{int(entry['serial']):X}",
                                revoked_at=str(entry.get("revoked_at", ""))))
    return PuppetData(source="the embedded engine's certificate registry (it runs no Puppet "
                             "service: no reports, facts or code)", nodes=nodes)


def _puppetserver(paths: Layout, own_certname: str) -> PuppetData:
    hidden = {own_certname, puppet_ca.CLIENT_NAME}
    try:
        revoked_at = dict(crl.crl_entries((paths.ca / puppet_ca.CA_CRL).read_text("ascii"))[0])
    except (FileNotFoundError, ValueError):
        revoked_at = {}
    nodes = []
    listed: set[int] = set()
    for name in puppet_ca.signed_names(paths.ca):
        cert = puppet_ca.signed_certificate(paths.ca, name)
        if name in hidden or cert is None:
            continue
        serial = pki.certificate_serial(cert)
        listed.add(serial)
        report_time, status = _last_report(paths.var / "reports" / name)
        when = revoked_at.get(serial)
        nodes.append(PuppetNode(
            name=name, state="revoked" if when else "signed", serial=f"{serial:X}",
            not_after=_iso(pki.certificate_not_after(cert)),
            revoked_at=_iso(when) if when else "", last_report=report_time,
            report_status=status, facts=_facts(paths.var / "yaml" / "facts" / f"{name}.yaml")))
    # Revoked and cleaned certificates are gone from signed/: the inventory still names them.
    try:
        inventory = puppet_ca.inventory_serials(
            (paths.ca / puppet_ca.INVENTORY).read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        inventory = {}
    for serial, name in sorted(inventory.items()):
        if serial in revoked_at and serial not in listed and name not in hidden:
            nodes.append(PuppetNode(name=name, state="revoked", serial=f"{serial:X}",
                                    revoked_at=_iso(revoked_at[serial])))
    environments = paths.code / "environments"
    deployments = [Deployment(p.name, _mtime_iso(p)) for p in sorted(environments.iterdir())
                   if p.is_dir() and not p.name.startswith(".")] if environments.is_dir() else []
    return PuppetData(source="puppetserver's CA, stored reports, cached facts and code "
                             "directory", nodes=nodes, deployments=deployments)


_REPORT_TIME = re.compile(r"^time: '?([^'\n]+)'?$", re.MULTILINE)
_REPORT_STATUS = re.compile(r"^status: (\w+)$", re.MULTILINE)


def _last_report(directory: Path) -> tuple[str, str]:
    """(time, status) of the newest report puppetserver stored for a node (its `store`
    report processor writes one YAML file per run, named by time)."""
    try:
        newest = max((p for p in directory.iterdir() if p.suffix == ".yaml"),
                     key=lambda p: p.name, default=None)
    except FileNotFoundError:
        return "", ""
    if newest is None:
        return "", ""
    head = newest.read_text(encoding="utf-8", errors="replace")[:20000]
    when = _REPORT_TIME.search(head)
    status = _REPORT_STATUS.search(head)
    return (when.group(1) if when else _mtime_iso(newest)), (status.group(1) if status else "")


_FACT_LINE = re.compile(r"^  ([A-Za-z0-9_]+): (.*)$")


def _facts(path: Path) -> dict[str, str]:
    """The top-level scalar facts of puppetserver's cached facts file (YAML with Ruby tags,
    which a YAML library refuses: the `values:` block is read line by line)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    facts: dict[str, str] = {}
    inside = False
    for line in text.splitlines():
        if not line.startswith(" "):
            inside = line.rstrip() == "values:"
            continue
        match = _FACT_LINE.match(line) if inside else None
        if match and match.group(2).strip() not in ("", "|-", "|", ">"):
            facts[match.group(1)] = _unquote(match.group(2).strip())
            if len(facts) >= MAX_FACTS:
                break
    return facts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value

