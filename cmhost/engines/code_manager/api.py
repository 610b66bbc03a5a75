"""The Code Manager HTTPS API of one server, as Puppet Enterprise documents it:

    POST /code-manager/v1/deploys          {"environments": [...]} or {"deploy-all": true},
                                           "wait": true to answer once deployed,
                                           "deploy-modules": false to leave modules as they are
    POST /code-manager/v1/webhook?type=github|gitlab&token=...   a git host's push event:
                                           `ref: refs/heads/<branch>` deploys that environment
    GET  /code-manager/v1/deploys/status   what is new, queued, deploying, and recent failures

Every request needs the server's token, in an `X-Authentication` header or the `token`
query parameter; without it, or with another, the answer is 401 and nothing is deployed.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import sys
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cmhost.engines.code_manager.deploys import DeployQueue
from cmhost.engines.code_manager.token import token_matches
from cmhost.engines.r10k import environment_name

log = logging.getLogger("cmhost.code_manager")

PREFIX = "/code-manager/v1"
TOKEN_HEADER = "X-Authentication"
MAX_BODY = 10 * 1024 * 1024  # git hosts' push payloads can be large
REQUEST_TIMEOUT = 30.0
WEBHOOK_TYPES = ("github", "gitlab")


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


def _error(status: int, kind: str, msg: str) -> Answer:
    return Answer(status, {"kind": kind, "msg": msg, "details": None})


def _bad_request(msg: str) -> Answer:
    return _error(400, "puppetlabs.code-manager/invalid-request", msg)


class CodeManagerApp:
    """The API's rules, apart from HTTP (see the module docstring)."""

    def __init__(self, deploys: DeployQueue, token_sha256: str) -> None:
        self.deploys = deploys
        self._digest = token_sha256

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path.rstrip("/")
        routes = {f"{PREFIX}/deploys": ("POST", self._deploys),
                  f"{PREFIX}/webhook": ("POST", self._webhook),
                  f"{PREFIX}/deploys/status": ("GET", self._status)}
        if path not in routes:
            return _error(404, "puppetlabs.code-manager/not-found",
                          f"No Code Manager endpoint at {path[:100]}")
        allowed, route = routes[path]
        denied = self._authenticate(headers, query)
        if denied is not None:
            return denied
        if method != allowed:
            return _error(405, "puppetlabs.code-manager/method-not-allowed",
                          f"{path} accepts {allowed} only")
        return route(query, headers, body)

    def _authenticate(self, headers: dict[str, str], query: dict[str, str]) -> Answer | None:
        token = headers.get(TOKEN_HEADER.lower()) or query.get("token") or ""
        if not token:
            return _error(401, "puppetlabs.rbac/user-unauthenticated",
                          "Route requires authentication: send the token of the server's "
                          f"starter kit in an {TOKEN_HEADER} header or a token parameter")
        if not token_matches(token, self._digest):
            return _error(401, "puppetlabs.rbac/token-invalid",
                          "The provided token is not this server's")
        return None

    def _deploys(self, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return _bad_request("The body is not JSON")
        if not isinstance(request, dict):
            return _bad_request("The body must be a JSON object")
        flags = {}
        for key, default in (("deploy-all", False), ("wait", False), ("deploy-modules", True),
                             ("dry-run", False)):
            value = request.get(key, default)
            if not isinstance(value, bool):
                return _bad_request(f"{key} must be true or false")
            flags[key] = value
        if flags["dry-run"]:
            return _bad_request("dry-run is not supported; deploy an environment instead")
        environments: list[str] | None = None
        if not flags["deploy-all"]:
            names = request.get("environments")
            if (not isinstance(names, list) or not names
                    or not all(isinstance(n, str) and n for n in names)):
                return _bad_request('Give "environments" (a list of environment names) or '
                                    '"deploy-all": true')
            environments = names
        job = self.deploys.submit(environments, modules=flags["deploy-modules"],
                                  reason="Code Manager API request")
        if flags["wait"]:
            job.done.wait()
        return Answer(200, job.entries(answered_now=not flags["wait"]))

    def _webhook(self, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        kind = query.get("type", "")
        if kind not in WEBHOOK_TYPES:
            return _bad_request(f"type must be one of {', '.join(WEBHOOK_TYPES)}")
        if headers.get("x-github-event") == "ping":
            return Answer(200, {"status": "ok", "msg": "pong"})
        try:
            event = json.loads(body or b"{}")
        except ValueError:
            return _bad_request("The body is not JSON")
        ref = event.get("ref") if isinstance(event, dict) else None
        if not isinstance(ref, str) or not ref:
            return _bad_request("The payload has no ref")
        if not ref.startswith("refs/heads/"):
            return Answer(200, [])  # a tag: no environment
        branch = ref[len("refs/heads/"):]
        reason = f"webhook: push to {branch[:100]}"
        if event.get("deleted") is True:
            # Every environment, so that the branch's is no longer served.
            job = self.deploys.submit(None, reason=reason)
        else:
            job = self.deploys.submit([environment_name(branch)], reason=reason)
        return Answer(200, job.entries(answered_now=True))

    def _status(self, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        return Answer(200, self.deploys.status())


class _Handler(BaseHTTPRequestHandler):
    server_version = "cmhost-code-manager"
    protocol_version = "HTTP/1.1"
    server: CodeManagerServer

    def setup(self) -> None:
        # The TLS handshake happens here, in the connection's own thread, so a slow client
        # holds up nobody else.
        self.request.settimeout(REQUEST_TIMEOUT)
        self.request = self.server.context.wrap_socket(self.request, server_side=True)
        super().setup()

    def _serve(self) -> None:
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > MAX_BODY:
            answer = _bad_request(f"The body must have a Content-Length of at most {MAX_BODY}")
            self.close_connection = True
        else:
            body = self.rfile.read(int(length))
            headers = {k.lower(): v for k, v in self.headers.items()}
            answer = self.server.app.handle(self.command, self.path, headers, body)
        data = (json.dumps(answer.body, indent=2) + "\n").encode("utf-8")
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        # The request line may carry the token (?token=...): log the path only.
        path = urlsplit(getattr(self, "path", "") or "").path[:200]  # unset: unparsable
        log.info("%s %s %s", getattr(self, "command", None), path,
                 args[1] if len(args) > 1 else "")


class CodeManagerServer(ThreadingHTTPServer):
    """The API over TLS with the server's certificate."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, app: CodeManagerApp,
                 context: ssl.SSLContext) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.app = app
        self.context = context
        super().__init__((host, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Called from within the handler's except clause: the failure is the current one.
        error = sys.exc_info()[1]
        log.warning("connection from %s failed: %r", client_address, error)


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context
