"""Every query cmhost makes, as functions over a SQLAlchemy connection."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import Insert

from cmhost.storage.tables import (
    access_keys,
    accounts,
    backups,
    credential_pool,
    events,
    jobs,
    meta,
    node_associations,
    schedule_fires,
    servers,
    tags,
)

# Building a Core statement and its cache key costs more Python than the round trip it makes
# (~0.3 ms a call here), so the statements every CreateServer and job step runs are built once:
# as module constants with bind parameters, or per shape of their SET clause (`_built`).
_BUILT: dict[tuple[Any, ...], Any] = {}


def _built(key: tuple[Any, ...], build: Any) -> Any:
    """The statement for `key`, built by `build()` the first time it is asked for."""
    statement = _BUILT.get(key)
    if statement is None:
        statement = _BUILT[key] = build()
    return statement


def _insert_ignore(conn: Connection, table: Any, values: Mapping[str, Any],
                   keys: Sequence[str]) -> Insert:
    """INSERT … ON CONFLICT (keys) DO NOTHING, on SQLite and PostgreSQL alike."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=keys)


# --- meta -------------------------------------------------------------------------------


_GET_META = select(meta.c.value).where(meta.c.key == bindparam("k"))
_SET_META = update(meta).where(meta.c.key == bindparam("k")).values(value=bindparam("v"))
_INSERT_META = insert(meta)


def get_meta(conn: Connection, key: str) -> str | None:
    return conn.execute(_GET_META, {"k": key}).scalar_one_or_none()


def set_meta(conn: Connection, key: str, value: str) -> None:
    if conn.execute(_SET_META, {"k": key, "v": value}).rowcount == 0:
        conn.execute(_INSERT_META, {"key": key, "value": value})


# --- accounts ---------------------------------------------------------------------------


_LOCK_ACCOUNT = select(accounts).where(accounts.c.account == bindparam("a")).with_for_update()
_GET_ACCOUNT = select(accounts).where(accounts.c.account == bindparam("a"))


def lock_account(conn: Connection, account: str, now: float) -> RowMapping:
    """The account row, created if absent, locked for the rest of the transaction.

    Limit checks (servers, backups) run under this lock so concurrent creates in one
    account are serialized on every database (SQLite serializes writers anyway).
    """
    row = conn.execute(_LOCK_ACCOUNT, {"a": account}).mappings().first()
    if row is None:
        # Two first requests of a new account may both get here: the second one's insert
        # waits for the first's commit and then does nothing.
        conn.execute(_insert_ignore(conn, accounts, {"account": account, "created_at": now},
                                    ["account"]))
        row = conn.execute(_LOCK_ACCOUNT, {"a": account}).mappings().one()
    return row


def get_account(conn: Connection, account: str) -> RowMapping | None:
    return conn.execute(_GET_ACCOUNT, {"a": account}).mappings().first()


def set_account_limits(conn: Connection, account: str, now: float, *,
                       server_limit: int | None, backup_limit: int | None) -> None:
    lock_account(conn, account, now)
    values: dict[str, Any] = {}
    if server_limit is not None:
        values["server_limit"] = server_limit
    if backup_limit is not None:
        values["backup_limit"] = backup_limit
    if values:
        conn.execute(update(accounts).where(accounts.c.account == account).values(**values))


# --- access keys ------------------------------------------------------------------------


def insert_access_key(conn: Connection, **values: Any) -> None:
    conn.execute(insert(access_keys).values(**values))


_GET_ACCESS_KEY = select(access_keys).where(access_keys.c.access_key_id == bindparam("k"))


def get_access_key(conn: Connection, access_key_id: str) -> RowMapping | None:
    return conn.execute(_GET_ACCESS_KEY, {"k": access_key_id}).mappings().first()


def list_access_keys(conn: Connection) -> Sequence[RowMapping]:
    return conn.execute(select(access_keys).order_by(access_keys.c.created_at)).mappings().all()


