"""Servers: CreateServer, DescribeServers, UpdateServer, DeleteServer."""

from __future__ import annotations

import contextlib
import json
import secrets
import uuid
from dataclasses import dataclass, field

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from cmhost.engines import pki
from cmhost.engines.attributes import engine_family, validate_create_attributes
from cmhost.engines.base import (
    EngineDriver,
    EngineError,
    EngineFamily,
    EngineMaterial,
    InvalidEngineAttribute,
    Prepared,
    ServerSpec,
)
from cmhost.messages import caller_message
from cmhost.service import events, states
from cmhost.service.context import Caller
from cmhost.service.custom_domain import check_custom_domain
from cmhost.service.engine_options import ENGINES, EngineChoice, choose_engine, full_version
from cmhost.service.errors import (
    InvalidStateException,
    LimitExceededException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
    ValidationException,
    constraint,
    violations,
)
from cmhost.service.network import server_network
from cmhost.service.pagination import Pager, page_size
from cmhost.service.records import Server
from cmhost.service.runtime import Runtime
from cmhost.service.tags import tags_to_dict
from cmhost.storage import repo

MAX_RETENTION = 30  # automated backup generations
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class CreateServerInput:
    server_name: str
    engine: str
    instance_profile_arn: str
    instance_type: str
    service_role_arn: str
    engine_model: str | None = None
    engine_version: str | None = None
    engine_attributes: list[tuple[str, str]] = field(default_factory=list)
    associate_public_ip_address: bool | None = None
    disable_automated_backup: bool | None = None
    backup_retention_count: int | None = None
    key_pair: str | None = None
    preferred_backup_window: str | None = None
    preferred_maintenance_window: str | None = None
    security_group_ids: list[str] | None = None
    subnet_ids: list[str] | None = None
    tags: list[tuple[str, str]] = field(default_factory=list)
    backup_id: str | None = None
    custom_domain: str | None = None
    custom_certificate: str | None = None
    custom_private_key: str | None = None


def default_backup_window() -> str:
    return f"{secrets.randbelow(24):02d}:{secrets.randbelow(60):02d}"


def default_maintenance_window() -> str:
    return f"{secrets.choice(('Tue', 'Wed', 'Fri'))}:{secrets.randbelow(24):02d}:00"


def check_retention(value: int | None) -> None:
    if value is not None and not 1 <= value <= MAX_RETENTION:
        rule = (f"Member must have value less than or equal to {MAX_RETENTION}" if value > 1
                else "Member must have value greater than or equal to 1")
        raise violations([constraint(value, "backupRetentionCount", rule)])


def check_maintenance_window(value: str | None) -> None:
    """Maintenance is weekly and starts on the hour: `DDD:HH:00` (as the SDK documents)."""
    if value is not None and (value.count(":") != 2 or not value.endswith(":00")):
        raise violations([constraint(value, "preferredMaintenanceWindow",
                                     "Member must be a weekly start time on the hour, "
                                     "DDD:HH:00")])


def server_not_found(name: str) -> ResourceNotFoundException:
    return events.server_not_found(name)


