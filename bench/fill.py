"""Bulk fill of a cmhost database for bench/scale.py: template rows made through the API, then
copied by the thousand straight into the tables (PostgreSQL COPY, SQLite executemany).

The templates are real: a Chef and a Puppet server created through boto3 on a `cmhost serve`
with a worker, a backup of the Chef one, and the events all that wrote. Each copy gets its own
id, name, account, ARN and times; the engine identity (certificates, password hashes) is the
template's, and its encrypted secrets stay bound to the template's ARN (nothing in a describe
call decrypts them).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import DEV_ACCOUNT, BenchError, Site, client, create_healthy_servers, post_json, running

TEMPLATE_NAMES = {"Chef": "tmpl-chef-0", "Puppet": "tmpl-puppet-0"}  # no base64 has a "-"
HOT_SERVER = "bench-chef-00"  # account 000000000000's first server holds the hot events
NOW = 1_790_000_000.0  # the newest row's time (2026-09): fixed, so runs are comparable
CHUNK = 50_000


@dataclass(frozen=True)
class Size:
    """How much a database holds. The hot server gets `hot_events`; the other servers share
    the rest of `events` evenly; `backups` are shared evenly by every server."""

    name: str
    accounts: int
    servers_per_account: int
    events: int
    hot_events: int
    backups: int

    @property
    def servers(self) -> int:
        return self.accounts * self.servers_per_account


def server_names(count: int) -> list[str]:
    """An account's server names: Chef and Puppet alternately, the hot one first."""
    return [f"bench-{'chef' if i % 2 == 0 else 'puppet'}-{i:02d}" for i in range(count)]


@dataclass
class Templates:
    servers: dict[str, dict[str, Any]]  # by engine family
    backup: dict[str, Any]
    events: list[tuple[str, str | None]] = field(default_factory=list)  # (message, log_url)


def make_templates(site: Site) -> Templates:
    """Create the template servers, a backup and their events through the API; read them back."""
    from sqlalchemy import create_engine, select

    from cmhost.storage import tables

    proc, port = site.serve("template", worker=True)
    with running([proc]):
        create_healthy_servers(port, list(TEMPLATE_NAMES.values()))
        api = client(port)
        chef = TEMPLATE_NAMES["Chef"]
        api.update_server(ServerName=chef, BackupRetentionCount=3)
        backup_id = api.create_backup(ServerName=chef, Description="nightly")["Backup"]["BackupId"]
        for _ in range(40):
            post_json(f"http://127.0.0.1:{port}/_cmhost/clock", {"advance": 60})
            found = api.describe_backups(BackupId=backup_id)["Backups"]
            if found and found[0]["Status"] == "OK":
                break
            time.sleep(0.1)
        else:
            raise BenchError(f"the template backup {backup_id} did not become OK")
    engine = create_engine(site.database_url)
    with engine.connect() as conn:
        servers = {row["engine"]: dict(row) for row in
                   conn.execute(select(tables.servers)).mappings()}
        backup = dict(conn.execute(select(tables.backups)).mappings().one())
        events = [(row["message"].replace(row["server_name"], "{name}"), row["log_url"])
                  for row in conn.execute(select(tables.events).order_by(tables.events.c.id))
                  .mappings()]
    engine.dispose()
    return Templates(servers={"Chef": servers["Chef"], "Puppet": servers["Puppet"]},
                     backup=backup, events=events)


# --- rows -----------------------------------------------------------------------------------


def _swap(value: Any, pairs: list[tuple[str, str]]) -> Any:
    """The value with every `old` replaced by `new` in its strings (recursively)."""
    if isinstance(value, str):
        for old, new in pairs:
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [_swap(v, pairs) for v in value]
    if isinstance(value, dict):
        return {k: _swap(v, pairs) for k, v in value.items()}
    return value


JSON_SERVER_COLUMNS = ("engine_public", "engine_attributes", "security_group_ids", "subnet_ids")


@dataclass(frozen=True)
class ServerCopy:
    id: str
    account: str
    name: str
    index: int  # 0 .. servers-1; 0 is the hot server


def server_rows(size: Size, templates: Templates) -> tuple[list[dict[str, Any]], list[ServerCopy]]:
    rows: list[dict[str, Any]] = []
    copies: list[ServerCopy] = []
    names = server_names(size.servers_per_account)
    for a in range(size.accounts):
        account = f"{a:012d}"  # account 0 is the development key's account
        for j, name in enumerate(names):
            family = "Chef" if "chef" in name else "Puppet"
            tmpl = templates.servers[family]
            copy = ServerCopy(str(uuid.uuid4()), account, name, len(copies))
            names_only = [(tmpl["id"], copy.id), (tmpl["name"], name)]
            everything = names_only + [(DEV_ACCOUNT, account)]
            row = {}
            for column, value in tmpl.items():
                if column == "engine_secrets_enc":
                    row[column] = value  # bound to the template's ARN: kept as it is
                elif column in JSON_SERVER_COLUMNS:  # certificates: names only
                    row[column] = _swap(value, names_only)
                else:
                    row[column] = _swap(value, everything)
            created = NOW - 400 * 86400 + copy.index * 60.0
            row.update(id=copy.id, account=account, name=name, status="HEALTHY",
                       created_at=created, updated_at=created)
            rows.append(row)
            copies.append(copy)
    if copies[0].name != HOT_SERVER or copies[0].account != DEV_ACCOUNT:
        raise BenchError("the hot server must be account 000000000000's first server")
    return rows, copies


