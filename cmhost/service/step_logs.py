"""The logs of server steps (a restore, a maintenance, a failed creation or node request):
what was done, when, and how it ended, stored in the blob store under the server's id.

A backup's log is the backup's (artifacts.log_key): it lives and goes with the backup. A
step's log belongs to the events that link to it: it is deleted with the server, or when
retention has pruned every event that links to it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from cmhost.storage.blobs import BlobStore
from cmhost.storage.repo import Row


def stamp(at: float) -> str:
    """An ISO 8601 UTC time with microseconds, as log lines begin."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StepLog:
    """Lines of a log, each stamped with the time it tells of."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def add(self, at: float, text: str) -> StepLog:
        self._lines.append(f"{stamp(at)} {text}")
        return self

    def encode(self) -> bytes:
        return ("\n".join(self._lines) + "\n").encode()


def step_log_key(server: Row, name: str) -> str:
    """The blob key of the log `name` of `server`: under its id, never its name (a name is
    taken again by the next server of that name)."""
    return f"logs/{server['account']}/{server['region']}/servers/{server['id']}/{name}.log"


def new_log_name(kind: str, at: float) -> str:
    """A name for a step's log, chosen when the step is asked for (kept in its job's payload,
    so a retried step writes the same log): the kind, the time, and random digits (two
    steps of one server may start in the same millisecond of a virtual clock)."""
    moment = datetime.fromtimestamp(at, UTC)
    return f"{kind}-{moment:%Y%m%d%H%M%S}{moment.microsecond // 1000:03d}-{secrets.token_hex(4)}"


def node_log_name(token: str) -> str:
    """The log of a node request, named after its status token (not key-safe: hashed)."""
    return "node-" + hashlib.sha256(token.encode()).hexdigest()[:24]


def owned_by_events(key: str, server_id: str) -> bool:
    """Whether `key` is a step log of that server (deleted with its events), not a backup's."""
    parts = key.split("/")
    return (len(parts) == 6 and parts[0] == "logs" and parts[3] == "servers"
            and parts[4] == server_id)


def write_log(blobs: BlobStore, key: str, log: StepLog) -> str:
    """Store `log` under `key` (over what was there: a retried step writes its log again);
    returns the key, for the event that links to it."""
    blobs.put(key, log.encode())
    return key


def delete_logs(blobs: BlobStore, keys: list[str]) -> None:
    """Remove those logs (a key already gone is no error)."""
    for key in keys:
        blobs.delete(key)
