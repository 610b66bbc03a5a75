"""Schema migrations, each in one transaction with its version stamp: a crash mid-upgrade
leaves the database at the last migration that committed, and the next upgrade goes on
from there.

pysqlite (its legacy transaction control, the default) sends no BEGIN before DDL, so on a plain
SQLite engine every CREATE and ALTER commits by itself: a SIGKILL between two of them left
tables without their version stamp ("table access_keys already exists" at the next start).
Here SQLite connections get their BEGIN from SQLAlchemy (db._sqlite_engine), so DDL, the
"move and copy" of batch migrations and the stamp commit together or not at all.
PostgreSQL's DDL is transactional already. cmhost migrates through its Database (which
hands over its SQLite writer, or an engine of its own on a server); alembic run by hand
gets `standalone_engine`.

Every migration's transaction first takes the database's write lock (BEGIN IMMEDIATE on
SQLite, an advisory lock on PostgreSQL) and only then reads the version: two processes
upgrading at once take turns, and the second finds the first one's work done.
"""

from __future__ import annotations

import logging
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.pool import NullPool

from cmhost.storage.db import MIGRATIONS
from cmhost.storage.tables import metadata

# pg_advisory_xact_lock key of migrations: "cmhost" as an integer, any constant would do.
_PG_LOCK = 0x636D686F7374

log = logging.getLogger("cmhost.storage.migrate")


class MigrationError(ValueError):
    """The database cannot be brought to this cmhost's schema (said in one line)."""


def standalone_engine(url: str) -> Engine:
    """An engine for alembic run by hand on `url`, outside cmhost: on SQLite its connections
    get their BEGIN (IMMEDIATE) from SQLAlchemy, so DDL is in the transaction, as cmhost's."""
    if not url.startswith("sqlite"):
        return create_engine(url, poolclass=NullPool)
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # no BEGIN of pysqlite's own

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def lock(conn: Connection) -> None:
    """Serialize migrations: the rest of the transaction runs alone (SQLite's BEGIN
    IMMEDIATE took its write lock already)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})


def upgrade(engine: Engine, target: str = "head") -> list[str]:
    """Apply the migrations up to `target` (idempotent), one transaction each; returns the
    revisions applied. `engine`'s transactions must hold DDL too (on SQLite: a BEGIN sent
    by SQLAlchemy, as db._sqlite_engine and standalone_engine do)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    order = [s.revision for s in reversed(list(script.walk_revisions()))]
    goal = order[-1] if target == "head" else target
    if goal not in order:
        raise MigrationError(f"no migration {goal!r}")
    applied: list[str] = []
    with engine.connect() as conn:
        while True:
            with conn.begin():
                lock(conn)
                current = MigrationContext.configure(conn).get_current_revision()
                step = _next(order, current, goal)
                if step is None:
                    return applied
                if current is None:
                    _clear_half_created(conn)
                cfg.attributes["connection"] = conn  # env.py runs in this transaction
                command.upgrade(cfg, step)
            applied.append(step)
            log.info("database migrated to %s", step)


def _next(order: list[str], current: str | None, goal: str) -> str | None:
    """The migration after `current` on the way to `goal`, or None when there is none."""
    if current is not None and current not in order:
        raise MigrationError(
            f"the database is at schema revision {current}, which this cmhost does not know "
            "(a newer cmhost migrated it): run that version or a newer one")
    at = order.index(current) if current is not None else -1
    return order[at + 1] if at < order.index(goal) else None


def _clear_half_created(conn: Connection) -> None:
    """A database without a version stamp that holds some of cmhost's tables, all empty, is
    one whose first upgrade an older cmhost left half done (it ran DDL outside transactions):
    drop them and start again. With rows in them, say so instead of guessing."""
    known = set(metadata.tables)
    present = [name for name in inspect(conn).get_table_names()
               if name in known or name.startswith("_alembic_tmp_")]
    if not present:
        return
    filled = [name for name in present
              if conn.execute(text(f'SELECT 1 FROM "{name}" LIMIT 1')).first() is not None]
    if filled:
        raise MigrationError(
            f"the database has cmhost tables with rows ({', '.join(sorted(filled))}) but no "
            "schema revision (alembic_version): it was not made by `cmhost db upgrade`; "
            "restore it from a backup, or point cmhost at an empty database")
    for name in present:
        conn.execute(text(f'DROP TABLE "{name}"'))
    log.warning("the database's first upgrade had been interrupted: dropped its empty "
                "tables (%s) and started again", ", ".join(sorted(present)))