def event_rows(size: Size, templates: Templates, copies: list[ServerCopy]
               ) -> Iterator[tuple[str, str, float, str, str | None]]:
    """(server_id, server_name, created_at, message, log_url), oldest first per server."""
    others = len(copies) - 1
    rest = size.events - size.hot_events
    if rest < 0 or (others == 0 and rest > 0):
        raise BenchError(f"{size.name}: events do not add up")
    per, extra = divmod(rest, others) if others else (0, 0)
    messages = templates.events
    for copy in copies:
        count = size.hot_events if copy.index == 0 else per + (1 if copy.index <= extra else 0)
        step = 60.0 if copy.index == 0 else 3600.0
        start = NOW - count * step - copy.index * 0.001
        for k in range(count):
            message, log_url = messages[k % len(messages)]
            yield (copy.id, copy.name, start + k * step, message.replace("{name}", copy.name),
                   log_url)


def backup_rows(size: Size, templates: Templates, copies: list[ServerCopy]
                ) -> Iterator[dict[str, Any]]:
    tmpl = templates.backup
    per, extra = divmod(size.backups, len(copies))
    k = 0
    for copy in copies:
        for n in range(per + (1 if copy.index < extra else 0)):
            at = NOW - k * 7.001  # distinct milliseconds: BackupIds are unique across accounts
            moment = datetime.fromtimestamp(at, UTC)
            backup_id = f"{copy.name}-{moment:%Y%m%d%H%M%S}{int(at * 1000) % 1000:03d}"
            pairs = [(tmpl["id"], backup_id), (tmpl["server_name"], copy.name),
                     (DEV_ACCOUNT, copy.account)]
            row = {column: _swap(value, pairs) for column, value in tmpl.items()}
            row.update(id=backup_id, account=copy.account, server_id=copy.id,
                       server_name=copy.name, created_at=at, status="OK",
                       backup_type="AUTOMATED" if n % 2 == 0 else "MANUAL",
                       settings=tmpl["settings"])
            k += 1
            yield row


# --- writing ----------------------------------------------------------------------------


def fill(url: str, size: Size, templates: Templates) -> dict[str, float]:
    """Insert the size's rows into the migrated, empty database at `url`; seconds per table."""
    from sqlalchemy import create_engine, insert

    from cmhost.storage import tables

    timings: dict[str, float] = {}
    servers, copies = server_rows(size, templates)
    engine = create_engine(url)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(insert(tables.accounts), [
            {"account": f"{a:012d}", "created_at": NOW - 500 * 86400}
            for a in range(size.accounts)])
        for chunk in _chunks(servers, 5_000):
            conn.execute(insert(tables.servers), chunk)
    timings["servers"] = time.perf_counter() - started

    event_columns = ("server_id", "server_name", "created_at", "message", "log_url")
    backup_columns = tuple(c.name for c in tables.backups.columns)
    json_columns = {c.name for c in tables.backups.columns if c.type.__class__.__name__ == "JSON"}
    started = time.perf_counter()
    if engine.dialect.name == "postgresql":
        engine.dispose()
        _copy(url, "events", event_columns, event_rows(size, templates, copies))
        timings["events"] = time.perf_counter() - started
        started = time.perf_counter()
        _copy(url, "backups", backup_columns,
              (tuple(json.dumps(r[c]) if c in json_columns and r[c] is not None else r[c]
                     for c in backup_columns) for r in backup_rows(size, templates, copies)))
        timings["backups"] = time.perf_counter() - started
        started = time.perf_counter()
        _vacuum_analyze(url)
        timings["vacuum analyze"] = time.perf_counter() - started
    else:
        with engine.begin() as conn:
            for chunk in _chunks((dict(zip(event_columns, e, strict=True))
                                  for e in event_rows(size, templates, copies)), CHUNK):
                conn.execute(insert(tables.events), chunk)
        timings["events"] = time.perf_counter() - started
        started = time.perf_counter()
        with engine.begin() as conn:
            for chunk in _chunks(backup_rows(size, templates, copies), CHUNK):
                conn.execute(insert(tables.backups), chunk)
        timings["backups"] = time.perf_counter() - started
        engine.dispose()
    return timings


def _chunks(rows: Iterable[Any], n: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _driver_url(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


def _copy(url: str, table: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]
          ) -> None:
    import psycopg

    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with psycopg.connect(_driver_url(url)) as conn, conn.cursor() as cur, \
            cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _vacuum_analyze(url: str) -> None:
    """What autovacuum does on its own within a minute of a bulk load: planner statistics."""
    import psycopg

    with psycopg.connect(_driver_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def database_bytes(url: str) -> int:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    import psycopg

    with psycopg.connect(_driver_url(url)) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def count_rows(url: str) -> Mapping[str, int]:
    from sqlalchemy import create_engine, func, select

    from cmhost.storage import tables

    engine = create_engine(url)
    with engine.connect() as conn:
        counts = {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                  for t in (tables.servers, tables.events, tables.backups, tables.accounts)}
    engine.dispose()
    return counts
