"""The server state table: which operation is allowed in which state, and where it leads."""

from __future__ import annotations

from cmhost.service.errors import InvalidStateException

BACKING_UP = "BACKING_UP"
CONNECTION_LOST = "CONNECTION_LOST"
CREATING = "CREATING"
DELETING = "DELETING"
MODIFYING = "MODIFYING"
FAILED = "FAILED"
HEALTHY = "HEALTHY"
RUNNING = "RUNNING"
RESTORING = "RESTORING"
SETUP = "SETUP"
UNDER_MAINTENANCE = "UNDER_MAINTENANCE"
UNHEALTHY = "UNHEALTHY"
TERMINATED = "TERMINATED"

ALL = frozenset({BACKING_UP, CONNECTION_LOST, CREATING, DELETING, MODIFYING, FAILED, HEALTHY,
                 RUNNING, RESTORING, SETUP, UNDER_MAINTENANCE, UNHEALTHY, TERMINATED})

# States in which an operation of the service is still running on the server.
BUSY = frozenset({CREATING, BACKING_UP, MODIFYING, RESTORING, SETUP, UNDER_MAINTENANCE})

# Where the server settles when nothing is running on it.
SETTLED = frozenset({HEALTHY, UNHEALTHY, RUNNING, CONNECTION_LOST, FAILED, TERMINATED})

ALLOWED: dict[str, frozenset[str]] = {
    # The spec names these states explicitly.
    "CreateBackup": frozenset({RUNNING, HEALTHY, UNHEALTHY}),
    "RestoreServer": frozenset({CONNECTION_LOST, HEALTHY, RUNNING, UNHEALTHY, TERMINATED}),
    "StartMaintenance": frozenset({HEALTHY, UNHEALTHY}),
    "AssociateNode": frozenset({HEALTHY}),
    "DisassociateNode": frozenset({HEALTHY}),
    "UpdateServerEngineAttributes": frozenset({HEALTHY, UNHEALTHY}),
    "ExportServerEngineAttribute": ALL - {CREATING, TERMINATED, FAILED, DELETING},
    # The spec is silent; see the README: settings change only on a settled, live server.
    "UpdateServer": frozenset({HEALTHY, UNHEALTHY, RUNNING, CONNECTION_LOST}),
    "TagResource": ALL - {DELETING},
    "UntagResource": ALL - {DELETING},
    # DeleteServer: anything but DELETING (InvalidStateException) and BUSY (ValidationException,
    # "The current operation on the server is still in progress", as the live service said).
    "DeleteServer": ALL - BUSY - {DELETING},
}

# The state an asynchronous operation puts the server in while it runs.
LEADS_TO: dict[str, str] = {
    "CreateServer": CREATING,
    "DeleteServer": DELETING,
    "CreateBackup": BACKING_UP,
    "RestoreServer": RESTORING,
    "StartMaintenance": UNDER_MAINTENANCE,
    "UpdateServerEngineAttributes": MODIFYING,
}


def allowed(operation: str, state: str) -> bool:
    return state in ALLOWED[operation]


def allowed_text(operation: str) -> str:
    return ", ".join(sorted(ALLOWED[operation]))


def require(operation: str, server_name: str, state: str) -> None:
    """InvalidStateException unless `operation` is allowed in `state`."""
    if state not in ALLOWED[operation]:
        raise InvalidStateException(
            f"The server '{server_name}' is in state {state}; {operation} is allowed only in "
            f"these states: {allowed_text(operation)}.")


def changed_meanwhile(server_name: str) -> InvalidStateException:
    """For a compare-and-set that lost: the state changed between the check and the write."""
    return InvalidStateException(f"The server '{server_name}' changed state; try again.")
