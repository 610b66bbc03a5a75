"""GET /metrics: who may scrape, and the answer in the Prometheus text format.

Who may scrape. A caller on this machine (its address is loopback), or anyone who sends
`Authorization: Bearer <--metrics-token>`; a token that is given and wrong is refused even
from loopback (as the admin token is). The caller's address is the one uvicorn reports: behind
a reverse proxy on this machine that sets X-Forwarded-For (uvicorn trusts it from 127.0.0.1),
it is the proxy's client, so remote scrapes through the proxy still need the token.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from concurrent.futures import Executor

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from cmhost.api.protocol import Receive, Scope, Send, new_request_id, send_json
from cmhost.config import is_loopback

PATH = "/metrics"
JSON = b"application/json"
# Every name and label here is a classic one, so the answer is also the 0.0.4 text format,
# which every Prometheus (2.x included) reads; 1.0.0 is the library's default.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4.encode()


def bearer_token(scope: Scope) -> str | None:
    """The bearer token of the request, if it has one."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return None


def token_matches(given: str, expected: str | None) -> bool:
    """Compared in constant time; no token configured matches nothing."""
    return expected is not None and hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


def scrape_refusal(client_host: str | None, token: str | None, metrics_token: str | None
                   ) -> str | None:
    """Why a scrape from `client_host` with `token` is refused; None when it is allowed."""
    if token is not None:
        if token_matches(token, metrics_token):
            return None
        if metrics_token is None:
            return ("this cmhost has no metrics token (--metrics-token, CMHOST_METRICS_TOKEN); "
                    "scrape from this machine without one")
        return "the metrics token is not valid"
    if client_host is not None and is_loopback(client_host):
        return None
    how = ("send Authorization: Bearer <the token cmhost was started with (--metrics-token)>"
           if metrics_token is not None else
           "start cmhost with --metrics-token (CMHOST_METRICS_TOKEN) and send "
           "Authorization: Bearer <token>")
    return f"scraping from another machine needs the metrics token: {how}"


class ScrapeApp:
    """Serves GET /metrics with what `exposition()` returns (run on the executor: it reads
    files and the database)."""

    def __init__(self, exposition: Callable[[], bytes], executor: Executor, *,
                 metrics_token: str | None) -> None:
        self.exposition = exposition
        self.executor = executor
        self.metrics_token = metrics_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        client = scope.get("client")
        refusal = scrape_refusal(client[0] if client else None, bearer_token(scope),
                                 self.metrics_token)
        if refusal is not None:
            await send_json(send, 403, {"__type": "AccessDeniedException",
                                        "message": f"Not allowed to scrape: {refusal}."},
                            request_id, "AccessDeniedException", content_type=JSON)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await send_json(send, 405, {"__type": "MethodNotAllowedException",
                                        "message": f"{scope['method']} is not supported; "
                                        "scrape with GET /metrics."},
                            request_id, "MethodNotAllowedException", content_type=JSON)
            return
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(self.executor, self.exposition)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", CONTENT_TYPE),
            (b"content-length", str(len(body)).encode()),
            (b"x-amzn-requestid", request_id.encode())]})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})
