"""Ports for the parts of a server that listen beside its engine (PuppetDB, say).

A part's port is recorded in `<server dir>/<part>/port`, chosen from the engines' range under
the lock `reserve_port` takes, never one that a server or another part records, nor one that
something listens on. `reserve_port` (supervisor.py) must in turn count the parts' ports as
taken when it gives a new server a port; until it does, a new server could be given the port
of a part that is not listening at that moment.
"""

from __future__ import annotations

import os
from pathlib import Path

# One lock for every port decision under the engines directory (the same file).
from cmhost.engines.supervisor import (
    PORT_FILE,
    SupervisorError,
    _ports_lock,
    port_is_free,
    recorded_port,
)


def recorded_ports(engines_dir: Path) -> set[int]:
    """Every port recorded under the engines directory: each server's and each part's."""
    taken: set[int] = set()
    for server in engines_dir.iterdir() if engines_dir.is_dir() else []:
        if not server.is_dir() or server.is_symlink():
            continue
        for directory in (server, *(d for d in server.iterdir()
                                     if d.is_dir() and not d.is_symlink())):
            port = recorded_port(directory)
            if port is not None:
                taken.add(port)
    return taken


def reserve_part_port(server_dir: Path, part: str, host: str, low: int, high: int) -> int:
    """The port of the server's `part`: the recorded one, else the lowest of [low, high] that
    nothing records and nothing listens on (recorded in `<server_dir>/<part>/port`)."""
    part_dir = server_dir / part
    current = recorded_port(part_dir)
    if current is not None:
        return current
    engines_dir = server_dir.parent
    with _ports_lock(engines_dir):
        current = recorded_port(part_dir)
        if current is not None:
            return current
        taken = recorded_ports(engines_dir)
        choice = next((p for p in range(low, high + 1)
                       if p not in taken and port_is_free(host, p)), None)
        if choice is None:
            raise SupervisorError(f"no free port left in {low}-{high} on {host}; widen "
                                  "--engine-ports")
        part_dir.mkdir(parents=True, exist_ok=True)
        tmp = part_dir / f".{PORT_FILE}.tmp"
        tmp.write_text(f"{choice}\n")
        os.replace(tmp, part_dir / PORT_FILE)
        return choice
