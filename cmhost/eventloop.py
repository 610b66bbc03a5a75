"""The event loop `cmhost serve` runs: uvloop, whose servers accept every pending connection
each time their listening socket is readable.

Since libuv 1.45 (libuv/libuv#3696), which uvloop embeds, a server accepts one connection per
turn of the loop. A turn runs every request that arrived meanwhile: with 200 busy keep-alive
connections, 50-150 ms of DescribeServers. So N clients connecting together waited N turns
for their first answer, the last of 200 some 4-6 s (issue 13 point 7), while the connections
already open were answered in one or two turns. asyncio's own loop accepts up to the backlog
at once; so do these servers, and the rest of the loop stays uvloop (asyncio's costs ~7% more
CPU per request).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

import uvloop

log = logging.getLogger(__name__)

# accept() failing for want of descriptors or memory: the socket stays readable, so stop
# watching it for a while instead of spinning (as asyncio does).
RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
RETRY_SECONDS = 1.0

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class AcceptingServer(asyncio.AbstractServer):
    """Serves a bound, listening socket: when it is readable, every pending connection (up to
    `backlog` at a time) is accepted and made a transport of the loop, with a protocol from
    `protocol_factory`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol_factory: ProtocolFactory, backlog: int) -> None:
        self._loop = loop
        self._sock: socket.socket | None = sock
        self._factory = protocol_factory
        self._batch = max(1, backlog)
        self._watching = False
        self._retry: asyncio.TimerHandle | None = None
        # The tasks making transports: the loop keeps only weak references to tasks.
        self._making: set[asyncio.Task[None]] = set()
        sock.setblocking(False)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._sock is None else (self._sock,)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._watching

    async def start_serving(self) -> None:
        self._watch()

    async def serve_forever(self) -> None:
        self._watch()
        await self._loop.create_future()  # until cancelled

    def close(self) -> None:
        """Stop accepting and close the listening socket; connections made stay open (as
        asyncio's servers leave them)."""
        self._unwatch()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def wait_closed(self) -> None:
        return

    def _watch(self) -> None:
        self._retry = None
        if self._sock is not None and not self._watching:
            self._loop.add_reader(self._sock.fileno(), self._accept)
            self._watching = True

    def _unwatch(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._watching and self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
        self._watching = False

    def _accept(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(self._batch):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # none left
            except ConnectionAbortedError:
                continue  # that client gave up while it waited
            except OSError as exc:
                if exc.errno not in RESOURCE_ERRORS:
                    raise  # the loop's exception handler logs it
                log.warning("cannot accept connections (%s); trying again in %g s", exc,
                            RETRY_SECONDS)
                self._unwatch()
                self._retry = self._loop.call_later(RETRY_SECONDS, self._watch)
                return
            task = self._loop.create_task(self._serve(conn))
            self._making.add(task)
            task.add_done_callback(self._making.discard)

    async def _serve(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError:
            conn.close()  # gone before its transport was made: nobody to serve
        except BaseException:
            conn.close()  # a protocol that failed, or shutdown: never leak the socket
            raise


class Loop(uvloop.Loop):  # type: ignore[misc]
    """uvloop, serving a listening socket it is given with an AcceptingServer. A server it
    binds itself (host and port) or one with TLS stays uvloop's own: `cmhost serve` binds its
    sockets first (cmhost.listen) and speaks plain HTTP."""

    async def create_server(  # type: ignore[override]
            self, protocol_factory: ProtocolFactory, host: Any = None, port: Any = None, *,
            sock: socket.socket | None = None, backlog: int = 100, ssl: Any = None,
            start_serving: bool = True, **kwargs: Any) -> asyncio.AbstractServer:
        if sock is None or host is not None or port is not None or ssl is not None or kwargs:
            return await super().create_server(  # type: ignore[no-any-return]
                protocol_factory, host, port, sock=sock, backlog=backlog, ssl=ssl,
                start_serving=start_serving, **kwargs)
        server = AcceptingServer(self, sock, protocol_factory, backlog)
        if start_serving:
            await server.start_serving()
        return server


def new_event_loop() -> Loop:
    """The loop factory for uvicorn: `loop="cmhost.eventloop:new_event_loop"`."""
    return Loop()
