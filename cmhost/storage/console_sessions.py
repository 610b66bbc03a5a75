"""The console_sessions table (migration 0009) and its queries: server-side sessions of the
account console and of the servers' dashboards, found by a hash of the session id."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Float,
    Index,
    RowMapping,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)

from cmhost.storage.tables import metadata

# The session id itself is never stored: a row is found by its SHA-256, so whoever reads the
# database (or a backup of it) holds no usable session.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # console | dashboard
    Column("account", String(12), nullable=True),
    Column("region", String(32), nullable=True),
    Column("principal_arn", Text, nullable=True),
    Column("access_key_id", String(128), nullable=True),
    Column("server_id", String(36), nullable=True),  # dashboard: the one server it opens
    # dashboard: SHA-256 of the admin password hash signed in with; a reset changes it.
    Column("credential_check", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Index("ix_console_sessions_last_seen", "last_seen"),
)


def insert_session(conn: Connection, **values: Any) -> None:
    conn.execute(insert(console_sessions).values(**values))


def get_session(conn: Connection, id_hash: str) -> RowMapping | None:
    return conn.execute(select(console_sessions).where(
        console_sessions.c.id_hash == id_hash)).mappings().first()


def update_session(conn: Connection, id_hash: str, **values: Any) -> None:
    conn.execute(update(console_sessions).where(console_sessions.c.id_hash == id_hash)
                 .values(**values))


def delete_session(conn: Connection, id_hash: str) -> None:
    conn.execute(delete(console_sessions).where(console_sessions.c.id_hash == id_hash))


def delete_sessions_idle_since(conn: Connection, before: float) -> int:
    return conn.execute(delete(console_sessions).where(
        console_sessions.c.last_seen < before)).rowcount