def create_server(rt: Runtime, caller: Caller, req: CreateServerInput
                  ) -> tuple[Server, list[tuple[str, str]]]:
    """Validate, create the engine identity, store the server in CREATING and enqueue the job.

    Returns the server and the one-time credentials for the response.
    """
    choice = choose_engine(req.engine, req.engine_model, _requested_version(rt, caller, req))
    check_retention(req.backup_retention_count)
    check_maintenance_window(req.preferred_maintenance_window)
    check_custom_domain(req.custom_domain, req.custom_certificate, req.custom_private_key,
                        now=rt.clock.now())
    tags = tags_to_dict(req.tags)
    try:
        attributes = validate_create_attributes(choice.engine, req.engine_attributes)
    except InvalidEngineAttribute as exc:
        raise ValidationException(caller_message(exc)) from None

    family = engine_family(choice.engine)
    driver = rt.drivers.for_new_server(family)
    now = rt.clock.now()
    server_id = str(uuid.uuid4())
    arn = f"arn:aws:opsworks-cm:{caller.region}:{caller.account}:server/{req.server_name}/{server_id}"
    stack_arn = (f"arn:aws:cloudformation:{caller.region}:{caller.account}:stack/"
                 f"aws-opsworks-cm-instance-{req.server_name}-{int(now * 1000)}/{uuid.uuid4()}")

    # Cheap checks first so a doomed request does not pay for key generation or take a port.
    with rt.db.read() as conn:
        _check_can_create(rt, conn, caller, req)
    try:
        endpoint = driver.allocate_endpoint(server_id, req.server_name, caller.region)
    except EngineError as exc:
        raise ValidationException(f"The {driver.name} engine cannot take a new server: "
                                  f"{caller_message(exc)}"
                                  ) from None
    try:
        return _create(rt, caller, req, driver=driver, family=family, choice=choice,
                       attributes=attributes, tags=tags, server_id=server_id, arn=arn,
                       endpoint=endpoint, stack_arn=stack_arn, now=now)
    except BaseException:
        # Nothing was stored: give back what the driver reserved (a port, a directory).
        with contextlib.suppress(EngineError, OSError):
            driver.destroy(ServerSpec(
                server_id=server_id, name=req.server_name, account=caller.account,
                region=caller.region, engine=choice.engine, family=family,
                engine_version=choice.version, endpoint=endpoint))
        raise


def _requested_version(rt: Runtime, caller: Caller, req: CreateServerInput) -> str | None:
    """The EngineVersion to create with: from a backup, the backup's engine version unless
    the request names the same one (a Chef 12 backup makes a Chef 12 server, which
    StartMaintenance can then upgrade); else the request's."""
    if req.backup_id is None or req.engine not in ENGINES:
        return req.engine_version  # choose_engine refuses an unknown engine
    with rt.db.read() as conn:
        backup = repo.get_backup(conn, caller.account, caller.region, req.backup_id)
    settings = backup["settings"] if backup is not None else {}
    if (not settings.get("EngineVersion")
            or engine_family(settings["Engine"]) != engine_family(req.engine)):
        return req.engine_version  # _check_can_create says what is wrong with the backup
    kept = full_version(settings["Engine"], settings["EngineVersion"])
    if req.engine_version is not None and full_version(req.engine, req.engine_version) != kept:
        raise ValidationException(
            f"The backup '{req.backup_id}' is of a {settings['Engine']} {kept} server; "
            f"EngineVersion '{req.engine_version}' cannot be created from it (leave "
            "EngineVersion out, or name the backup's).")
    return kept


