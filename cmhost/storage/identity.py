"""Which database a data directory belongs to: an id kept in both, compared at every start.

The data directory holds what goes with one database: engine state, backup artifacts. The
first start on a database gives the database an id (meta `database_id`) and writes the same
id to `<data-dir>/database-id`, the database first. Every start compares the two before it
changes anything, and refuses in one line, saying what to do, when the data directory
belongs to another database: the database vanished (SQLite takes a missing or zero-byte file
for a new, empty database) or is another one (a wrong --database-url). `--accept-new-database`
starts over on purpose: the data directory then belongs to this database.

A database from before ids (used, no id yet) adopts a data directory that has no id yet. The
processes that share one data directory and one database (an API and workers) all find the
same pair; two first starts at once take the first id committed.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import exc, make_url, select

from cmhost.storage import repo
from cmhost.storage.db import Database
from cmhost.storage.tables import meta

log = logging.getLogger("cmhost")

ID_FILE = "database-id"
ID_KEY = "database_id"


class DatabaseMismatch(ValueError):
    """The database is not the one the data directory belongs to."""


@dataclass(frozen=True)
class Found:
    """What a start finds before it changes anything."""

    data_dir: Path
    where: str  # the database, as messages name it
    known_id: str | None  # the id the data directory keeps
    used: bool  # the database holds cmhost's data (a start went through on it)
    meta: dict[str, str] = field(default_factory=dict)  # its meta rows (none when unused)

    @property
    def database_id(self) -> str | None:
        return self.meta.get(ID_KEY)


def describe(db: Database) -> str:
    """The database in words for a message: its file, or its URL without the password."""
    if db.file is not None:
        return f"the database file {db.file.path}"
    return f"the database {make_url(db.url).render_as_string(hide_password=True)}"


def examine(db: Database, data_dir: Path) -> Found:
    """The data directory's id, then the database's meta rows (in that order: a process
    that reads an id another one has just written then finds the id in the database too)."""
    known = read_id(data_dir)
    rows: dict[str, str] = {}
    if not (db.file is not None and db.file.empty()) and "meta" in db.table_names():
        with db.read() as conn:
            rows = {k: v for k, v in conn.execute(select(meta.c.key, meta.c.value))}
    return Found(data_dir=data_dir, where=describe(db), known_id=known, used=bool(rows),
                 meta=rows)


def check(found: Found, *, accept_new: bool) -> None:
    """DatabaseMismatch, in one line, when the data directory belongs to another database
    (unless `accept_new`: then the start goes on and says so)."""
    known = found.known_id
    if known is None or known == found.database_id:
        return
    if not found.used:
        what = (f"{found.where} is empty (deleted or emptied?), or another database "
                "than the one it keeps engine state and backups for")
        remedy = ("restore the database from a backup (for SQLite, the database file with "
                  "its -wal file), or start over with an empty database on purpose with "
                  "--accept-new-database")
    else:
        what = (f"{found.where} is database {found.database_id}" if found.database_id else
                f"{found.where} is another database (one without an id, last used by an "
                "older cmhost)")
        remedy = ("give the database and the data directory that belong together "
                  "(--database-url, --data-dir), or make this data directory belong to "
                  "this database on purpose with --accept-new-database")
    line = f"the data directory {found.data_dir} belongs to database {known}, but {what}"
    if not accept_new:
        raise DatabaseMismatch(f"{line}: {remedy}")
    log.warning("%s; starting with it as asked (--accept-new-database)", line)


def claim(db: Database, data_dir: Path) -> str:
    """The database's id, given now if it has none, written to the data directory too."""
    try:
        database_id = _give_id(db)
    except exc.IntegrityError:  # another process gave it one at this moment: take that one
        database_id = _give_id(db)
    if read_id(data_dir) != database_id:
        write_id(data_dir, database_id)
    return database_id


def _give_id(db: Database) -> str:
    with db.write() as conn:
        database_id = repo.get_meta(conn, ID_KEY)
        if database_id is None:
            database_id = uuid.uuid4().hex
            repo.set_meta(conn, ID_KEY, database_id)
    return database_id


def read_id(data_dir: Path) -> str | None:
    try:
        text = (data_dir / ID_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def write_id(data_dir: Path, database_id: str) -> None:
    """Write the id file whole or not at all (a new file renamed over the old one)."""
    path = data_dir / ID_FILE
    temporary = path.with_name(f".{ID_FILE}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(database_id + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
