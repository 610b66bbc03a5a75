"""The port of PuppetDB beside a server's engine, from the engines' range.

It is recorded in `<server dir>/puppetdb.port`, the name `reserve_port(..., part=...)` gives
the port of a process beside the engine (supervisor.py, with the code deployment work), and
chosen under the same lock as every server's port: never a port that a server directory
records in `port` or `<part>.port`, nor one that something listens on. Once that `part`
argument is in supervisor.py, `reserve_port(server_dir, host, low, high, part="puppetdb")`
does the same and this module can go.
"""

from __future__ import annotations

import os
from pathlib import Path

# The lock every port decision under the engines directory takes (one file, one flock).
from cmhost.engines.supervisor import PORT_FILE, SupervisorError, _ports_lock, port_is_free

SUFFIX = ".port"


def port_file(part: str) -> str:
    return f"{part}{SUFFIX}"


def _is_port_file(name: str) -> bool:
    return name == PORT_FILE or (name.endswith(SUFFIX) and not name.startswith("."))


def recorded_part_port(server_dir: Path, part: str) -> int | None:
    try:
        return int((server_dir / port_file(part)).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def recorded_ports(engines_dir: Path) -> set[int]:
    """Every port recorded under the engines directory: each server's and each part's."""
    taken: set[int] = set()
    for server in engines_dir.iterdir() if engines_dir.is_dir() else []:
        if not server.is_dir() or server.is_symlink():
            continue
        for path in server.iterdir():
            if _is_port_file(path.name) and path.is_file():
                try:
                    taken.add(int(path.read_text().strip()))
                except (OSError, ValueError):
                    continue
    return taken


def reserve_part_port(server_dir: Path, part: str, host: str, low: int, high: int) -> int:
    """The port of the server's `part`: the recorded one, else the lowest of [low, high] that
    nothing records and nothing listens on (then recorded)."""
    current = recorded_part_port(server_dir, part)
    if current is not None:
        return current
    with _ports_lock(server_dir.parent):
        current = recorded_part_port(server_dir, part)
        if current is not None:
            return current
        taken = recorded_ports(server_dir.parent)
        choice = next((p for p in range(low, high + 1)
                       if p not in taken and port_is_free(host, p)), None)
        if choice is None:
            raise SupervisorError(f"no free port left in {low}-{high} on {host}; widen "
                                  "--engine-ports")
        server_dir.mkdir(parents=True, exist_ok=True)
        name = port_file(part)
        tmp = server_dir / f".{name}.tmp"
        tmp.write_text(f"{choice}\n")
        os.replace(tmp, server_dir / name)
        return choice
