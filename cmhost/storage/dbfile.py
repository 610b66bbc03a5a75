"""An SQLite database file: kept private (0600), and watched for vanishing or going read-only.

SQLite creates a database file 0644 and gives its `-wal` and `-shm` the database file's mode,
so a file made 0600 before SQLite opens it keeps all three private.

The watch. Once the file is known (`check` met it), a write goes ahead only while the file
at the path is still that file (same device and inode) and this process may write it. A
deleted or replaced file would otherwise take writes that are lost (open connections write
to the unlinked inode), and a read-only one gives a mix of writes that pass (connections
opened before) and fail (connections opened since, read-only): either way cmhost stops
writing, says why, and goes on once the file is back. Two system calls per write
transaction, a few microseconds against the hundreds a commit costs.
"""

from __future__ import annotations

import logging
import os
import stat
from contextlib import suppress
from pathlib import Path

log = logging.getLogger("cmhost.storage")

# What SQLite keeps beside the database file.
COMPANIONS = ("-wal", "-shm", "-journal")


class DatabaseNotWritable(Exception):
    """The database cannot take writes for now: its file is read-only, gone or replaced."""


def make_private(path: Path, mode: int) -> None:
    """Take away group and other permissions from `path` if it has any (chmod to `mode`);
    a warning when this process may not (the file is another user's)."""
    try:
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass
    except PermissionError as error:
        log.warning("%s is open to other users and cmhost may not change that (%s): "
                    "run chmod %o %s", path, error.strerror, mode, path)


class SqliteFile:
    """The database file at `path` (its parent directory exists or is made, 0700)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # (st_dev, st_ino) of the file once met; None until then.
        self._known: tuple[int, int] | None = None

    @property
    def known(self) -> bool:
        return self._known is not None

    def exists(self) -> bool:
        return self.path.exists()

    def empty(self) -> bool:
        """Missing or of zero bytes: SQLite takes either for a new, empty database."""
        try:
            return self.path.stat().st_size == 0
        except FileNotFoundError:
            return True

    def create(self) -> None:
        """Make the file (empty, 0600) if it is missing, so that SQLite does not make it 0644."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             0o600))

    def secure(self) -> None:
        """Make the file and its companions 0600 (those made by an older cmhost were 0644)."""
        for suffix in ("", *COMPANIONS):
            make_private(self.path.with_name(self.path.name + suffix), 0o600)

    def check(self) -> None:
        """DatabaseNotWritable unless a write may go ahead (see the module's docstring)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._known is None:
                return  # not made yet: the first connection makes it
            raise DatabaseNotWritable(
                f"the database file {self.path} was deleted while cmhost was running; "
                "restore it (stop cmhost, put the file back) and restart cmhost") from None
        if not stat.S_ISREG(st.st_mode):
            raise DatabaseNotWritable(f"the database file {self.path} is not a regular file")
        if self._known is None:
            self._known = (st.st_dev, st.st_ino)
        elif (st.st_dev, st.st_ino) != self._known:
            raise DatabaseNotWritable(
                f"the database file {self.path} was replaced by another file while cmhost "
                "was running; restart cmhost to use the new one")
        if not os.access(self.path, os.W_OK):
            raise DatabaseNotWritable(f"the database file {self.path} is read-only")

    def uri(self) -> str:
        """The file as an SQLite URI that opens it read-write and never creates it (a deleted
        database must not come back as an empty one)."""
        from urllib.parse import quote

        return f"file:{quote(str(self.path.resolve()))}?mode=rw"
