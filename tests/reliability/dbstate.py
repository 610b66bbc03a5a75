"""A cmhost database seen from outside, for the `db upgrade` crash harness: its schema
revision, its schema and its rows, read without cmhost's code; migrations run through
alembic by hand; copies of a database (a file, or a PostgreSQL template)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any, Self

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from cmhost.storage.db import MIGRATIONS
from tests import support

# A statement of a migration (DDL, a data change, the version stamp) goes through this.
EXEC_POINT = "alembic.ddl.impl:DefaultImpl._exec"
COMMIT_POINT = "sqlalchemy.engine.default:DefaultDialect.do_commit"


def revisions() -> list[str]:
    """Every migration, oldest first."""
    script = ScriptDirectory(str(MIGRATIONS))
    return [s.revision for s in reversed(list(script.walk_revisions()))]


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate_to(url: str, revision: str) -> None:
    """Upgrade or downgrade `url` to `revision` through alembic (env.py's own engine)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    current = Database(url).revision()
    order = revisions()
    at = order.index(current) if current else -1
    if order.index(revision) >= at:
        command.upgrade(alembic_config(url), revision)
    else:
        command.downgrade(alembic_config(url), revision)


def count_exec_calls(url: str) -> int:
    """How many statements alembic executes to bring `url` to the newest revision."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    from alembic.ddl.impl import DefaultImpl

    original = DefaultImpl._exec
    calls = [0]

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(self, *args, **kwargs)

    DefaultImpl._exec = counting  # type: ignore[method-assign]
    try:
        command.upgrade(alembic_config(url), "head")
    finally:
        DefaultImpl._exec = original  # type: ignore[method-assign]
    return calls[0]


class Database:
    """Plain reads of one database (SQLite through sqlite3, which recovers a killed
    process's WAL and, closing last, removes it; PostgreSQL through psycopg). Within `with`,
    the reads share one connection, closed at the end (with `snapshot`, on PostgreSQL, they
    see the database as it was at the first); else each read has its own."""

    def __init__(self, url: str, *, snapshot: bool = False) -> None:
        self.url = url
        self.snapshot = snapshot
        self.is_sqlite = url.startswith("sqlite:///")
        self.path = Path(url.removeprefix("sqlite:///")) if self.is_sqlite else None
        self._conn: Any = None

    def __enter__(self) -> Self:
        self._conn = self._connect()
        if self.snapshot and not self.is_sqlite:
            import psycopg

            self._conn.autocommit = False
            self._conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        return self

    def __exit__(self, *_: object) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def _connect(self) -> Any:
        if self.path is not None:
            if not self.path.exists():
                return None  # never made: not made by a read either
            return sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, timeout=30)
        import psycopg

        url = make_url(self.url)
        return psycopg.connect(host=url.host, port=url.port, user=url.username,
                               password=url.password, dbname=url.database, autocommit=True)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        conn = self._conn if self._conn is not None else self._connect()
        if conn is None:
            return []
        try:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
        finally:
            if conn is not self._conn:
                conn.close()

    def tables(self) -> list[str]:
        if self.is_sqlite:
            sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        else:
            sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        return sorted(r[0] for r in self.query(sql))

    def revision(self) -> str | None:
        if "alembic_version" not in self.tables():
            return None
        rows = self.query("SELECT version_num FROM alembic_version")
        assert len(rows) <= 1, rows
        return str(rows[0][0]) if rows else None

    def schema(self) -> list[tuple[Any, ...]]:
        """Tables, columns, indexes and triggers, as a sorted list to compare."""
        if self.is_sqlite:
            # Without quotes: a table that batch mode copied and renamed is written
            # CREATE TABLE "servers", the one first made CREATE TABLE servers.
            return sorted(((kind, name, table, (sql or "").replace('"', ""))
                           for kind, name, table, sql in self.query(
                               "SELECT type, name, tbl_name, sql FROM sqlite_master "
                               "WHERE name NOT LIKE 'sqlite_%'")), key=repr)
        return sorted(
            self.query("SELECT 'column', table_name, column_name, data_type, is_nullable, "
                       "column_default, character_maximum_length FROM "
                       "information_schema.columns WHERE table_schema = 'public'")
            + self.query("SELECT 'index', tablename, indexname, indexdef FROM pg_indexes "
                         "WHERE schemaname = 'public'")
            + self.query("SELECT 'trigger', tgrelid::regclass::text, tgname FROM pg_trigger "
                         "WHERE NOT tgisinternal")
            + self.query("SELECT 'function', proname FROM pg_proc JOIN pg_namespace n ON "
                         "n.oid = pronamespace WHERE nspname = 'public'"), key=repr)

    def rows(self, *, keys_only: tuple[str, ...] = ()) -> dict[str, list[str]]:
        """Every row of every table, sorted (of the tables in `keys_only`, the first column
        only: values that differ from one database to the next, as the master key check)."""
        out = {}
        for table in self.tables():
            rows = self.query(f'SELECT * FROM "{table}"')
            out[table] = sorted(repr(r[:1] if table in keys_only else r) for r in rows)
        return out

    def checkpoint(self) -> None:
        """Everything in the WAL written to the database file, and the WAL emptied."""
        busy = self.query("PRAGMA wal_checkpoint(TRUNCATE)")[0][0]
        assert busy == 0, f"the WAL of {self.url} could not be emptied"

    def integrity(self) -> str:
        return "ok" if not self.is_sqlite else str(self.query("PRAGMA integrity_check")[0][0])


def copy_database(template_url: str, template_dir: Path, workdir: Path) -> str:
    """A copy of a stopped cmhost's data directory and database under `workdir`; returns the
    copy's URL."""
    if template_url.startswith("sqlite:///"):
        Database(template_url).checkpoint()
    # Without the WAL (empty now) and the shared memory: the copy is as if closed cleanly.
    shutil.copytree(template_dir / "data", workdir / "data",
                    ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    url = support.fresh_database_url(workdir)
    if url.startswith("sqlite:///"):
        return url
    name = url.rsplit("/", 1)[1]
    template = template_url.rsplit("/", 1)[1]
    _postgres_admin(f'DROP DATABASE "{name}"', f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return url


def _postgres_admin(*statements: str) -> None:
    engine = create_engine(str(support.POSTGRES_URL), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for sql in statements:
                conn.execute(text(sql))
    finally:
        engine.dispose()


class PostgresWatch:
    """Tells when a process has connected to a PostgreSQL database (pg_stat_activity)."""

    def __init__(self) -> None:
        self.engine = create_engine(str(support.POSTGRES_URL), poolclass=NullPool)
        self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def connected(self, url: str) -> bool:
        name = url.rsplit("/", 1)[1]
        return self.conn.execute(
            text("SELECT 1 FROM pg_stat_activity WHERE datname = :name "
                 "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"),
            {"name": name}).first() is not None

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()
