"""A server's own dashboard (admin sign-in, the engine's objects) and the console's node list.

The dashboard is the engine's console: it opens with the server's admin password
(CHEF_DELIVERY_ADMIN_PASSWORD, PUPPET_ADMIN_PASSWORD), checked against the scrypt hash the
server's material keeps, never with an access key. A session remembers a digest of the hash
it was opened with, so a reset (UpdateServerEngineAttributes) ends it at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from cmhost.engines import dashboard_data, pki
from cmhost.engines.attributes import engine_family
from cmhost.engines.base import EngineError
from cmhost.engines.dashboard_data import ChefData, PuppetData
from cmhost.messages import caller_message
from cmhost.service import events, states
from cmhost.service.context import Caller
from cmhost.service.records import server_material, server_spec
from cmhost.service.runtime import Runtime
from cmhost.service.sessions import credential_check
from cmhost.storage import console_queries, repo
from cmhost.storage.repo import Row

ADMIN_USER = "admin"
# Servers of one name in different accounts or regions a sign-in tries, oldest first.
MAX_CANDIDATES = 20
# Checked when no server has the name, so that a sign-in takes as long either way.
_DECOY_HASH = pki.hash_password("cmhost dashboard decoy")


@dataclass(frozen=True)
class DashboardServer:
    """The server a dashboard session opens, as its pages need it."""

    id: str
    name: str
    engine: str
    family: str
    engine_version: str
    driver: str
    status: str
    endpoint: str
    check: str  # credential_check of the admin password hash


@dataclass(frozen=True)
class EngineView:
    """What the engine answered, or why it could not (the page says so)."""

    chef: ChefData | None = None
    puppet: PuppetData | None = None
    problem: str = ""


@dataclass(frozen=True)
class NodeStatus:
    """A node as the console lists it: what the engine knows and the last request about it."""

    name: str
    associated: bool
    action: str = ""  # associate | disassociate (the newest request), "" if none
    status: str = ""  # IN_PROGRESS | SUCCESS | FAILED
    error: str = ""
    requested_at: float | None = None
    last_check_in: str = ""  # real engines only (a Chef run's ohai_time, a Puppet report)


def _admin_hash(row: Row) -> str | None:
    value = (row["engine_public"] or {}).get("admin_password_hash")
    return value if isinstance(value, str) else None


def _dashboard_server(row: Row, password_hash: str) -> DashboardServer:
    return DashboardServer(id=row["id"], name=row["name"], engine=row["engine"],
                           family=engine_family(row["engine"]),
                           engine_version=row["engine_version"], driver=row["driver"],
                           status=row["status"], endpoint=row["endpoint"],
                           check=credential_check(password_hash))


def admin_sign_in(rt: Runtime, server_name: str, user: str, password: str, *,
                  server_id: str | None = None) -> DashboardServer | None:
    """The server called `server_name` whose admin password this is, or None.

    Names are unique per account and region only: every server of that name (or only the
    one `server_id` names) is tried, oldest first. Whoever knows a server's admin password
    may open its dashboard, so a password two such servers share opens the older one.
    """
    with rt.db.read() as conn:
        rows = console_queries.servers_named(conn, server_name, MAX_CANDIDATES)
    rows = [r for r in rows if r["status"] != states.DELETING
            and (server_id is None or r["id"] == server_id)]
    if user != ADMIN_USER or not password:
        rows = []
    tried = False
    for row in rows:
        stored = _admin_hash(row)
        if stored is None:
            continue
        tried = True
        if pki.verify_password(password, stored):
            return _dashboard_server(row, stored)
    if not tried:
        pki.verify_password(password or "-", _DECOY_HASH)
    return None


def dashboard_server(rt: Runtime, server_id: str, check: str) -> DashboardServer | None:
    """The server a dashboard session opened, while its admin password is the one the
    session was opened with; None once it changed, or the server is being deleted."""
    with rt.db.read() as conn:
        row = repo.get_server_by_id(conn, server_id)
    if row is None or row["status"] == states.DELETING:
        return None
    stored = _admin_hash(row)
    if stored is None or credential_check(stored) != check:
        return None
    return _dashboard_server(row, stored)


def _read_engine(rt: Runtime, row: Row) -> EngineView:
    spec = server_spec(row, rt.settings.resolved_public_url)
    try:
        driver = rt.drivers.for_server(spec.family, row["driver"])
    except LookupError as exc:
        return EngineView(problem=str(exc))
    try:
        material = server_material(row, rt.box)
        if spec.family == "Chef":
            return EngineView(chef=dashboard_data.read_chef(driver, spec, material))
        return EngineView(puppet=dashboard_data.read_puppet(driver, spec, material))
    except (EngineError, OSError) as exc:
        return EngineView(problem=f"The engine cannot be read now: {caller_message(exc)}")


def engine_view(rt: Runtime, server: DashboardServer) -> EngineView:
    """The engine's objects for the server's dashboard."""
    with rt.db.read() as conn:
        row = repo.get_server_by_id(conn, server.id)
    if row is None:
        return EngineView(problem="The server no longer exists.")
    return _read_engine(rt, row)


def server_nodes(rt: Runtime, caller: Caller, server_name: str
                 ) -> tuple[list[NodeStatus], str]:
    """The caller's server's nodes: those its engine knows and those a request named, with
    the newest request about each; and the engine's problem, if it could not be read."""
    with rt.db.read() as conn:
        row = repo.get_server(conn, caller.account, caller.region, server_name)
        if row is None:
            raise events.server_not_found(server_name)
        requests = console_queries.latest_node_requests(conn, row["id"])
    view = _read_engine(rt, row)
    known: dict[str, str] = {}  # node -> last check-in
    if view.chef is not None:
        for chef_node in view.chef.nodes:
            known[chef_node.name] = (
                dashboard_data.iso_time(chef_node.last_check_in)
                if chef_node.last_check_in is not None else "")
    if view.puppet is not None:
        for node in view.puppet.nodes:
            if node.state == "signed":
                known[node.name] = node.last_report
    found = []
    for name in sorted(set(known) | set(requests)):
        request = requests.get(name)
        found.append(NodeStatus(
            name=name, associated=name in known, last_check_in=known.get(name, ""),
            action=request["action"] if request else "",
            status=request["status"] if request else "",
            error=request["error"] or "" if request else "",
            requested_at=request["created_at"] if request else None))
    return found, view.problem
