"""The faults and fault_holds tables (migration 0008) and their queries: faults armed through
/_cmhost/faults, and the servers a fault holds in a status until a given time."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    RowMapping,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from cmhost.storage.tables import metadata, servers

# One row per armed fault; `remaining` None means no count (it fires until it expires).
faults = Table(
    "faults",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),  # fail_job | server_status | error | latency
    Column("job", String(32), nullable=True),  # fail_job: which job
    Column("operation", String(64), nullable=True),  # error, latency: which operation
    Column("account", String(12), nullable=True),  # None: every account
    Column("server_name", Text, nullable=True),  # a glob; None: every server
    Column("remaining", Integer, nullable=True),
    Column("probability", Float, nullable=False),
    Column("fired", Integer, nullable=False),
    Column("settings", JSON, nullable=False),  # what the kind does (reason, code, seconds...)
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

# A server a server_status fault put in its status, and what it goes back to at `until`. The
# row stays once the hold has ended (`ended`), until its fault is deleted: a fault holds each
# server once.
fault_holds = Table(
    "fault_holds",
    metadata,
    Column("fault_id", String(40), primary_key=True),
    Column("server_id", String(36), primary_key=True),
    Column("status", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("previous_status", String(32), nullable=False),
    Column("previous_reason", Text, nullable=True),
    Column("started_at", Float, nullable=False),
    Column("until", Float, nullable=False),
    Column("ended", Boolean, nullable=False),
    Index("ix_fault_holds_server", "server_id", "ended"),
    Index("ix_fault_holds_until", "ended", "until"),
)


def insert_fault(conn: Connection, **values: Any) -> None:
    conn.execute(insert(faults).values(**values))


def all_faults(conn: Connection) -> Sequence[RowMapping]:
    return conn.execute(select(faults).order_by(faults.c.created_at, faults.c.id)
                        ).mappings().all()


def get_fault(conn: Connection, fault_id: str) -> RowMapping | None:
    return conn.execute(select(faults).where(faults.c.id == fault_id)).mappings().first()


def delete_fault(conn: Connection, fault_id: str) -> bool:
    return conn.execute(delete(faults).where(faults.c.id == fault_id)).rowcount == 1


def delete_all_faults(conn: Connection) -> int:
    return conn.execute(delete(faults)).rowcount


def consume_fault(conn: Connection, fault_id: str, now: float) -> bool:
    """Count one use of the fault, if it is still armed (not expired, count not used up):
    a compare-and-set, so two processes never both take its last use."""
    result = conn.execute(
        update(faults)
        .where(faults.c.id == fault_id, faults.c.expires_at > now,
               or_(faults.c.remaining.is_(None), faults.c.remaining > 0))
        .values(remaining=faults.c.remaining - 1, fired=faults.c.fired + 1))
    return result.rowcount == 1


def purge_faults(conn: Connection, now: float) -> int:
    """Delete the faults that expired or are used up and hold no server any more (with the
    record of the holds they had)."""
    holding = select(fault_holds.c.fault_id).where(fault_holds.c.ended.is_(False))
    gone = select(faults.c.id).where(
        or_(faults.c.expires_at <= now, faults.c.remaining == 0), faults.c.id.not_in(holding))
    ids = list(conn.execute(gone).scalars())
    if ids:
        conn.execute(delete(fault_holds).where(fault_holds.c.fault_id.in_(ids)))
        conn.execute(delete(faults).where(faults.c.id.in_(ids)))
    return len(ids)


def delete_holds_of(conn: Connection, fault_ids: Iterable[str] | None) -> None:
    """Forget the holds of these faults (None: of all), ended or not."""
    query = delete(fault_holds)
    if fault_ids is not None:
        query = query.where(fault_holds.c.fault_id.in_(list(fault_ids)))
    conn.execute(query)


# --- holds ------------------------------------------------------------------------------


def insert_hold(conn: Connection, **values: Any) -> None:
    conn.execute(insert(fault_holds).values(ended=False, **values))


_ACTIVE = fault_holds.c.ended.is_(False)


def active_hold(conn: Connection, server_id: str) -> RowMapping | None:
    return conn.execute(select(fault_holds).where(fault_holds.c.server_id == server_id, _ACTIVE)
                        ).mappings().first()


def active_holds(conn: Connection, fault_ids: Iterable[str] | None = None
                 ) -> Sequence[RowMapping]:
    """The holds that have not ended (of these faults, if given), soonest end first."""
    query = select(fault_holds).where(_ACTIVE)
    if fault_ids is not None:
        query = query.where(fault_holds.c.fault_id.in_(list(fault_ids)))
    return conn.execute(query.order_by(fault_holds.c.until)).mappings().all()


def shown_holds(conn: Connection, fault_ids: Iterable[str]) -> Sequence[RowMapping]:
    """The holds of these faults that have not ended, with the held server's name."""
    return conn.execute(
        select(fault_holds, servers.c.name.label("server_name"))
        .join(servers, servers.c.id == fault_holds.c.server_id, isouter=True)
        .where(fault_holds.c.fault_id.in_(list(fault_ids)), _ACTIVE)
        .order_by(fault_holds.c.until)).mappings().all()


def end_hold(conn: Connection, fault_id: str, server_id: str) -> bool:
    """Mark the hold ended; False if it had ended already (elsewhere)."""
    return conn.execute(update(fault_holds).where(
        fault_holds.c.fault_id == fault_id, fault_holds.c.server_id == server_id, _ACTIVE)
        .values(ended=True)).rowcount == 1


def next_hold_end(conn: Connection) -> float | None:
    value = conn.execute(select(func.min(fault_holds.c.until)).where(_ACTIVE)).scalar()
    return None if value is None else float(value)


def holdable_servers(conn: Connection, fault_id: str, statuses: Sequence[str],
                     account: str | None) -> Sequence[RowMapping]:
    """Servers in `statuses` (of `account`, if given), by name, that no fault holds now and
    this one never held."""
    held = select(fault_holds.c.server_id).where(
        or_(_ACTIVE, fault_holds.c.fault_id == fault_id))
    query = select(servers.c.id, servers.c.account, servers.c.name, servers.c.status,
                   servers.c.status_reason).where(
        servers.c.status.in_(list(statuses)), servers.c.id.not_in(held))
    if account is not None:
        query = query.where(servers.c.account == account)
    return conn.execute(query.order_by(servers.c.name, servers.c.id)).mappings().all()


def holds_taken_over(conn: Connection) -> Sequence[RowMapping]:
    """Holds not ended whose server is gone or no longer in the held status (an operation
    took it over)."""
    return conn.execute(
        select(fault_holds.c.fault_id, fault_holds.c.server_id)
        .join(servers, servers.c.id == fault_holds.c.server_id, isouter=True)
        .where(_ACTIVE, or_(servers.c.id.is_(None),
                            servers.c.status != fault_holds.c.status))).mappings().all()
