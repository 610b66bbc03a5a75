"""The event loop of `cmhost serve` accepts a burst of new connections at once (issue 13 point
7): counted in turns of the loop, never timed.

uvloop's own servers (libuv) accept one connection per turn, and a busy turn runs every
request that arrived meanwhile: N clients connecting together to a loaded cmhost waited N
turns, seconds, for their first answer. bench/connections.py measures it in time."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from cmhost.eventloop import AcceptingServer, Loop, new_event_loop
from tests.support import Cmhost

BURST = 50


class Counting(asyncio.Protocol):
    """Counts the connections made; echoes what it receives."""

    made: ClassVar[list[Any]] = []  # uvloop's transports, which are not asyncio.Transport

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        Counting.made.append(transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def turns(loop: asyncio.AbstractEventLoop, count: int) -> None:
    """Run `count` turns of the loop (each polls for I/O once, without waiting)."""
    for _ in range(count):
        loop.call_soon(loop.stop)
        loop.run_forever()


@pytest.fixture
def loop() -> Iterator[Loop]:
    made = new_event_loop()
    Counting.made = []
    yield made
    for transport in Counting.made:
        transport.close()
    turns(made, 2)
    made.close()


def listening(backlog: int = 128) -> socket.socket:
    return socket.create_server(("127.0.0.1", 0), backlog=backlog)


def test_a_burst_of_connections_is_accepted_in_one_turn(loop: Loop) -> None:
    sock = listening()
    server = loop.run_until_complete(loop.create_server(Counting, sock=sock, backlog=128))
    assert isinstance(server, AcceptingServer) and server.is_serving()
    # Connected as far as the kernel goes: all of them wait in the accept queue.
    clients = [socket.create_connection(sock.getsockname()) for _ in range(BURST)]
    try:
        # One turn accepts them all, the next makes their transports, the third calls
        # connection_made: uvloop's own server would have made 3 by then.
        turns(loop, 3)
        assert len(Counting.made) == BURST
        clients[-1].sendall(b"ping")
        turns(loop, 2)
        assert clients[-1].recv(16) == b"ping"
    finally:
        for client in clients:
            client.close()
        server.close()
    assert not server.is_serving() and server.sockets == ()
    assert sock.fileno() == -1


def test_a_closed_server_accepts_no_more(loop: Loop) -> None:
    sock = listening()
    address = sock.getsockname()
    server = loop.run_until_complete(loop.create_server(Counting, sock=sock))
    server.close()
    loop.run_until_complete(server.wait_closed())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=5)


class ShortOfDescriptors(socket.socket):
    """A listening socket whose first accept() fails as with no descriptor left."""

    failed = False

    def accept(self) -> tuple[socket.socket, object]:
        if not ShortOfDescriptors.failed:
            ShortOfDescriptors.failed = True
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


def test_running_out_of_descriptors_pauses_accepting(loop: Loop) -> None:
    sock = ShortOfDescriptors(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = loop.run_until_complete(loop.create_server(Counting, sock=sock))
    client = socket.create_connection(sock.getsockname())
    try:
        turns(loop, 3)
        assert ShortOfDescriptors.failed and not Counting.made
        assert not server.is_serving()  # not spinning on a socket that stays readable
        loop.run_until_complete(asyncio.sleep(1.5))  # RETRY_SECONDS
        turns(loop, 3)
        assert len(Counting.made) == 1 and server.is_serving()
    finally:
        client.close()
        server.close()


def test_servers_it_binds_itself_stay_uvloops(loop: Loop) -> None:
    server = loop.run_until_complete(loop.create_server(Counting, "127.0.0.1", 0))
    try:
        assert not isinstance(server, AcceptingServer)
        assert server.sockets
    finally:
        server.close()


# --- through `cmhost serve` ---------------------------------------------------------------


BUSY = 40  # keep-alive connections, each with PIPELINED requests always waiting
PIPELINED = 3
NEW = 30
# Turns a new connection may take to its first answer: accepted in one, its transport and
# protocol made in the next two, its request read and answered in one or two more; margin
# for turns that find a busy connection's next request not yet read.
MAX_TURNS = 10


@pytest.fixture(scope="module")
def cm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmhost]:
    server = Cmhost(Path(tmp_path_factory.mktemp("eventloop"))).start()
    yield server
    server.stop()


def signed_describe_servers(cm: Cmhost) -> bytes:
    """One DescribeServers request as it goes on the wire, signed once and replayed."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    host = f"{cm.host}:{cm.port}"
    request = AWSRequest(method="POST", url=f"http://{host}/", data=b"{}", headers={
        "Host": host, "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "OpsWorksCM_V2016_11_01.DescribeServers"})
    SigV4Auth(Credentials("test", "test"), "opsworks-cm", "us-east-1").add_auth(request)
    head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
    return f"POST / HTTP/1.1\r\n{head}Content-Length: 2\r\n\r\n".encode() + b"{}"


def answers_in(buf: bytearray) -> int:
    """Complete answers at the start of `buf` (removed from it)."""
    count = 0
    while (end := buf.find(b"\r\n\r\n")) >= 0:
        head = bytes(buf[:end]).lower()
        assert head.startswith(b"http/1.1 200"), head[:200]
        length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        if len(buf) < end + 4 + length:
            break
        del buf[:end + 4 + length]
        count += 1
    return count


def test_new_connections_to_a_busy_server_are_answered_within_a_few_turns(cm: Cmhost) -> None:
    """BUSY connections each keep PIPELINED requests waiting, so every turn of the server's
    loop answers about one request on each: the busy answers counted while a connection
    waits, over BUSY, are the turns it waited. NEW connections open at once mid-load."""
    import selectors

    request = signed_describe_servers(cm)
    selector = selectors.DefaultSelector()
    bufs: dict[socket.socket, bytearray] = {}
    busy = [socket.create_connection((cm.host, cm.port)) for _ in range(BUSY)]
    for sock in busy:
        sock.sendall(request * PIPELINED)
        sock.setblocking(False)
        bufs[sock] = bytearray()
        selector.register(sock, selectors.EVENT_READ)
    answered = 0  # busy answers so far
    waited: dict[socket.socket, float] = {}  # new connection -> turns to its first answer
    fresh: list[socket.socket] = []
    new: set[socket.socket] = set()
    started_at = 0
    try:
        while len(waited) < NEW:
            if not fresh and answered >= 3 * BUSY:  # warmed up: the burst
                started_at = answered
                for _ in range(NEW):
                    sock = socket.socket()
                    sock.setblocking(False)
                    sock.connect_ex((cm.host, cm.port))
                    fresh.append(sock)
                    new.add(sock)
                    bufs[sock] = bytearray()
                    selector.register(sock, selectors.EVENT_WRITE)
            events = selector.select(timeout=30)
            assert events, "no answer in 30 s"
            for key, mask in events:
                sock = key.fileobj  # type: ignore[assignment]
                assert isinstance(sock, socket.socket)
                if mask & selectors.EVENT_WRITE:
                    sock.sendall(request)
                    selector.modify(sock, selectors.EVENT_READ)
                    continue
                data = sock.recv(1 << 18)
                assert data, "the server closed a connection"
                bufs[sock] += data
                got = answers_in(bufs[sock])
                if not got:
                    continue
                if sock not in new:
                    answered += got
                    sock.sendall(request * got)  # keep PIPELINED waiting
                elif sock not in waited:
                    waited[sock] = (answered - started_at) / BUSY
                    selector.unregister(sock)
    finally:
        selector.close()
        for sock in busy + fresh:
            sock.close()
    slowest = max(waited.values())
    assert slowest <= MAX_TURNS, (
        f"the last of {NEW} new connections waited {slowest:.0f} turns of the loop for its "
        f"first answer (turns: {sorted(round(t) for t in waited.values())})")
