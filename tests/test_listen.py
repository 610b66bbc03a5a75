"""How `cmhost serve` holds its port and its data directory: slow and silent clients are cut
off within the header and body timeouts while others are served; a second process that
would work the same SQLite database, or take a busy port, is refused before it opens
anything, with one line saying why."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, Cmhost, free_port

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
# How long past its timeout a connection may stay open (a loaded machine is slow).
SLACK = 4.0


@pytest.fixture(scope="module")
def cm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmhost]:
    server = Cmhost(Path(tmp_path_factory.mktemp("listen")), extra_args=[
        "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT)]).start()
    yield server
    server.stop()


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed the connection (reads what it sent until then)."""
    sock.setblocking(False)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True  # reset


def wait_closed(socks: list[socket.socket], within: float,
                trickle: list[socket.socket] | None = None, drip: bytes = b"x") -> float:
    """Seconds until every connection was closed by the server, sending `drip` every 0.2 s
    on the `trickle` ones meanwhile; fails after `within` seconds."""
    started = time.monotonic()
    open_ = list(socks)
    while open_:
        elapsed = time.monotonic() - started
        assert elapsed < within, f"{len(open_)} of {len(socks)} connections still open"
        for sock in trickle or []:
            if sock in open_:
                try:
                    sock.send(drip)
                except OSError:
                    pass  # closed: seen below
        open_ = [s for s in open_ if not closed_by_server(s)]
        time.sleep(0.2)
    return time.monotonic() - started


def connect(cm: Cmhost, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", cm.port), timeout=5)
    if first:
        sock.sendall(first)
    return sock


def test_slowloris_connections_are_closed_while_others_are_served(cm: Cmhost) -> None:
    socks = [connect(cm, b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ") for _ in range(50)]
    try:
        # Half of them keep trickling bytes of the header, half stall.
        trickling = socks[::2]
        # A normal client is served meanwhile.
        assert cm.get("/_cmhost/health")["status"] == "ok"
        assert cm.client().describe_account_attributes()["Attributes"]
        wait_closed(socks, HEADER_TIMEOUT + SLACK, trickle=trickling)
        assert cm.get("/_cmhost/health")["status"] == "ok"
    finally:
        for sock in socks:
            sock.close()


def test_a_connection_that_never_sends_is_closed(cm: Cmhost) -> None:
    silent = connect(cm)
    try:
        wait_closed([silent], HEADER_TIMEOUT + SLACK)
    finally:
        silent.close()


def test_blank_lines_between_requests_do_not_keep_a_connection(cm: Cmhost) -> None:
    sock = connect(cm, b"GET /_cmhost/health HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        time.sleep(0.3)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        # uvicorn closes an idle kept-alive connection after 5 s; bytes that begin no
        # request would reset that for ever, but not the header timeout.
        wait_closed([sock], HEADER_TIMEOUT + SLACK, trickle=[sock], drip=b"\r\n")
    finally:
        sock.close()


def test_a_slow_body_is_cut_off(cm: Cmhost) -> None:
    sock = connect(cm, b"POST /_cmhost/clock HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    try:
        waited = wait_closed([sock], BODY_TIMEOUT + SLACK)
        assert waited >= BODY_TIMEOUT - 0.5, "closed before the body timeout"
    finally:
        sock.close()


def test_a_request_sent_in_pieces_within_the_timeout_is_served(cm: Cmhost) -> None:
    sock = connect(cm, b"GET /_cmhost/health HTTP/1.1\r\n")
    try:
        time.sleep(HEADER_TIMEOUT / 3)
        sock.sendall(b"Host: x\r\n")
        time.sleep(HEADER_TIMEOUT / 3)
        sock.sendall(b"\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        sock.close()


# --- the data directory and the port --------------------------------------------------------


def run_cmhost(command: str, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`cmhost <command>` on `workdir`'s data directory and SQLite database, expecting it
    to stop by itself (refused)."""
    data_dir = workdir / "data"
    return subprocess.run(
        [sys.executable, "-m", "cmhost", command, "--data-dir", str(data_dir),
         "--database-url", f"sqlite:///{data_dir / 'cmhost.db'}",
         "--master-key-file", str(workdir / "secret" / "master.key"), "--clock", "virtual",
         "--log-level", "info", *args],
        check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)


def refusal(done: subprocess.CompletedProcess[str]) -> str:
    output = (done.stdout + done.stderr).strip()
    assert done.returncode != 0, output
    assert len(output.splitlines()) == 1 and output.startswith("cmhost: error:"), output
    return output


def test_a_second_worker_on_a_sqlite_data_dir_is_refused_naming_the_holder(
        tmp_path: Path) -> None:
    first = Cmhost(tmp_path, database_url=f"sqlite:///{tmp_path / 'data' / 'cmhost.db'}")
    first.start()
    try:
        assert first.proc is not None
        port = free_port()
        for command, args in (("serve", ["--port", str(port)]), ("worker", [])):
            line = refusal(run_cmhost(command, tmp_path, *args))
            # The one line names the holder; the refused process ran no worker (it logs
            # nothing at info level before its line) and listens on nothing.
            assert f"pid {first.proc.pid}: cmhost serve on 127.0.0.1:{first.port}" in line
            assert "--no-worker" in line
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        # An API-only process shares the data directory (split API and worker).
        api = Cmhost(tmp_path, database_url=first.database_url,
                     master_key_file=first.master_key_file, extra_args=["--no-worker"])
        api.log_path = tmp_path / "api.log"
        api.start()
        api.stop()
        # A killed holder leaves its lock file, not its lock.
        first.kill()
        first.start()
        assert first.get("/_cmhost/health")["status"] == "ok"
    finally:
        first.stop()


def test_a_busy_port_is_refused_before_anything_is_opened(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = refusal(run_cmhost("serve", tmp_path, "--port", str(port)))
    assert "port in use" in line and str(port) in line
    assert not (tmp_path / "data" / "cmhost.db").exists()
    assert not (tmp_path / "secret" / "master.key").exists()
