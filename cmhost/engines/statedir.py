"""A server's state directory: atomic writes, a lock, whole-directory replacement and exchange."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import cast

from cmhost import tempfiles
from cmhost.engines.base import EngineError


def write_atomic(path: Path, data: str | bytes, *, mode: int = 0o644) -> None:
    """Replace `path` with `data` so a reader sees the old file or the new one, never half."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfiles.create_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _is_leftover(name: str) -> bool:
    """A temporary file of `write_atomic` (being written, or left behind by a crash)."""
    return tempfiles.is_temporary(name)


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the server's lock (threads and processes alike) while changing its state.

    The lock file sits beside the state directory so it survives `replace_dir`.
    """
    root.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(root.parent / f".{root.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def read_files(root: Path, *,
               leave_out: Callable[[str, Path], bool] | None = None) -> dict[str, bytes]:
    """Every regular file under `root`, keyed by its relative POSIX path, in sorted order.

    Leftover temporary files are skipped, and so is whatever `leave_out(relative, path)` says
    (a directory with everything in it); anything else that is neither a file nor a
    directory (a symbolic link, a device) is refused.
    """
    files: dict[str, bytes] = {}
    for directory, subdirs, names in os.walk(root):
        base = Path(directory)
        for name in sorted(subdirs + names):
            path = base / name
            relative = path.relative_to(root).as_posix()
            if leave_out is not None and leave_out(relative, path):
                if name in subdirs:
                    subdirs.remove(name)
                continue
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise EngineError(
                    f"The engine state holds {relative!r}, which is not a regular file.")
            if path.is_file() and not _is_leftover(path.name):
                files[relative] = path.read_bytes()
    return dict(sorted(files.items()))


def _staging_prefixes(root: Path) -> tuple[str, str]:
    return f".{root.name}.new-", f".{root.name}.old-"


def remove_leftovers(root: Path) -> None:
    """Remove what an interrupted `replace_dir` left beside `root`."""
    if not root.parent.is_dir():
        return
    prefixes = _staging_prefixes(root)
    for path in root.parent.iterdir():
        if path.name.startswith(prefixes) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_relative(relative: str) -> PurePosixPath:
    path = PurePosixPath(relative)
    if path.is_absolute() or not path.parts or any(p in ("", ".", "..") for p in path.parts):
        raise EngineError(f"refusing to write {relative[:100]!r} outside the state directory")
    return path


def replace_dir(root: Path, files: Mapping[str, bytes], *, dirs: tuple[str, ...] = ()) -> None:
    """Make `root` hold exactly `files` (relative POSIX path -> bytes) and the empty `dirs`.

    The new directory is built and synced beside `root`, then swapped in with two renames:
    a reader sees the old directory, the new one, or (only after a crash between the two
    renames) none, but never a half-written one. Run it under `locked(root)`.
    """
    root.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(root)
    new_prefix, old_prefix = _staging_prefixes(root)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=new_prefix))
    try:
        os.chmod(staging, 0o755)
        for relative in dirs:
            (staging / _check_relative(relative)).mkdir(parents=True, exist_ok=True)
        for relative, data in files.items():
            target = staging / _check_relative(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, data)
        for directory in sorted({p.parent for p in staging.rglob("*")} | {staging}):
            _fsync_dir(directory)
        old: Path | None = None
        if root.exists():
            old = Path(tempfile.mkdtemp(dir=root.parent, prefix=old_prefix))
            os.replace(root, old / "state")
        try:
            os.rename(staging, root)
        except OSError:
            if old is not None:
                os.rename(old / "state", root)
                shutil.rmtree(old, ignore_errors=True)
            raise
        _fsync_dir(root.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


_RENAME_EXCHANGE = 2  # renameat2's flag (linux/fs.h)
_AT_FDCWD = -100


def _libc_renameat2() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return cast(Callable[..., int], libc.renameat2)
    except (OSError, AttributeError):
        return None


_renameat2 = _libc_renameat2()


def exchange_dirs(a: Path, b: Path) -> None:
    """Swap the directories `a` and `b` in one step (Linux renameat2 RENAME_EXCHANGE): a
    reader of either path sees the old tree or the new one, never none. Where the system
    cannot exchange (an old kernel or a file system without it), `b` is moved aside and `a`
    put in its place: two renames, with a moment in which `b` does not exist."""
    if _renameat2 is not None:
        done = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b),
                          _RENAME_EXCHANGE)
        if done == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), str(a), None, str(b))
    aside = Path(tempfile.mkdtemp(dir=a.parent, prefix=f".{a.name}.swap-"))
    os.rename(b, aside / "old")
    try:
        os.rename(a, b)
    except OSError:
        os.rename(aside / "old", b)
        aside.rmdir()
        raise
    os.rename(aside / "old", a)
    aside.rmdir()
