"""How `cmhost serve` listens: the socket bound before anything starts, and uvicorn's HTTP
protocol with time limits for clients that send a request slowly or not at all."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cmhost.config import Settings

# uvicorn's default: the socket is listened on again with it when serving starts.
BACKLOG = 2048


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for host:port (one per address the name gives, as asyncio would
    make them), or ValueError saying why not ("port in use").

    They listen at once: on Linux a socket that is only bound, with SO_REUSEADDR, does not
    keep a second process from binding the same port.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ValueError(f"cannot listen on {host!r}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ValueError(
                        f"port in use: {host}:{port} is taken by another process (another "
                        "cmhost?); stop it or choose another --port") from None
                if exc.errno == errno.EADDRNOTAVAIL and len(infos) > 1:
                    sockets.pop().close()  # this family is not enabled here (asyncio does so)
                    continue
                raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
            sock.listen(BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise ValueError(f"cannot listen on {host}:{port}: no usable address")
    return sockets


class TimedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request headers do not
    arrive within `header_timeout` seconds (from connecting, or from the first byte of a
    request on a kept-alive connection) or whose body does not within `body_timeout` after
    them. uvicorn itself limits only the idle time between requests (timeout_keep_alive).

    A timer is armed only while something is missing: a request that arrives in one piece
    costs an attribute write, no timer (beyond the one of a new connection).
    """

    header_timeout = 10.0
    body_timeout = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_headers = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if self._in_headers or cycle is None or cycle.response_complete:
            # A request's headers are incomplete, or bytes came between requests that
            # began none (blank lines): either way headers are owed.
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)
        elif cycle.more_body and self._body_timer is None:
            self._body_timer = self.loop.call_later(self.body_timeout, self._too_slow)

    def on_message_begin(self) -> None:
        self._in_headers = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None
        super().connection_lost(exc)

    def _too_slow(self) -> None:
        # Closing tells a request whose body was cut short that its client is gone
        # (http.disconnect): it is not executed.
        self._header_timer = self._body_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def http_protocol(header_timeout: float, body_timeout: float) -> type[TimedHttpProtocol]:
    """The protocol class uvicorn makes per connection, with these limits."""
    class CmhostHttpProtocol(TimedHttpProtocol):
        pass

    CmhostHttpProtocol.header_timeout = header_timeout
    CmhostHttpProtocol.body_timeout = body_timeout
    return CmhostHttpProtocol


def uvicorn_server(app: Any, settings: Settings) -> uvicorn.Server:
    # log_config=None: uvicorn's loggers keep cmhost's handlers (logs.py), so its lines come
    # out in --log-format too.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, lifespan="on",
                            access_log=False, log_level=settings.log_level, log_config=None,
                            http=http_protocol(settings.header_timeout, settings.body_timeout),
                            loop="cmhost.eventloop:new_event_loop", timeout_graceful_shutdown=5)
    return uvicorn.Server(config)
