"""PuppetDB's databases: one per Puppet server, in the PostgreSQL server that
--puppetdb-database-url names (its role must be allowed to CREATE DATABASE).

The URL is a SQLAlchemy URL (`postgresql+psycopg://user:pw@host:5432/postgres`) or a libpq one
(`postgresql://...`, `postgres://...`, or `host=... user=...`). Its database is only where
cmhost connects to create and drop the servers' databases. The password never appears in a
message, a repr or a command line: PuppetDB reads it from a 0600 file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cmhost.engines.base import EngineError

# PuppetDB 7 refuses to start without it (its regular-expression indexes).
EXTENSIONS = ("pg_trgm",)
CONNECT_TIMEOUT = 10
_PREFIX = "cmhost_pdb_"
_MAX_NAME = 63  # PostgreSQL's NAMEDATALEN - 1
# The connection parameters PuppetDB's JDBC driver understands as libpq does.
_JDBC_PARAMETERS = ("sslmode", "sslrootcert")
_SCHEME = re.compile(r"^(postgres(?:ql)?)(\+[A-Za-z0-9_]+)?://")


def database_name(server_id: str) -> str:
    """`cmhost_pdb_<server id without dashes>`, or a digest of the id when that is not a
    plain lower-case name of at most 63 characters."""
    plain = server_id.lower().replace("-", "")
    if re.fullmatch(r"[a-z0-9_]+", plain) and len(_PREFIX) + len(plain) <= _MAX_NAME:
        return _PREFIX + plain
    return _PREFIX + hashlib.sha256(server_id.encode("utf-8")).hexdigest()[:40]


@dataclass(frozen=True)
class DatabaseServer:
    """A PostgreSQL server reached over TCP with one role; `password` stays out of reprs."""

    host: str
    port: int
    user: str
    admin_database: str
    password: str | None = field(default=None, repr=False)
    options: tuple[tuple[str, str], ...] = ()  # sslmode, sslrootcert

    @classmethod
    def from_url(cls, url: str) -> DatabaseServer:
        """Parse the URL; EngineError (without the URL, which holds the password) when it is
        not a PostgreSQL URL PuppetDB can use."""
        text = url.strip()
        match = _SCHEME.match(text)
        if match:
            text = "postgresql://" + text[match.end():]
        elif "://" in text:
            raise EngineError("The PuppetDB database URL is not a PostgreSQL URL "
                              "(postgresql://user:password@host:port/database).")
        try:
            params = conninfo_to_dict(text)
        except psycopg.ProgrammingError:
            raise EngineError("The PuppetDB database URL cannot be parsed.") from None
        host = str(params.get("host") or params.get("hostaddr") or "")
        if not host or host.startswith("/") or "," in host:
            raise EngineError("The PuppetDB database URL must name one PostgreSQL host reached "
                              "over TCP (PuppetDB's JDBC driver has no Unix sockets).")
        user = str(params.get("user") or "")
        if not user:
            raise EngineError("The PuppetDB database URL names no user.")
        try:
            port = int(str(params.get("port") or 5432))
        except ValueError:
            raise EngineError("The PuppetDB database URL's port is not a number.") from None
        password = params.get("password")
        options = tuple((k, str(params[k])) for k in _JDBC_PARAMETERS if params.get(k))
        return cls(host=host, port=port, user=user,
                   admin_database=str(params.get("dbname") or "postgres"),
                   password=str(password) if password is not None else None, options=options)

    @property
    def display(self) -> str:
        """`user@host:port`, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"

    def jdbc_subname(self, database: str) -> str:
        """PuppetDB's `subname`: `//host:port/database` and the TLS options."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in self.options)
        return f"//{host}:{self.port}/{database}" + (f"?{query}" if query else "")

    def connect(self, database: str | None = None) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection (CREATE DATABASE cannot run in a transaction)."""
        try:
            params: dict[str, str | int | None] = {
                "host": self.host, "port": self.port, "user": self.user,
                "password": self.password, "dbname": database or self.admin_database,
                "connect_timeout": CONNECT_TIMEOUT, **dict(self.options)}
            # A conninfo string keeps the password out of argv and reprs alike.
            return psycopg.connect(make_conninfo("", **params), autocommit=True)
        except psycopg.Error as exc:
            raise EngineError(f"PostgreSQL at {self.display} refused PuppetDB's database work: "
                              f"{_first_line(exc)}") from None

    def database_exists(self, name: str) -> bool:
        with self.connect() as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return row is not None

    def ensure_database(self, name: str) -> None:
        """Create the database (UTF-8, owned by the role) and its extensions unless they
        exist. Idempotent; safe against a concurrent creation of the same database."""
        with self.connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (name,)).fetchone()
            if exists is None:
                encoding = conn.execute(
                    "SELECT pg_encoding_to_char(encoding) FROM pg_database "
                    "WHERE datname = 'template1'").fetchone()
                statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
                if not encoding or encoding[0] != "UTF8":
                    # PuppetDB stores UTF-8; a cluster made with another default encoding
                    # can only give one from template0, with a locale that accepts it.
                    statement += sql.SQL(" TEMPLATE template0 ENCODING 'UTF8' "
                                         "LC_COLLATE 'C' LC_CTYPE 'C'")
                try:
                    conn.execute(statement)
                except psycopg.errors.DuplicateDatabase:
                    pass
                except psycopg.Error as exc:
                    raise EngineError(f"PostgreSQL at {self.display} could not create the "
                                      f"PuppetDB database {name}: {_first_line(exc)}") from None
        with self.connect(name) as conn:
            for extension in EXTENSIONS:
                try:
                    conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(
                        sql.Identifier(extension)))
                except psycopg.Error as exc:
                    raise EngineError(
                        f"PostgreSQL at {self.display} could not add the extension {extension} "
                        f"to {name} (PuppetDB needs it; install postgresql-contrib on older "
                        f"PostgreSQL): {_first_line(exc)}") from None

    def drop_database(self, name: str) -> None:
        """Drop the database, closing its connections (fine when it is gone)."""
        with self.connect() as conn:
            statement = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
            if conn.info.server_version >= 130000:
                # PuppetDB is stopped first; FORCE also ends a session left by anyone else.
                statement += sql.SQL(" WITH (FORCE)")
            try:
                conn.execute(statement)
            except psycopg.Error as exc:
                raise EngineError(f"PostgreSQL at {self.display} could not drop the PuppetDB "
                                  f"database {name}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else exc.__class__.__name__
