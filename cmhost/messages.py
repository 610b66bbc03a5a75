"""What an API caller may read of a failure: the exception's text without local paths.

Exception text reaches callers as events, StatusReason, node association errors and error
messages. An `OSError` names the files it failed on, and a message built from one carries
that name on (`f"... could not start: {exc}"`): the data directory, the host's name in a
temporary file, the node and server ids on disk. `caller_message` is the one place that
turns an exception into caller-safe text; logs keep the full detail.
"""

from __future__ import annotations

import os
import re

PATH_SHOWN = "<path>"

# An absolute POSIX path: a '/' that does not continue a word, a URL or another path
# (http://host/x, a/b, ~/x), up to a space, a quote or a bracket.
_ABSOLUTE = re.compile(r"(?:(?<![\w.~:/-])|(?<=:)(?!//))/[^\s'\"`,;()\[\]{}<>|]+")
_FILE_URL = re.compile(r"file://[^\s'\"`,;()\[\]{}<>|]*")


def caller_message(exc: BaseException) -> str:
    """The text of `exc` as a caller may see it: an `OSError` says its errno and reason
    (not the file names), and any local path left in the text is replaced by `<path>`."""
    if isinstance(exc, OSError) and exc.strerror:
        text = f"[Errno {exc.errno}] {exc.strerror}" if exc.errno else exc.strerror
    else:
        text = str(exc)
    for name in _file_names(exc):
        text = text.replace(name, PATH_SHOWN)
    return without_paths(text)


def without_paths(text: str) -> str:
    """`text` with every absolute path on this host (its first directory exists here)
    replaced by `<path>`; a URL's path (`http://host/a`) and an HTTP request path that names
    no local directory (`GET /clients/web-1`) stay."""
    text = _FILE_URL.sub("file://" + PATH_SHOWN, text)
    return _ABSOLUTE.sub(_scrubbed, text)


def _scrubbed(match: re.Match[str]) -> str:
    path = match.group(0).rstrip(".:")
    tail = match.group(0)[len(path):]
    first = path.split("/", 2)[1]
    if not first or not os.path.lexists("/" + first):
        return match.group(0)
    return PATH_SHOWN + tail


def _file_names(exc: BaseException) -> list[str]:
    """The file names of every `OSError` in `exc`'s chain (a message built from one, raised
    `from None`, still has it as its context), longest first so no name is cut in two."""
    names: set[str] = set()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            for name in (current.filename, current.filename2):
                if isinstance(name, bytes):
                    name = os.fsdecode(name)
                if isinstance(name, str) and name.startswith("/") and len(name) > 1:
                    names.add(name)  # a relative name tells nothing of this host
        current = current.__cause__ or current.__context__
    return sorted(names, key=len, reverse=True)
