"""The database handle: engines, transactions, and schema migrations with Alembic."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Select, create_engine, event, exc, inspect, make_url
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.compiler import SQLCompiler

from cmhost.storage.changes import LocalChanges, ServerChanges
from cmhost.storage.dbfile import DatabaseNotWritable, SqliteFile
from cmhost.storage.outage import Outage

MIGRATIONS = Path(__file__).parent / "migrations"
# A hot-path statement compiled once: SQL text, positional names (or None), literal values.
_Plan = tuple[str, tuple[str, ...] | None, dict[str, Any]]
# Cached reads kept per process (see Database.fetch); all dropped when there are more.
MAX_CACHED_READS = 10_000


# PostgreSQL SQLSTATEs a retry may get past: connection exceptions, insufficient resources;
# serialization failure, deadlock, lock not available, query canceled, admin/crash shutdown,
# cannot connect now, read-only transaction (a standby after a failover).
_TRANSIENT_CLASSES = ("08", "53")
_TRANSIENT_STATES = frozenset({"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03",
                               "25006"})
# ... of which an outage of the server (not contention that passes by itself): shut down,
# cannot connect now, read-only.
_OUTAGE_STATES = frozenset({"57P01", "57P02", "57P03", "25006"})
# ... of which a connection must be dropped: read-only transaction, in a session that stays
# read-only (default_transaction_read_only set on the database, a standby) once it is not.
_SESSION_STATES = frozenset({"25006"})
# SQLite primary result codes of a storage fault: the file cannot be written (READONLY: a
# connection that opened it while it was read-only stays so), read or written (IOERR), grown
# (FULL) or opened (CANTOPEN). The connection is dropped; a retry may pass once the disk is.
_SQLITE_STORAGE_FAULTS = frozenset({8, 10, 13, 14})
# ... of a damaged database file: CORRUPT ("database disk image is malformed"), NOTADB ("file
# is not a database").
_SQLITE_DAMAGE = frozenset({11, 26})
# PostgreSQL SQLSTATEs that keep a start from connecting at all: no such database, the
# credentials refused (besides the connection exceptions of _TRANSIENT_CLASSES).
_CANNOT_CONNECT = ("3D", "28")


def sqlite_storage_fault(error: BaseException) -> bool:
    """Whether `error` is SQLite's for a disk it cannot read, write, grow or open."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _SQLITE_STORAGE_FAULTS


def _server_session_fault(error: BaseException) -> bool:
    return getattr(error, "sqlstate", None) in _SESSION_STATES


def _drop_connection_on(engine: Engine, fault: Callable[[BaseException], bool]) -> None:
    """Make a connection that met `fault` count as disconnected: SQLAlchemy discards it (and
    the pool's other connections, opened before) instead of handing it out again."""
    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        if fault(context.original_exception):
            context.is_disconnect = True


class WouldBlock(Exception):
    """Raised inside `Database.cached_only` by a read that would have to ask the database."""


class DatabaseUnusable(ValueError):
    """The database cannot be opened at a start: damaged, or out of reach (said in one line)."""


def _sqlite_engine(url: str, *, immediate: bool, file: SqliteFile | None = None) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    _drop_connection_on(engine, sqlite_storage_fault)

    @event.listens_for(engine, "do_connect")
    def _on_do_connect(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
                       ) -> None:
        if file is None:
            return
        if file.known:  # a database that vanished must not come back empty: never create it
            cargs[0] = file.uri()
            cparams["uri"] = True
        else:
            file.create()  # 0600, before SQLite makes it 0644

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is deferred).
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that later upgrades
        # can fail with SQLITE_BUSY without waiting, which would turn races into errors.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


# A pooled connection idle longer than this is pinged before use (see _server_engine).
PING_AFTER_IDLE_SECONDS = 2.0


def _server_engine(url: str, **options: Any) -> Engine:
    """A pooled engine for a database server (PostgreSQL) that pings a connection before use
    only when it sat idle in the pool for over PING_AFTER_IDLE_SECONDS.

    `pool_pre_ping` would ping at every checkout: a round trip per transaction, a quarter of
    those a short transaction makes. A connection used a moment ago is as good as a ping;
    one that sat idle (the server may have restarted, a firewall may have dropped it) is
    pinged and, if dead, replaced before the transaction starts. A disconnect found in use
    invalidates every pooled connection at once (SQLAlchemy's behaviour), so a restart costs
    at most the transactions already under way.
    """
    engine = create_engine(url, **{"pool_size": 10, "max_overflow": 20, **options})
    _drop_connection_on(engine, _server_session_fault)

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error:
            alive = False
        if not alive:
            raise exc.DisconnectionError("connection was dropped while idle")  # pool retries

    return engine