def _create(rt: Runtime, caller: Caller, req: CreateServerInput, *, driver: EngineDriver,
            family: EngineFamily, choice: EngineChoice, attributes: dict[str, str],
            tags: dict[str, str], server_id: str, arn: str, endpoint: str, stack_arn: str,
            now: float) -> tuple[Server, list[tuple[str, str]]]:
    spec = ServerSpec(server_id=server_id, name=req.server_name, account=caller.account,
                      region=caller.region, engine=choice.engine, family=family,
                      engine_version=choice.version, endpoint=endpoint,
                      api_endpoint=rt.settings.resolved_public_url,
                      custom_domain=req.custom_domain)
    if req.backup_id is None:
        try:
            with pki.supplied_by(rt.credentials):
                prepared = driver.prepare(spec, attributes)
        except InvalidEngineAttribute as exc:
            raise ValidationException(caller_message(exc)) from None
        except EngineError as exc:
            raise ValidationException(
                f"The {driver.name} engine cannot create this server: "
                f"{caller_message(exc)}") from None
    else:
        # The identity (CA, keys, nodes) comes from the backup when the job restores it;
        # no new credentials are handed out.
        prepared = Prepared(material=EngineMaterial())
    material = prepared.material
    secret_parts = dict(material.secrets)
    if req.custom_private_key is not None:
        secret_parts["custom_private_key"] = req.custom_private_key
    public_parts = dict(material.public)
    if req.custom_certificate is not None:
        public_parts["custom_certificate"] = req.custom_certificate
    public_attributes = (driver.public_attributes(spec, material) if req.backup_id is None
                         else [])
    # Also from a backup: a new server gets a new group (and the default subnet) unless the
    # request names them, as the reference says of CreateServer.
    security_groups, subnets = server_network(
        server_id, caller.account, caller.region, security_group_ids=req.security_group_ids,
        subnet_ids=req.subnet_ids)

    row = {
        "id": server_id, "account": caller.account, "region": caller.region,
        "name": req.server_name, "arn": arn, "engine": choice.engine,
        "engine_model": choice.model, "engine_version": choice.version, "driver": driver.name,
        "status": states.CREATING, "status_reason": None, "maintenance_status": None,
        "endpoint": endpoint, "cloudformation_stack_arn": stack_arn,
        "instance_type": req.instance_type, "instance_profile_arn": req.instance_profile_arn,
        "service_role_arn": req.service_role_arn, "key_pair": req.key_pair,
        "associate_public_ip_address": True if req.associate_public_ip_address is None
        else req.associate_public_ip_address,
        "disable_automated_backup": bool(req.disable_automated_backup),
        "backup_retention_count": req.backup_retention_count or 1,
        "preferred_backup_window": req.preferred_backup_window or default_backup_window(),
        "preferred_maintenance_window": req.preferred_maintenance_window
        or default_maintenance_window(),
        "security_group_ids": security_groups, "subnet_ids": subnets,
        "custom_domain": req.custom_domain, "engine_public": public_parts,
        "engine_secrets_enc": rt.box.encrypt(json.dumps(secret_parts), arn),
        "engine_attributes": [list(a) for a in public_attributes],
        "created_at": now, "updated_at": now,
    }
    try:
        with rt.db.write() as conn:
            _check_can_create(rt, conn, caller, req, lock=True)
            repo.insert_server(conn, row)
            repo.put_tags(conn, arn, tags)
            events.record(conn, server_id=server_id, server_name=req.server_name, at=now,
                          message=f"Server {req.server_name} creation started "
                                  f"({choice.engine} {choice.version}, {driver.name} engine).")
            rt.enqueuer.enqueue(conn, kind="create_server", server_id=server_id, now=now,
                                payload={"backup_id": req.backup_id} if req.backup_id else None)
    except IntegrityError:
        raise _already_exists(req.server_name) from None
    rt.wake_worker()
    server = Server.from_row(row)
    return server, list(public_attributes) + list(prepared.one_time_attributes)


def _already_exists(name: str) -> ResourceAlreadyExistsException:
    return ResourceAlreadyExistsException(
        f"A server with the name '{name}' already exists in this account and region.")


def _check_can_create(rt: Runtime, conn: Connection, caller: Caller, req: CreateServerInput,
                      *, lock: bool = False) -> None:
    if lock:  # a statement of its own: the checks must read what was committed after it
        repo.lock_account(conn, caller.account, rt.clock.now())
    own_limit, count, taken = repo.create_check(conn, caller.account, caller.region,
                                                req.server_name)
    if taken:
        raise _already_exists(req.server_name)
    # The account's own limit if one is set, else the process default.
    limit = own_limit if own_limit is not None else rt.settings.server_limit
    if count >= limit:
        raise LimitExceededException(
            f"You have reached the maximum number of servers ({limit}) for this account "
            f"in {caller.region}.")
    if req.backup_id is not None:
        backup = repo.get_backup(conn, caller.account, caller.region, req.backup_id)
        if backup is None:
            raise ResourceNotFoundException(
                f"A backup with the ID '{req.backup_id}' does not exist.")
        if backup["status"] != "OK":
            raise ValidationException(
                f"The backup '{req.backup_id}' is {backup['status']}; a server can be created "
                "only from a backup in state OK.")
        if engine_family(backup["settings"]["Engine"]) != engine_family(req.engine):
            raise ValidationException(
                f"The backup '{req.backup_id}' is of a {backup['settings']['Engine']} server; "
                f"it cannot create a {req.engine} server.")


# Which server, at which revision, by which name: (id, revision, name), enough to serve a
# server from a cache. Plain tuples, as the database returns them: this is the hot path.
ServerRef = tuple[str, int, str]


