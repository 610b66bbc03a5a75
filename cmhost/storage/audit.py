"""The audit_events table (migration 0010) and its queries: CloudTrail records of the calls made
to an account, with the columns LookupEvents filters on, and their delivery to the blob store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
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
    insert,
    or_,
    select,
    text,
    update,
)

from cmhost.storage.tables import metadata

# Every call is a row (reads too), so a row costs as little as it can: three B-trees, each
# appended to (the table by seq, the lookup index by time, the pending index while a record
# waits for delivery: it is partial, and a delivered record leaves it). No index on
# event_id: a record is found by seq, and LookupEvents' EventId within an account.
audit_events = Table(
    "audit_events",
    metadata,
    # 64 bits (every call is a row); SQLite needs INTEGER for its rowid to number them.
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("event_id", String(36), nullable=False),
    Column("account", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("event_time", Float, nullable=False),
    Column("event_source", String(64), nullable=False),
    Column("event_name", String(128), nullable=False),
    Column("user_name", String(64), nullable=True),  # LookupEvents' Username ("root" for root)
    Column("access_key_id", String(128), nullable=True),
    Column("read_only", Boolean, nullable=False),
    Column("resource_type", String(64), nullable=True),
    Column("resource_name", Text, nullable=True),
    # The rest of the CloudTrail record (service/audit.py's record_of makes it).
    Column("principal_arn", Text, nullable=False),
    Column("user_id", String(32), nullable=True),
    Column("source_ip", Text, nullable=False),
    Column("user_agent", Text, nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("error_code", String(128), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("request_parameters", Text, nullable=True),  # JSON
    Column("response_elements", Text, nullable=True),  # JSON
    Column("detail", Text, nullable=True),  # JSON: ARNs, console, additional data, invokedBy
    # False until the call's outcome (response or error) is in the record: a record written
    # in the transaction of the change it describes gets its outcome a moment later.
    Column("complete", Boolean, nullable=False),
    Column("delivery_key", Text, nullable=True),  # the file it was (being) delivered in
    Column("claimed_at", Float, nullable=True),
    Column("delivered_at", Float, nullable=True),
    Index("ix_audit_events_account_time", "account", "region", "event_time"),
    Index("ix_audit_events_pending", "delivery_key",
          sqlite_where=text("delivered_at IS NULL"),
          postgresql_where=text("delivered_at IS NULL")),
)
_PENDING = audit_events.c.delivered_at.is_(None)  # the partial index's condition


def insert_event(conn: Connection, row: Mapping[str, Any]) -> int:
    """One record; its seq."""
    key = conn.execute(insert(audit_events).values(**row)).inserted_primary_key
    assert key is not None
    return int(key[0])


_COLUMNS = tuple(c.name for c in audit_events.columns if c.name != "seq")
_INSERTS: dict[str, str] = {}


def insert_events(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Many records at once, on the driver: SQLAlchemy's per-row parameter processing costs
    as much as the insert itself (every call is a record)."""
    if not rows:
        return
    style = conn.dialect.paramstyle
    sql = _INSERTS.get(style)
    if sql is None:
        mark = "?" if style == "qmark" else "%s"
        sql = _INSERTS[style] = (f"INSERT INTO audit_events ({', '.join(_COLUMNS)}) "
                                 f"VALUES ({', '.join([mark] * len(_COLUMNS))})")
    conn.exec_driver_sql(sql, [tuple(r.get(c) for c in _COLUMNS) for r in rows])


def complete_event(conn: Connection, seq: int, outcome: Mapping[str, Any]) -> None:
    conn.execute(update(audit_events).where(audit_events.c.seq == seq)
                 .values(**outcome, complete=True))


_FILTERS = {"EventId": audit_events.c.event_id, "EventName": audit_events.c.event_name,
            "Username": audit_events.c.user_name, "AccessKeyId": audit_events.c.access_key_id,
            "EventSource": audit_events.c.event_source,
            "ResourceType": audit_events.c.resource_type,
            "ResourceName": audit_events.c.resource_name}


def lookup(conn: Connection, *, account: str | None, region: str | None,
           attributes: Sequence[tuple[str, str]] = (), start: float | None = None,
           end: float | None = None, after: tuple[float, int] | None = None,
           limit: int = 50) -> Sequence[RowMapping]:
    """Records newest first: (event_time, seq) below `after`, matching every attribute
    (LookupEvents' keys; ReadOnly takes "true"/"false")."""
    query = select(audit_events)
    if account is not None:
        query = query.where(audit_events.c.account == account)
    if region is not None:
        query = query.where(audit_events.c.region == region)
    for key, value in attributes:
        if key == "ReadOnly":
            query = query.where(audit_events.c.read_only.is_(value.lower() == "true"))
        else:
            query = query.where(_FILTERS[key] == value)
    if start is not None:
        query = query.where(audit_events.c.event_time >= start)
    if end is not None:
        query = query.where(audit_events.c.event_time <= end)
    if after is not None:
        at, seq = after
        query = query.where(or_(audit_events.c.event_time < at,
                                (audit_events.c.event_time == at) & (audit_events.c.seq < seq)))
    query = query.order_by(audit_events.c.event_time.desc(), audit_events.c.seq.desc())
    return conn.execute(query.limit(limit)).mappings().all()


def undelivered(conn: Connection, *, complete_before: float, incomplete_before: float,
                limit: int) -> Sequence[RowMapping]:
    """Records no delivery claimed yet: complete ones, and those a crash left incomplete
    (written at least `incomplete_before` ago on the records' clock)."""
    return conn.execute(select(audit_events.c.seq, audit_events.c.account,
                               audit_events.c.region).where(
        _PENDING, audit_events.c.delivery_key.is_(None),
        or_(audit_events.c.complete.is_(True) & (audit_events.c.event_time <= complete_before),
            audit_events.c.event_time <= incomplete_before),
    ).order_by(audit_events.c.seq).limit(limit)).mappings().all()


def claim(conn: Connection, seqs: Sequence[int], key: str, now: float) -> int:
    """Claim records for a delivery file; how many were still free."""
    return conn.execute(update(audit_events).where(
        audit_events.c.seq.in_(list(seqs)), audit_events.c.delivery_key.is_(None), _PENDING
    ).values(delivery_key=key, claimed_at=now)).rowcount


def claimed_records(conn: Connection, key: str) -> Sequence[RowMapping]:
    return conn.execute(select(audit_events).where(
        audit_events.c.delivery_key == key, _PENDING).order_by(audit_events.c.seq)
    ).mappings().all()


def stale_claims(conn: Connection, claimed_before: float) -> list[str]:
    """Delivery files claimed but never marked delivered (a crash in between)."""
    return [r[0] for r in conn.execute(select(audit_events.c.delivery_key).where(
        audit_events.c.delivery_key.is_not(None), _PENDING,
        audit_events.c.claimed_at <= claimed_before).distinct())]


def mark_delivered(conn: Connection, key: str, now: float) -> None:
    conn.execute(update(audit_events).where(audit_events.c.delivery_key == key, _PENDING)
                 .values(delivered_at=now))


def delete_older_than(conn: Connection, before: float, limit: int) -> int:
    """Delete, among the `limit` oldest records by seq (about the order of their times:
    there is no index on time alone), those older than `before`; how many."""
    oldest = select(audit_events.c.seq).order_by(audit_events.c.seq).limit(limit).subquery()
    return conn.execute(delete(audit_events).where(
        audit_events.c.seq.in_(select(oldest.c.seq)),
        audit_events.c.event_time < before)).rowcount
