"""PuppetDB's HTTP API as cmhost uses it: status, the admin archive (export and import), the
command and query APIs. Every call is TLS with a client certificate of the server's CA."""

from __future__ import annotations

import gzip
import http.client
import io
import json
import secrets
import ssl
import tarfile
import urllib.parse
from dataclasses import dataclass
from typing import Any

from cmhost.engines.base import EngineError, Health

STATUS_PATH = "/status/v1/services/puppetdb-status"
ARCHIVE_PATH = "/pdb/admin/v1/archive"
COMMAND_PATH = "/pdb/cmd/v1"
# Where every member of an export lives, and the member the import refuses to go without.
ARCHIVE_ROOT = "puppetdb-bak/"
ARCHIVE_METADATA = ARCHIVE_ROOT + "export-metadata.json"
_COMMAND_DIRS = ("facts", "catalogs", "reports", "configure_expiration", "catalog_inputs")


class PuppetDBRefused(EngineError):
    """PuppetDB answered, and refused (the message says how)."""


@dataclass(frozen=True)
class Status:
    """PuppetDB's own account of itself (the puppetdb-status service)."""

    http_status: int
    state: str  # "running", "starting" (maintenance mode: migrating, syncing), "error", ...
    queue_depth: int | None  # commands waiting to be stored
    write_db_up: bool
    read_db_up: bool

    def health(self) -> Health:
        """HEALTHY when "running" (both databases up), else UNHEALTHY saying why."""
        if self.state == "running":
            return Health("HEALTHY")
        if self.state == "starting":
            return Health("UNHEALTHY", "PuppetDB is starting (it prepares its database).")
        if not self.write_db_up or not self.read_db_up:
            return Health("UNHEALTHY", "PuppetDB cannot reach its database.")
        return Health("UNHEALTHY", f"PuppetDB's state is {self.state[:40]!r} "
                                   f"(HTTP {self.http_status}).")


class PuppetDBClient:
    """One PuppetDB at host:port."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, *,
                 timeout: float = 30.0) -> None:
        self.host, self.port, self.context, self.timeout = host, port, context, timeout

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """(HTTP status, body); OSError or http.client.HTTPException when it does not
        answer."""
        connection = http.client.HTTPSConnection(self.host, self.port, context=self.context,
                                                 timeout=self.timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def status(self) -> Status:
        code, data = self.request("GET", STATUS_PATH, headers={"Accept": "application/json"})
        try:
            value = json.loads(data)
            details = value.get("status") or {}
            depth = details.get("queue_depth")
            return Status(http_status=code, state=str(value.get("state", "unknown")),
                          queue_depth=depth if isinstance(depth, int) else None,
                          write_db_up=details.get("write_db_up?") is True,
                          read_db_up=details.get("read_db_up?") is True)
        except (ValueError, AttributeError):
            return Status(http_status=code, state="unknown", queue_depth=None,
                          write_db_up=False, read_db_up=False)

    def export(self) -> bytes:
        """The admin API's archive: a gzipped tar of every node's facts, catalog and reports
        as commands PuppetDB can take again."""
        code, data = self.request("GET", ARCHIVE_PATH)
        _expect(code, data, "export its data")
        check_archive(data)
        return data

    def import_archive(self, archive: bytes) -> None:
        """Hand an export to the admin API, which queues its commands (it returns before
        they are stored: see Status.queue_depth)."""
        boundary = f"cmhost-{secrets.token_hex(16)}"
        head = (f"--{boundary}\r\n"
                'Content-Disposition: form-data; name="archive"; '
                'filename="puppetdb-export.tgz"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n")
        body = b"".join([
            head.encode("ascii"),
            archive,
            f"\r\n--{boundary}--\r\n".encode(),
        ])
        code, data = self.request("POST", ARCHIVE_PATH, body, {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Accept": "application/json"})
        _expect(code, data, "import the backup's data")

    def submit(self, command: str, version: int, certname: str,
               payload: dict[str, Any]) -> None:
        """POST one command (replace_facts, store_report, replace_catalog...)."""
        query = urllib.parse.urlencode({"command": command, "version": version,
                                        "certname": certname})
        code, data = self.request("POST", f"{COMMAND_PATH}?{query}",
                                  json.dumps(payload).encode("utf-8"),
                                  {"Content-Type": "application/json"})
        _expect(code, data, f"take the {command} command of {certname}")

    def query(self, entity: str, query: object | None = None) -> list[dict[str, Any]]:
        """GET /pdb/query/v4/<entity>, with an AST query when given."""
        path = f"/pdb/query/v4/{entity}"
        if query is not None:
            path += "?" + urllib.parse.urlencode({"query": json.dumps(query)})
        code, data = self.request("GET", path, headers={"Accept": "application/json"})
        _expect(code, data, f"answer a query of {entity}")
        value = json.loads(data)
        if not isinstance(value, list):
            raise PuppetDBRefused(f"PuppetDB answered a query of {entity} with no list.")
        return value


def _expect(code: int, data: bytes, what: str) -> None:
    if code != 200:
        detail = data.decode("utf-8", "replace").strip().replace("\n", " ")[:300]
        raise PuppetDBRefused(f"PuppetDB refused to {what} (HTTP {code}): {detail}")


def check_archive(archive: bytes) -> int:
    """The number of commands a PuppetDB export holds; EngineError when it is not one (a
    gzipped tar with PuppetDB's metadata and only plain files under puppetdb-bak/)."""
    try:
        raw = gzip.decompress(archive)
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            members = tar.getmembers()
    except (OSError, EOFError, tarfile.TarError, ValueError):
        raise EngineError("The PuppetDB archive is not a gzipped tar file.") from None
    names = set()
    for member in members:
        if not member.name.startswith(ARCHIVE_ROOT) or ".." in member.name.split("/"):
            raise EngineError(f"The PuppetDB archive holds {member.name[:80]!r}, outside "
                              f"{ARCHIVE_ROOT}.")
        if not (member.isfile() or member.isdir()):
            raise EngineError(f"The PuppetDB archive member {member.name[:80]!r} is not a "
                              "plain file.")
        names.add(member.name)
    if ARCHIVE_METADATA not in names:
        raise EngineError("The PuppetDB archive has no export-metadata.json.")
    return sum(1 for name in names
               if name.split("/")[1:2] and name.split("/")[1] in _COMMAND_DIRS
               and name.endswith(".json"))