def list_server_refs(rt: Runtime, pager: Pager, caller: Caller, *, server_name: str | None,
                     max_results: int | None, next_token: str | None
                     ) -> tuple[list[ServerRef], str | None]:
    """DescribeServers as references: the page's servers in order, and the next token."""
    scope = f"DescribeServers|{caller.account}|{caller.region}|{server_name or ''}"
    if server_name is not None:
        if next_token is not None:
            pager.decode(next_token, scope)  # no second page exists for one name
        rows = rt.db.fetch(repo.SERVER_REVISION_BY_NAME, cached=True, params={
            "account": caller.account, "region": caller.region, "name": server_name})
        if not rows:
            raise server_not_found(server_name)
        return [rows[0]], None
    limit = page_size(max_results)
    after = ""  # every name is longer than ""
    if next_token is not None:
        cursor = pager.decode(next_token, scope)
        after = str(cursor[0]) if cursor else ""
    rows = rt.db.fetch(repo.SERVER_REVISIONS, cached=True, params={"account": caller.account,
                                                "region": caller.region, "after": after,
                                                "limit": limit + 1})
    token = None
    if len(rows) > limit:
        rows = rows[:limit]
        token = pager.encode(scope, [rows[-1][2]])
    return rows, token


def servers_by_ids(rt: Runtime, ids: list[str]) -> dict[str, Server]:
    with rt.db.read() as conn:
        rows = repo.get_servers_by_ids(conn, ids)
    return {row["id"]: Server.from_row(row) for row in rows}


def update_server(rt: Runtime, caller: Caller, *, server_name: str,
                  disable_automated_backup: bool | None, backup_retention_count: int | None,
                  preferred_backup_window: str | None, preferred_maintenance_window: str | None
                  ) -> Server:
    check_retention(backup_retention_count)
    check_maintenance_window(preferred_maintenance_window)
    values: dict[str, object] = {}
    if disable_automated_backup is not None:
        values["disable_automated_backup"] = disable_automated_backup
    if backup_retention_count is not None:
        values["backup_retention_count"] = backup_retention_count
    if preferred_backup_window is not None:
        values["preferred_backup_window"] = preferred_backup_window
    if preferred_maintenance_window is not None:
        values["preferred_maintenance_window"] = preferred_maintenance_window
    now = rt.clock.now()
    with rt.db.write() as conn:
        row = repo.get_server(conn, caller.account, caller.region, server_name)
        if row is None:
            raise server_not_found(server_name)
        states.require("UpdateServer", row["name"], row["status"])
        if values:
            repo.update_server(conn, row["id"], updated_at=now, **values)
            changed = ", ".join(sorted(_wire_name(k) for k in values))
            events.record(conn, server_id=row["id"], server_name=row["name"], at=now,
                          message=f"Server settings updated: {changed}.")
        row = repo.get_server_by_id(conn, row["id"])
        assert row is not None
    return Server.from_row(row)


def _wire_name(column: str) -> str:
    return "".join(part.capitalize() for part in column.split("_"))


def delete_server(rt: Runtime, caller: Caller, *, server_name: str) -> None:
    now = rt.clock.now()
    with rt.db.write() as conn:
        row = repo.get_server(conn, caller.account, caller.region, server_name)
        if row is None:
            raise server_not_found(server_name)
        status = row["status"]
        if status == states.DELETING:
            raise InvalidStateException(f"The server '{server_name}' is already being deleted.")
        if status in states.BUSY:
            raise ValidationException(
                f"Cannot delete the server '{server_name}'. The current operation on the "
                f"server is still in progress.")
        if not repo.transition_server(conn, row["id"], states.ALLOWED["DeleteServer"],
                                      status=states.DELETING, status_reason=None,
                                      updated_at=now):
            raise states.changed_meanwhile(server_name)
        events.record(conn, server_id=row["id"], server_name=server_name, at=now,
                      message=f"Server {server_name} deletion started.")
        rt.enqueuer.enqueue(conn, kind="delete_server", server_id=row["id"], now=now)
    rt.wake_worker()