def delete_access_key(conn: Connection, access_key_id: str) -> bool:
    return conn.execute(
        delete(access_keys).where(access_keys.c.access_key_id == access_key_id)
    ).rowcount > 0


# --- servers ----------------------------------------------------------------------------


_INSERT_SERVER = insert(servers)
_SERVER_BY_NAME = select(servers).where(servers.c.account == bindparam("a"),
                                        servers.c.region == bindparam("r"),
                                        servers.c.name == bindparam("n"))
_SERVER_BY_ID = select(servers).where(servers.c.id == bindparam("id"))
_COUNT_SERVERS = select(func.count()).select_from(servers).where(
    servers.c.account == bindparam("a"), servers.c.region == bindparam("r"))


def insert_server(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(_INSERT_SERVER, dict(values))


def get_server(conn: Connection, account: str, region: str, name: str) -> RowMapping | None:
    return conn.execute(_SERVER_BY_NAME, {"a": account, "r": region, "n": name}
                        ).mappings().first()


# CreateServer's checks in one statement: the account's own server limit (None when it has
# none set, or no row yet), how many servers it has in the region, and whether the name is
# taken there.
_CREATE_CHECK = select(
    select(accounts.c.server_limit).where(accounts.c.account == bindparam("a"))
    .scalar_subquery(),
    select(func.count()).select_from(servers).where(
        servers.c.account == bindparam("a"), servers.c.region == bindparam("r"))
    .scalar_subquery(),
    exists().where(servers.c.account == bindparam("a"), servers.c.region == bindparam("r"),
                   servers.c.name == bindparam("n")))


def create_check(conn: Connection, account: str, region: str, name: str
                 ) -> tuple[int | None, int, bool]:
    """(the account's own server limit or None, its servers in `region`, `name` taken).

    Under `lock_account`, run it after the lock is held: on PostgreSQL a statement sees what
    was committed when it started, so counts read in the locking statement could be stale."""
    limit, count, taken = conn.execute(_CREATE_CHECK, {"a": account, "r": region,
                                                       "n": name}).one()
    return (None if limit is None else int(limit)), int(count), bool(taken)


def get_server_by_id(conn: Connection, server_id: str) -> RowMapping | None:
    return conn.execute(_SERVER_BY_ID, {"id": server_id}).mappings().first()


def get_server_by_arn(conn: Connection, arn: str) -> RowMapping | None:
    return conn.execute(select(servers).where(servers.c.arn == arn)).mappings().first()


def list_servers(conn: Connection, account: str, region: str, *, after_name: str | None,
                 limit: int) -> Sequence[RowMapping]:
    """Servers of an account and region ordered by name, the page after `after_name`."""
    query = select(servers).where(servers.c.account == account, servers.c.region == region)
    if after_name is not None:
        query = query.where(servers.c.name > after_name)
    return conn.execute(query.order_by(servers.c.name).limit(limit)).mappings().all()


# The hot path of DescribeServers: ids and revisions only (rows come from a cache).
SERVER_REVISIONS = (
    select(servers.c.id, servers.c.revision, servers.c.name)
    .where(servers.c.account == bindparam("account"), servers.c.region == bindparam("region"),
           servers.c.name > bindparam("after"))
    .order_by(servers.c.name).limit(bindparam("limit"))
)
SERVER_REVISION_BY_NAME = select(servers.c.id, servers.c.revision, servers.c.name).where(
    servers.c.account == bindparam("account"), servers.c.region == bindparam("region"),
    servers.c.name == bindparam("name"))


def get_servers_by_ids(conn: Connection, ids: Sequence[str]) -> Sequence[RowMapping]:
    return conn.execute(select(servers).where(servers.c.id.in_(list(ids)))).mappings().all()


def count_servers(conn: Connection, account: str, region: str) -> int:
    return conn.execute(_COUNT_SERVERS, {"a": account, "r": region}).scalar_one()


def _server_update(keys: tuple[str, ...], *, allowed: bool, revision: bool) -> Any:
    """UPDATE servers SET revision + 1 and `keys` for one id, maybe only in `allowed` states
    and at an expected revision."""
    def build() -> Any:
        query = update(servers).where(servers.c.id == bindparam("_id"))
        if allowed:
            query = query.where(servers.c.status.in_(bindparam("_allowed", expanding=True)))
        if revision:
            query = query.where(servers.c.revision == bindparam("_revision"))
        return query.values(revision=servers.c.revision + 1,
                            **{k: bindparam(k, type_=servers.c[k].type) for k in keys})
    return _built(("servers-update", keys, allowed, revision), build)


def update_server(conn: Connection, server_id: str, **values: Any) -> None:
    statement = _server_update(tuple(sorted(values)), allowed=False, revision=False)
    conn.execute(statement, {**values, "_id": server_id})


def transition_server(conn: Connection, server_id: str, allowed: Iterable[str], *,
                      expected_revision: int | None = None, **values: Any) -> bool:
    """Set `values` only if the server is still in one of `allowed` states (and, if given,
    still at `expected_revision`): a compare-and-set."""
    statement = _server_update(tuple(sorted(values)), allowed=True,
                               revision=expected_revision is not None)
    params = {**values, "_id": server_id, "_allowed": list(allowed)}
    if expected_revision is not None:
        params["_revision"] = expected_revision
    return conn.execute(statement, params).rowcount == 1


def delete_server(conn: Connection, server_id: str) -> None:
    conn.execute(delete(servers).where(servers.c.id == server_id))


# --- events -----------------------------------------------------------------------------


_INSERT_EVENT = insert(events)


def insert_event(conn: Connection, *, server_id: str, server_name: str, created_at: float,
                 message: str, log_key: str | None = None) -> None:
    conn.execute(_INSERT_EVENT, {"server_id": server_id, "server_name": server_name,
                                 "created_at": created_at, "message": message,
                                 "log_key": log_key})


def list_events(conn: Connection, server_id: str, *, before: tuple[float, int] | None,
                limit: int) -> Sequence[RowMapping]:
    """A server's events, newest first, the page after the (created_at, id) cursor."""
    query = select(events).where(events.c.server_id == server_id)
    if before is not None:
        at, event_id = before
        # The first condition is implied by the second; it gives the index a start.
        query = query.where(events.c.created_at <= at,
                            or_(events.c.created_at < at,
                                and_(events.c.created_at == at, events.c.id < event_id)))
    query = query.order_by(events.c.created_at.desc(), events.c.id.desc()).limit(limit)
    return conn.execute(query).mappings().all()


# DescribeEvents' hot path (Database.fetch): a page of (id, server_name, created_at, message,
# log_key), newest first; the second statement continues after a (created_at, id) cursor.
_EVENT_COLUMNS = (events.c.id, events.c.server_name, events.c.created_at, events.c.message,
                  events.c.log_key)
EVENTS_PAGE = (
    select(*_EVENT_COLUMNS).where(events.c.server_id == bindparam("server_id"))
    .order_by(events.c.created_at.desc(), events.c.id.desc()).limit(bindparam("limit"))
)
EVENTS_PAGE_BEFORE = (
    select(*_EVENT_COLUMNS).where(
        events.c.server_id == bindparam("server_id"),
        events.c.created_at <= bindparam("at"),  # implied by the next one: the index's start
        or_(events.c.created_at < bindparam("at"),
            and_(events.c.created_at == bindparam("at"), events.c.id < bindparam("id"))))
    .order_by(events.c.created_at.desc(), events.c.id.desc()).limit(bindparam("limit"))
)


def delete_events(conn: Connection, server_id: str) -> None:
    conn.execute(delete(events).where(events.c.server_id == server_id))


def event_log_keys(conn: Connection, server_id: str) -> list[str]:
    """The log keys a server's events link to, each once."""
    return list(conn.execute(
        select(events.c.log_key).where(events.c.server_id == server_id,
                                       events.c.log_key.is_not(None)).distinct()
    ).scalars().all())


def _through(boundary: tuple[float, int]) -> Any:
    """Events up to and including the (created_at, id) `boundary`."""
    at, event_id = boundary
    return or_(events.c.created_at < at, and_(events.c.created_at == at, events.c.id <= event_id))


def log_keys_only_through(conn: Connection, server_id: str, boundary: tuple[float, int]
                          ) -> list[str]:
    """The log keys that only a server's events up to `boundary` link to: what pruning
    through it leaves no event linking to."""
    pruned = set(conn.execute(
        select(events.c.log_key).where(events.c.server_id == server_id, _through(boundary),
                                       events.c.log_key.is_not(None)).distinct()
    ).scalars().all())
    if not pruned:
        return []
    kept = set(conn.execute(
        select(events.c.log_key).where(events.c.server_id == server_id, ~_through(boundary),
                                       events.c.log_key.in_(sorted(pruned))).distinct()
    ).scalars().all())
    return sorted(pruned - kept)


# --- backups ----------------------------------------------------------------------------


def count_manual_backups(conn: Connection, account: str, region: str) -> int:
    return conn.execute(
        select(func.count()).select_from(backups).where(
            backups.c.account == account, backups.c.region == region,
            backups.c.backup_type == "MANUAL")
    ).scalar_one()


def get_backup(conn: Connection, account: str, region: str, backup_id: str) -> RowMapping | None:
    return conn.execute(
        select(backups).where(backups.c.id == backup_id, backups.c.account == account,
                              backups.c.region == region)
    ).mappings().first()


def get_backup_by_arn(conn: Connection, arn: str) -> RowMapping | None:
    return conn.execute(select(backups).where(backups.c.arn == arn)).mappings().first()


# --- tags -------------------------------------------------------------------------------


def list_tags(conn: Connection, resource_arn: str, *, after_key: str | None = None,
              limit: int | None = None) -> Sequence[RowMapping]:
    query = select(tags.c.key, tags.c.value).where(tags.c.resource_arn == resource_arn)
    if after_key is not None:
        query = query.where(tags.c.key > after_key)
    query = query.order_by(tags.c.key)
    if limit is not None:
        query = query.limit(limit)
    return conn.execute(query).mappings().all()


def put_tags(conn: Connection, resource_arn: str, new_tags: Mapping[str, str]) -> None:
    if not new_tags:
        return
    conn.execute(delete(tags).where(tags.c.resource_arn == resource_arn,
                                    tags.c.key.in_(list(new_tags))))
    conn.execute(insert(tags), [{"resource_arn": resource_arn, "key": k, "value": v}
                                for k, v in new_tags.items()])


def delete_tags(conn: Connection, resource_arn: str, keys: Iterable[str] | None = None) -> None:
    query = delete(tags).where(tags.c.resource_arn == resource_arn)
    if keys is not None:
        query = query.where(tags.c.key.in_(list(keys)))
    conn.execute(query)


# --- jobs -------------------------------------------------------------------------------


_INSERT_JOB = insert(jobs)


def insert_job(conn: Connection, *, kind: str, server_id: str | None, payload: Mapping[str, Any],
               step: str, run_at: float, now: float) -> int:
    result = conn.execute(_INSERT_JOB, {
        "kind": kind, "server_id": server_id, "payload": dict(payload), "step": step,
        "status": "pending", "run_at": run_at, "attempts": 0, "created_at": now,
        "updated_at": now})
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _claimable(now: Any) -> Any:
    return and_(jobs.c.status == "pending", jobs.c.run_at <= now,
                or_(jobs.c.lease_until.is_(None), jobs.c.lease_until <= now))


def _claim_statement(dialect: str) -> Any:
    """UPDATE the first due job (by run_at, id) with our lease, RETURNING it: one statement.

    On PostgreSQL the subquery locks the row it picks and skips rows other workers are
    claiming (FOR UPDATE SKIP LOCKED), so concurrent workers take different jobs and never
    wait for each other; a row changed since the statement's snapshot is checked again
    against the conditions once locked. SQLite has one writer at a time."""
    def build() -> Any:
        now: Any = bindparam("now")
        first = select(jobs.c.id).where(_claimable(now)).order_by(jobs.c.run_at, jobs.c.id
                                                                  ).limit(1)
        if dialect == "postgresql":
            first = first.with_for_update(skip_locked=True)
        return (update(jobs).where(jobs.c.id == first.scalar_subquery(), _claimable(now))
                .values(lease_owner=bindparam("owner"), lease_until=bindparam("until"),
                        attempts=jobs.c.attempts + 1)
                .returning(*jobs.c))
    return _built(("claim-job", dialect), build)


def claim_next_job(conn: Connection, *, owner: str, now: float, lease_until: float
                   ) -> RowMapping | None:
    """Take the lease on the first due job and return it; None when no job is due."""
    statement = _claim_statement(conn.dialect.name)
    return conn.execute(statement, {"now": now, "owner": owner, "until": lease_until}
                        ).mappings().first()


_GET_JOB = select(jobs).where(jobs.c.id == bindparam("id"))


def get_job(conn: Connection, job_id: int) -> RowMapping | None:
    return conn.execute(_GET_JOB, {"id": job_id}).mappings().first()


def finish_job_step(conn: Connection, job_id: int, owner: str, now: float, **values: Any) -> bool:
    """Record a step's outcome, only while `owner` still holds the lease."""
    keys = tuple(sorted(values))
    statement = _built(("finish-job-step", keys), lambda: (
        update(jobs).where(jobs.c.id == bindparam("_id"), jobs.c.lease_owner == bindparam("_owner"))
        .values(lease_owner=None, lease_until=None, updated_at=bindparam("_now"),
                **{k: bindparam(k, type_=jobs.c[k].type) for k in keys})))
    result = conn.execute(statement, {**values, "_id": job_id, "_owner": owner, "_now": now})
    return result.rowcount == 1


_NEXT_JOB_TIME = select(func.min(case((jobs.c.lease_until > jobs.c.run_at, jobs.c.lease_until),
                                      else_=jobs.c.run_at))).where(jobs.c.status == "pending")


def next_job_time(conn: Connection) -> float | None:
    """When the next pending job can be claimed: its run_at, or, while a lease on it runs
    (a worker holds it, or held it and died), when that lease ends."""
    return conn.execute(_NEXT_JOB_TIME).scalar_one_or_none()


def release_all_leases(conn: Connection) -> None:
    conn.execute(update(jobs).where(jobs.c.status == "pending")
                 .values(lease_owner=None, lease_until=None))


def pending_jobs_for_server(conn: Connection, server_id: str) -> int:
    return conn.execute(select(func.count()).select_from(jobs).where(
        jobs.c.server_id == server_id, jobs.c.status == "pending")).scalar_one()


# A job is finished once done or failed; until then (waiting, or leased and running) it is
# "pending", and no query below ever touches it.
_FINISHED = jobs.c.status.in_(("done", "failed"))


def finished_jobs_past(conn: Connection, *, finished_before: float, keep_newest: int,
                       limit: int) -> list[int]:
    """Ids of finished jobs beyond the history's bound, oldest first, at most `limit`: those
    finished (last updated) before `finished_before`, and those not among the `keep_newest`
    newest finished jobs (by id)."""
    boundary = conn.execute(select(jobs.c.id).where(_FINISHED).order_by(jobs.c.id.desc())
                            .offset(keep_newest).limit(1)).scalar_one_or_none()
    past = jobs.c.updated_at < finished_before
    if boundary is not None:
        past = or_(past, jobs.c.id <= boundary)
    return list(conn.execute(select(jobs.c.id).where(_FINISHED, past).order_by(jobs.c.id)
                             .limit(limit)).scalars().all())


def delete_finished_jobs(conn: Connection, ids: Sequence[int]) -> int:
    """Delete these jobs if they are finished (a pending one is kept); how many went."""
    if not ids:
        return 0
    result = conn.execute(delete(jobs).where(jobs.c.id.in_(list(ids)), _FINISHED))
    return int(result.rowcount or 0)


def insert_backup(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(insert(backups).values(**values))


def get_backup_by_id(conn: Connection, backup_id: str) -> RowMapping | None:
    return conn.execute(select(backups).where(backups.c.id == backup_id)).mappings().first()


def update_backup(conn: Connection, backup_id: str, **values: Any) -> None:
    conn.execute(update(backups).where(backups.c.id == backup_id).values(**values))


def transition_backup(conn: Connection, backup_id: str, allowed: Iterable[str], **values: Any
                      ) -> bool:
    result = conn.execute(update(backups).where(
        backups.c.id == backup_id, backups.c.status.in_(list(allowed))).values(**values))
    return result.rowcount == 1


def delete_backup_row(conn: Connection, backup_id: str) -> None:
    conn.execute(delete(backups).where(backups.c.id == backup_id))


def list_backups(conn: Connection, account: str, region: str, *, server_name: str | None,
                 before: tuple[float, str] | None, limit: int) -> Sequence[RowMapping]:
    """Backups newest first (optionally of one server name), the page after the cursor."""
    query = select(backups).where(backups.c.account == account, backups.c.region == region)
    if server_name is not None:
        query = query.where(backups.c.server_name == server_name)
    if before is not None:
        at, backup_id = before
        # The first condition is implied by the second; it gives the index a start.
        query = query.where(backups.c.created_at <= at,
                            or_(backups.c.created_at < at,
                                and_(backups.c.created_at == at, backups.c.id < backup_id)))
    query = query.order_by(backups.c.created_at.desc(), backups.c.id.desc()).limit(limit)
    return conn.execute(query).mappings().all()


def automated_backups(conn: Connection, server_id: str) -> Sequence[RowMapping]:
    """A server's automated backups that are kept (OK), newest first."""
    return conn.execute(
        select(backups).where(backups.c.server_id == server_id,
                              backups.c.backup_type == "AUTOMATED", backups.c.status == "OK")
        .order_by(backups.c.created_at.desc(), backups.c.id.desc())).mappings().all()


def server_backups(conn: Connection, server_id: str, backup_type: str | None = None
                   ) -> Sequence[RowMapping]:
    query = select(backups).where(backups.c.server_id == server_id)
    if backup_type is not None:
        query = query.where(backups.c.backup_type == backup_type)
    return conn.execute(query).mappings().all()


# --- node associations ------------------------------------------------------------------


def insert_node_association(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(insert(node_associations).values(**values))


def get_node_association(conn: Connection, token: str) -> RowMapping | None:
    return conn.execute(
        select(node_associations).where(node_associations.c.token == token)).mappings().first()


def update_node_association(conn: Connection, token: str, **values: Any) -> None:
    conn.execute(update(node_associations).where(node_associations.c.token == token)
                 .values(**values))


def delete_node_associations(conn: Connection, server_id: str) -> None:
    conn.execute(delete(node_associations).where(node_associations.c.server_id == server_id))


# --- schedules --------------------------------------------------------------------------


def record_schedule_fire(conn: Connection, server_id: str, kind: str, window_at: float,
                         now: float) -> bool:
    """True if this window had not fired yet (and now has); False if it already fired."""
    fired = conn.execute(select(schedule_fires.c.server_id).where(
        schedule_fires.c.server_id == server_id, schedule_fires.c.kind == kind,
        schedule_fires.c.window_at == window_at)).first()
    if fired is not None:
        return False
    try:
        with conn.begin_nested():  # a savepoint: losing the race must not end the transaction
            conn.execute(insert(schedule_fires).values(server_id=server_id, kind=kind,
                                                       window_at=window_at, fired_at=now))
    except IntegrityError:
        return False
    return True


def delete_schedule_fires(conn: Connection, server_id: str) -> None:
    conn.execute(delete(schedule_fires).where(schedule_fires.c.server_id == server_id))


_SERVER_FINGERPRINT = select(func.count(), func.coalesce(func.sum(servers.c.revision), 0),
                             func.max(servers.c.created_at))


def server_fingerprint(conn: Connection) -> tuple[object, ...]:
    """(count, sum of revisions, newest creation) of the servers table: it changes when a
    server is created, changed (every update bumps its revision) or deleted."""
    return tuple(conn.execute(_SERVER_FINGERPRINT).one())


def schedulable_servers(conn: Connection) -> Sequence[RowMapping]:
    """What the scheduler needs of every server."""
    return conn.execute(select(
        servers.c.id, servers.c.status, servers.c.created_at, servers.c.disable_automated_backup,
        servers.c.preferred_backup_window, servers.c.preferred_maintenance_window,
    )).mappings().all()


def update_job_payload(conn: Connection, job_id: int, payload: Mapping[str, Any]) -> None:
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(payload=dict(payload)))


# A row as the service layer sees it (RowMapping keys are typed loosely by SQLAlchemy).
Row = Mapping[Any, Any]


def all_servers(conn: Connection) -> Sequence[RowMapping]:
    return conn.execute(select(servers).order_by(servers.c.created_at)).mappings().all()


def event_prune_boundary(conn: Connection, server_id: str, keep: int
                         ) -> tuple[float, int] | None:
    """(created_at, id) of the newest event beyond a server's newest `keep`, if any."""
    row = conn.execute(
        select(events.c.created_at, events.c.id).where(events.c.server_id == server_id)
        .order_by(events.c.created_at.desc(), events.c.id.desc()).offset(keep).limit(1)
    ).first()
    return None if row is None else (row[0], row[1])


def delete_events_through(conn: Connection, server_id: str, boundary: tuple[float, int]
                          ) -> int:
    """Delete a server's events up to and including `boundary`; returns how many went."""
    result = conn.execute(delete(events).where(events.c.server_id == server_id,
                                               _through(boundary)))
    return int(result.rowcount or 0)


def prune_events(conn: Connection, server_id: str, keep: int) -> int:
    """Delete a server's events beyond the newest `keep`; returns how many went."""
    boundary = event_prune_boundary(conn, server_id, keep)
    return 0 if boundary is None else delete_events_through(conn, server_id, boundary)


def server_ids(conn: Connection) -> list[str]:
    return list(conn.execute(select(servers.c.id)).scalars().all())


# --- credential pool --------------------------------------------------------------------


_ADD_POOLED = insert(credential_pool)
_POOL_COUNTS = select(credential_pool.c.kind, func.count()).group_by(credential_pool.c.kind)


def add_pooled_credential(conn: Connection, *, kind: str, secret_enc: str, public: str | None,
                          now: float) -> None:
    conn.execute(_ADD_POOLED, {"kind": kind, "secret_enc": secret_enc, "public": public,
                               "created_at": now})


def _take_statement(dialect: str) -> Any:
    def build() -> Any:
        oldest = (select(credential_pool.c.id).where(credential_pool.c.kind == bindparam("kind"))
                  .order_by(credential_pool.c.id).limit(bindparam("limit")))
        if dialect == "postgresql":
            oldest = oldest.with_for_update(skip_locked=True)
        return (delete(credential_pool)
                .where(credential_pool.c.id.in_(oldest.scalar_subquery()))
                .returning(credential_pool.c.secret_enc, credential_pool.c.public))
    return _built(("take-pooled", dialect), build)


def take_pooled_credentials(conn: Connection, kind: str, limit: int = 1
                            ) -> Sequence[RowMapping]:
    """Remove the oldest `limit` entries of `kind` (fewer if there are not so many) and return
    them.

    On PostgreSQL an entry another transaction is taking is skipped, not waited for, so
    concurrent takers never get the same entry and never queue behind each other.
    """
    return conn.execute(_take_statement(conn.dialect.name), {"kind": kind, "limit": limit}
                        ).mappings().all()


def pooled_credential_counts(conn: Connection) -> dict[str, int]:
    return {kind: int(n) for kind, n in conn.execute(_POOL_COUNTS).all()}