class Database:
    """One database, SQLite or any SQLAlchemy URL. `write()` is a transaction; `statement()`
    is for a single write statement and `read()` for reads only (transactions on SQLite,
    autocommit on a database server)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._compiled: dict[int, _Plan] = {}
        self._local = threading.local()
        self._statements: list[Select[Any]] = []
        self._fast: Engine | None = None
        # The SQLite database file, when the database is one (not in memory).
        self.file: SqliteFile | None = None
        # Episodes of unavailability, for the log; and a count of them that this thread's
        # kept connection (see _sqlite_raw) compares with its own: one opened during an
        # episode may be read-only or broken, and is replaced when the episode ends.
        self._outage = Outage()
        self._epoch = 0
        if self.is_sqlite:
            path = make_url(url).database
            if path and path != ":memory:" and not path.startswith("file:"):
                self.file = SqliteFile(Path(path))
                self.file.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._writer = _sqlite_engine(url, immediate=True, file=self.file)
            self._reader = _sqlite_engine(url, immediate=False, file=self.file)
        else:
            self._writer = _server_engine(url)
            # Reads run in autocommit: at READ COMMITTED every statement of a transaction
            # takes its own snapshot anyway, so BEGIN and COMMIT (two round trips) buy a
            # read nothing. A pool of its own, whose connections stay in autocommit: one
            # pool for both would switch the isolation level at every checkout and back at
            # every checkin, a third of what a short read costs the client. Same cap of
            # connections as the writer's, fewer kept idle.
            self._reader = _server_engine(url, isolation_level="AUTOCOMMIT", pool_size=5,
                                          max_overflow=25)
            # `fetch` keeps one connection per thread, outside the pool.
            self._fast = create_engine(url, poolclass=NullPool)
        self._single = self._writer if self.is_sqlite else self._reader
        # Run in every write() transaction once its body is done, just before the commit
        # (the audit trail inserts the record of the change there); what a hook returns is
        # called once the transaction committed.
        self.commit_hooks: list[Callable[[Connection], Callable[[], None] | None]] = []
        # Cached reads of the servers table, by statement and parameters.
        self._cache: dict[tuple[Any, ...], tuple[Any, list[tuple[Any, ...]]]] = {}
        self._serials = itertools.count()
        self._changes: LocalChanges | ServerChanges
        if self._fast is None:
            self._changes = LocalChanges(self._sqlite_version)
        else:
            self._changes = ServerChanges(self._listener_connection)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        self._may_block()
        try:
            if self.file is not None:
                self.file.check()
            with self._writer.begin() as conn:
                yield conn
                done = [d for hook in self.commit_hooks if (d := hook(conn)) is not None]
        except Exception as error:
            self._failed(error, writing=True)
            raise
        self._committed()
        for committed in done:
            committed()

    @contextmanager
    def statement(self) -> Iterator[Connection]:
        """For one write statement that is atomic by itself (an INSERT, a DELETE or UPDATE
        … RETURNING): on a database server it runs in autocommit, without the round trips of
        BEGIN and COMMIT; on SQLite it is a write transaction like `write()`."""
        self._may_block()
        try:
            if self.file is not None:
                self.file.check()
            with self._single.begin() as conn:
                yield conn
        except Exception as error:
            self._failed(error, writing=True)
            raise
        self._committed()

    def check_writable(self, probe: Callable[[Connection], None], *,
                       wait_seconds: float = 2.0) -> None:
        """Raise what keeps the database from taking writes now (health's question).

        Outside an outage it writes nothing (a probe must not move every process's cached
        listings, nor take the write lock): SQLite's file check (read-only, deleted,
        replaced), PostgreSQL's transaction_read_only. A full disk or a lost server shows as
        the outage that a failed write opens. In an outage, `probe` (an upsert) is written
        with lock waits of at most `wait_seconds`: that is how an episode nobody else writes
        through ends once the database is back."""
        self._may_block()
        if not self._outage.active:
            try:
                if self.file is not None:
                    self.file.check()
                if not self.is_sqlite:
                    with self._reader.connect() as conn:
                        if conn.exec_driver_sql("SHOW transaction_read_only").scalar() == "on":
                            raise DatabaseNotWritable("the database is read-only "
                                                      "(transaction_read_only is on)")
            except Exception as error:
                self._failed(error, writing=True)
                raise
            return
        millis = max(1, int(wait_seconds * 1000))
        try:
            if self.file is not None:
                self.file.check()
            with self._writer.connect() as conn:
                raw: Any = conn.connection.dbapi_connection
                if self.is_sqlite:  # on the driver: SQLAlchemy's execute would BEGIN first
                    raw.execute(f"PRAGMA busy_timeout={millis}")
                try:
                    with conn.begin():
                        if not self.is_sqlite:
                            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {millis}")
                        probe(conn)
                finally:
                    if self.is_sqlite:
                        with suppress(Exception):  # a broken connection is discarded anyway
                            raw.execute("PRAGMA busy_timeout=30000")
        except Exception as error:
            self._failed(error, writing=True)
            raise
        self._committed()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        self._may_block()
        try:
            with self._reader.begin() as conn:
                yield conn
        except Exception as error:
            self._failed(error, writing=False)
            raise
        if self._outage.active:
            self._succeeded(writing=False)

    @contextmanager
    def cached_only(self) -> Iterator[None]:
        """Within it, on this thread, a read that is not answered from the cache (and any
        transaction) raises WouldBlock instead of waiting on the database: for reads served
        on the event loop when they can be."""
        self._local.cached_only = True
        try:
            yield
        finally:
            self._local.cached_only = False

    def _may_block(self) -> None:
        if getattr(self._local, "cached_only", False):
            raise WouldBlock

    def _committed(self) -> None:
        # After the commit, not before: a read between the two would cache the old rows
        # under the new generation.
        self._changes.changed()
        if self._outage.active:
            self._succeeded(writing=True)

    @property
    def outage_active(self) -> bool:
        """Whether this process sees the database in an episode of unavailability (one of
        its own operations failed for it, and none has succeeded since)."""
        return self._outage.active

    def _failed(self, error: BaseException, *, writing: bool) -> None:
        if self._outage_fault(error):
            self._outage.failed(self.reason(error), writing=writing)

    def _outage_fault(self, error: BaseException) -> bool:
        """Whether `error` says the database's storage or sessions are out (an episode to
        tell, whose end resets connections): the SQLite file read-only, full, failing or
        gone; the server unreachable, shut down, out of resources, read-only; a connection
        lost. Not contention (locked, busy, deadlock, serialization failure, lock or
        statement timeout, pool exhausted): those are retried, and pass by themselves."""
        if isinstance(error, (DatabaseNotWritable, exc.DisconnectionError)):
            return True
        if isinstance(error, exc.DBAPIError):
            if error.connection_invalidated:
                return True
            error = error.orig  # type: ignore[assignment]
        if self.is_sqlite:
            return sqlite_storage_fault(error)
        if not isinstance(error, self._reader.dialect.loaded_dbapi.Error):
            return False
        state = getattr(error, "sqlstate", None)
        if state is None:  # the driver's own: no connection, or it was lost
            return isinstance(error, self._reader.dialect.loaded_dbapi.OperationalError)
        return state.startswith(_TRANSIENT_CLASSES) or state in _OUTAGE_STATES

    def _succeeded(self, *, writing: bool) -> None:
        if self._outage.succeeded(writing=writing):
            # Connections opened during the episode may have opened a read-only file (and
            # stay read-only) or a read-only session: new ones from now on, everywhere.
            # dispose() closes the idle ones now (those in use are closed when returned);
            # close=False would leave them open until a full garbage collection.
            self._epoch += 1
            self._writer.dispose()
            self._reader.dispose()

    @staticmethod
    def reason(error: BaseException) -> str:
        """What an error says, in one line (the driver's own words, without SQL)."""
        if isinstance(error, exc.DBAPIError) and error.orig is not None:
            error = error.orig
        lines = str(error).strip().splitlines()
        return lines[0] if lines else type(error).__name__

    def fetch(self, statement: Select[Any], params: dict[str, Any], *,
              cached: bool = False) -> list[tuple[Any, ...]]:
        """Run one read statement on a raw driver connection, without SQLAlchemy's result
        machinery or an explicit transaction: the hot read path. Its columns must be plain
        (no JSON or other processed types). Statements are compiled once per object.

        `cached` (for statements that read the servers table and nothing else): the rows
        are kept and given again until the servers may have changed (storage/changes.py).
        """
        if not cached:
            self._may_block()
            return self._fetch_tracked(statement, params)
        key = (id(statement), *sorted(params.items()))
        generation = self._changes.generation()
        if generation is not None:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == generation:
                return list(hit[1])
        self._may_block()
        rows = self._fetch_tracked(statement, params)
        if generation is not None:
            if len(self._cache) >= MAX_CACHED_READS:
                self._cache.clear()
            self._cache[key] = (generation, rows)
            rows = list(rows)
        return rows

    def _fetch_tracked(self, statement: Select[Any], params: dict[str, Any]
                       ) -> list[tuple[Any, ...]]:
        try:
            rows = self._fetch(statement, params)
        except Exception as error:
            self._failed(error, writing=False)
            raise
        if self._outage.active:
            self._succeeded(writing=False)
        return rows

    def _fetch(self, statement: Select[Any], params: dict[str, Any]) -> list[tuple[Any, ...]]:
        plan = self._compiled.get(id(statement))
        if plan is None:
            plan = self._plan(statement)
        sql, names, defaults = plan
        args: Any = ([params[n] if n in params else defaults[n] for n in names]
                     if names is not None else {**defaults, **params})
        if self.is_sqlite:
            try:
                return self._fetch_sqlite(sql, args)
            except self._reader.dialect.loaded_dbapi.Error as error:
                if not sqlite_storage_fault(error):
                    raise
                self._drop_fast_connection()  # opened read-only, say: once more, reopened
                return self._fetch_sqlite(sql, args)
        assert self._fast is not None
        try:
            return self._fetch_server(sql, args)
        except self._fast.dialect.loaded_dbapi.OperationalError:
            self._drop_fast_connection()  # a server restart, say: once more, reconnected
            return self._fetch_server(sql, args)

    def _fetch_sqlite(self, sql: str, args: Any) -> list[tuple[Any, ...]]:
        cursor = self._sqlite_raw().cursor()
        try:
            cursor.execute(sql, args)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def _sqlite_raw(self) -> Any:
        """This thread's SQLite connection for `fetch`, kept: a pool round trip would cost
        more than the query. Each statement is its own (WAL snapshot) read transaction."""
        local = self._local
        raw = getattr(local, "raw", None)
        if raw is None or local.epoch != self._epoch:
            if raw is not None:
                self._drop_fast_connection()
            raw = local.raw = self._reader.raw_connection()
            local.serial = next(self._serials)
            local.epoch = self._epoch
        return raw

    def _sqlite_version(self) -> tuple[int, int]:
        """A generation for SQLite: this thread's connection (one of its own, never reused)
        and its data_version, which moves whenever another connection commits (this one
        only reads)."""
        cursor = self._sqlite_raw().cursor()
        try:
            cursor.execute("PRAGMA data_version")
            return self._local.serial, cursor.fetchone()[0]
        finally:
            cursor.close()

    def _plan(self, statement: Select[Any]) -> _Plan:
        """Compile once: the SQL text, its positional parameter names (None when the driver
        takes named ones) and the values of the statement's own literals."""
        compiled = statement.compile(dialect=self._reader.dialect)
        assert isinstance(compiled, SQLCompiler)
        names = tuple(compiled.positiontup) if compiled.positiontup is not None else None
        plan = (str(compiled), names, dict(compiled.construct_params(_check=False) or {}))
        self._compiled[id(statement)] = plan
        self._statements.append(statement)  # keeps id() stable
        return plan

    def _fetch_server(self, sql: str, args: Any) -> list[tuple[Any, ...]]:
        """One statement on this thread's own autocommit connection: no pool checkout, no
        ping, no rollback, one round trip (and the driver prepares repeated statements)."""
        local = self._local
        raw = getattr(local, "raw", None)
        if raw is None or local.epoch != self._epoch:
            if raw is not None:
                self._drop_fast_connection()
            assert self._fast is not None
            raw = self._fast.raw_connection()
            raw.driver_connection.autocommit = True  # type: ignore[union-attr]
            local.raw = raw
            local.epoch = self._epoch
        cursor = raw.cursor()
        try:
            cursor.execute(sql, args)
            return [tuple(r) for r in cursor.fetchall()]
        finally:
            cursor.close()

    def _listener_connection(self) -> tuple[Any, Any]:
        """A connection of its own for ServerChanges, in autocommit, and its closer."""
        assert self._fast is not None
        raw = self._fast.raw_connection()
        driver = raw.driver_connection
        driver.autocommit = True  # type: ignore[union-attr]
        return driver, raw.invalidate

    def _drop_fast_connection(self) -> None:
        raw = getattr(self._local, "raw", None)
        self._local.raw = None
        if raw is not None:
            with suppress(Exception):  # it may be broken already
                raw.invalidate()

    def unavailable(self, error: BaseException) -> bool:
        """Whether `error` is the database's own and means it cannot serve for now, a retry
        may succeed: SQLite locked or busy past its timeout, its disk read-only, full or
        failing, its file gone; a server unreachable, a connection lost, the pool exhausted,
        a serialization failure, a read-only or full server. Only errors the database
        raised: a full disk met by the blob store or an engine (an OSError) is not one,
        it is that step's failure, retried and told as any other."""
        if isinstance(error, (exc.TimeoutError, exc.DisconnectionError, DatabaseNotWritable)):
            return True
        if isinstance(error, exc.DBAPIError):
            if error.connection_invalidated:
                return True
            error = error.orig  # type: ignore[assignment]
        if self.is_sqlite:  # not "no such table" and the like, which retrying will not mend
            return sqlite_storage_fault(error) or (
                isinstance(error, self._reader.dialect.loaded_dbapi.OperationalError)
                and any(word in str(error) for word in ("locked", "busy")))
        if not isinstance(error, self._reader.dialect.loaded_dbapi.Error):
            return False
        state = getattr(error, "sqlstate", None)
        if state is None:  # the driver's own: no connection, or it was lost
            return isinstance(error, self._reader.dialect.loaded_dbapi.OperationalError)
        return state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT_STATES

    def opening_problem(self, error: BaseException) -> DatabaseUnusable | None:
        """The one-line error for a start that `error` stops, if it is the database's own
        (damaged, out of reach) rather than cmhost's; None otherwise."""
        orig = error.orig if isinstance(error, exc.DBAPIError) else error
        code = getattr(orig, "sqlite_errorcode", None)
        if self.file is not None and code is not None and code & 0xFF in _SQLITE_DAMAGE:
            return DatabaseUnusable(
                f"the database file {self.file.path} is damaged ({self.reason(error)}): "
                "restore it from a backup (with its -wal file), or move it, its -wal and its "
                "-shm aside and start over with an empty database with --accept-new-database")
        state = getattr(orig, "sqlstate", None) or ""
        if self.unavailable(error) or state.startswith(_CANNOT_CONNECT):
            where = (str(self.file.path) if self.file is not None
                     else make_url(self.url).render_as_string(hide_password=True))
            return DatabaseUnusable(f"cannot open the database {where}: {self.reason(error)}")
        return None

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (idempotent), each migration in a
        transaction of its own: a crash leaves the last one that committed."""
        from cmhost.storage import migrate

        if self.is_sqlite:
            # The writer's connections: SQLAlchemy sends their BEGIN, so DDL is in the
            # transaction too (pysqlite's own BEGIN would leave it out).
            migrate.upgrade(self._writer)
            return
        # On a server, an engine of its own, disposed at the end: no pooled connection has
        # statements prepared against the schema before it changed.
        engine = create_engine(self.url, poolclass=NullPool)
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()

    def table_names(self) -> list[str]:
        return inspect(self._reader).get_table_names()

    def dispose(self) -> None:
        self._changes.close()
        self._drop_fast_connection()
        if self._fast is not None:
            self._fast.dispose()
        self._writer.dispose()
        self._reader.dispose()
