"""Benchmark: DescribeServers and DescribeEvents on a large database (10,000 servers across
1,000 accounts, 1,000,000 events, 100,000 backups) against a small one (10 servers), on SQLite
and PostgreSQL, with the no-op ASGI baseline measured in the same run.

What it measures. For each backend, both databases are made and served at once, each by one
`cmhost serve --no-worker` process, and wrk replays one signed request at a time:
`DescribeServers` of account 000000000000 (its 10 servers), and `DescribeEvents` of its hot
server `bench-chef-00` with `MaxResults` = --page-size: the first page, the second page (the
NextToken after the first) and a deep page (the NextToken after 90% of the hot server's
events), the tokens found by walking the pages through the API first. The hot server holds
100,000 of the 1,000,000 events in the large database (the other 900,000 are spread over the
other 9,999 servers) and 1,000 in the small one, so both databases serve full pages of the
same size. Every figure (requests/s, p50/p99 latency) is measured in turn with the others,
small and large back to back, --rounds times, and is the median of its rounds: load from
elsewhere on the machine then moves both sides of a comparison alike.

How the databases are made. A template Chef server, Puppet server and backup are created
through boto3 on a `cmhost serve` with a worker; after `cmhost db upgrade` on a fresh database
(PostgreSQL: a new `cmhost_bench_*` database, dropped afterwards), their rows are copied with
new ids, names, accounts, ARNs and times straight into the tables (bench/fill.py: COPY on
PostgreSQL, executemany on SQLite), then PostgreSQL gets the VACUUM ANALYZE autovacuum would
run by itself. No worker runs during the measurement, so events retention
(--events-per-server, default 10,000) trims nothing.

Targets (issue 6): DescribeServers on the large database at least 25% of the baseline's
requests/s; DescribeEvents page latency (p50 and p99, each page) on the large database within
1.5x of the small one. The verdict does not change the exit status; errors do.

    .venv/bin/python bench/scale.py [--backends sqlite,postgresql] [--page-size 100]
                                    [--scale 1] [--duration 5s] [--warmup 1s] [--rounds 3]
                                    [--connections 16] [--json]

A quick check that it runs: `--scale 0.01 --rounds 1 --duration 1s --warmup 1s` (a large
database of 10 accounts, 10,000 events; its verdicts are not issue 6's).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import (
    BenchError,
    Call,
    Load,
    Result,
    Site,
    Target,
    add_load_arguments,
    baseline_target,
    check_tools,
    client,
    finished,
    fresh_database,
    machine,
    main_guard,
    measure_in_turn,
    parse_backends,
    print_machine,
    running,
    table,
    verdict,
)
from fill import HOT_SERVER, Size, Templates, count_rows, database_bytes, fill, make_templates

SMALL = Size("small", accounts=1, servers_per_account=10, events=1_000 + 9 * 3,
             hot_events=1_000, backups=10)
LARGE = Size("large", accounts=1_000, servers_per_account=10, events=1_000_000,
             hot_events=100_000, backups=100_000)
DEEP_FRACTION = 0.9  # the deep page comes after this share of the hot server's events


def large_size(scale: float) -> Size:
    """The large database shrunk by `scale` (1: full size) for a quick run. The hot server
    keeps at least the small database's events, so both serve the same pages."""
    accounts = max(1, round(LARGE.accounts * scale))
    hot = max(SMALL.hot_events, round(LARGE.hot_events * scale))
    others = accounts * LARGE.servers_per_account - 1
    return Size("large", accounts=accounts, servers_per_account=LARGE.servers_per_account,
                events=max(round(LARGE.events * scale), hot + others), hot_events=hot,
                backups=max(round(LARGE.backups * scale), accounts * LARGE.servers_per_account))


def check_page_size(page: int, sizes: tuple[Size, ...]) -> None:
    """Each database's hot server must fill the first, second and deep pages."""
    if not 1 <= page <= 1000:
        raise BenchError("--page-size must be 1 to 1000 (cmhost pages hold at most 1000)")
    for size in sizes:
        deep = deep_offset(size, page)
        if deep < page or size.hot_events - deep < page:
            raise BenchError(f"--page-size {page} is too large: the {size.name} database's hot "
                             f"server holds {size.hot_events:,} events, too few for full first, "
                             f"second and deep pages")


def deep_offset(size: Size, page: int) -> int:
    """How many events are behind the deep page: a whole number of pages, about 90%."""
    return int(size.hot_events * DEEP_FRACTION) // page * page
SERVERS_TARGET = 0.25  # DescribeServers on the large database / no-op baseline, requests/s
LATENCY_TARGET = 1.5  # DescribeEvents page latency, large / small

PAGES = ("first page", "second page", "deep page")
OPERATIONS = ("DescribeServers", *(f"DescribeEvents {page}" for page in PAGES))


@dataclass
class Database:
    """One filled database, the API process serving it, and what was measured on it."""

    backend: str
    size: Size
    rows: dict[str, int]
    bytes: int
    fill_seconds: dict[str, float]
    walk_seconds: float = 0.0
    deep_offset: int = 0
    port: int = 0
    calls: dict[str, tuple[Call, str, int]] = field(default_factory=dict)  # call, member, count
    results: dict[str, Result] = field(default_factory=dict)


def walk_to(port: int, page: int, offset: int) -> tuple[str, str, float]:
    """Page through the hot server's events until `offset` are behind: the NextToken after
    the first page, the one after `offset` events, and how long the walk took."""
    api = client(port)
    started = time.perf_counter()
    seen, token, second = 0, "", ""
    while seen < offset or not second:
        params: dict[str, Any] = {"ServerName": HOT_SERVER, "MaxResults": page}
        if token:
            params["NextToken"] = token
        answer = api.describe_events(**params)
        seen += len(answer["ServerEvents"])
        token = str(answer.get("NextToken") or "")
        if not token:
            raise BenchError(f"the events of {HOT_SERVER} ended after {seen}, before {offset}")
        second = second or token
    return second, token, time.perf_counter() - started


def open_database(stack: ExitStack, backend: str, size: Size, templates: Templates, key: Path,
                  page: int, root: Path) -> Database:
    """Create and fill the database, start its API process (both live as long as `stack`),
    and sign the requests wrk will replay."""
    workdir = root / f"{backend}-{size.name}"
    (workdir / "key").mkdir(parents=True)
    shutil.copy(key, workdir / "key" / "master.key")  # the templates' secrets stay readable
    url = stack.enter_context(fresh_database(backend, workdir))
    site = Site(workdir, url)
    site.cli("db", "upgrade")
    fill_seconds = fill(url, size, templates)
    db = Database(backend, size, dict(count_rows(url)), database_bytes(url), fill_seconds)
    db.deep_offset = deep_offset(size, page)
    api, db.port = site.serve(f"api-{backend}-{size.name}")
    stack.enter_context(running([api]))
    second, deep, db.walk_seconds = walk_to(db.port, page, db.deep_offset)
    events = {"ServerName": HOT_SERVER, "MaxResults": page}
    tokens = {"first page": {}, "second page": {"NextToken": second},
              "deep page": {"NextToken": deep}}
    db.calls["DescribeServers"] = (Call.sign(db.port, "DescribeServers"), "Servers",
                                   size.servers_per_account)
    for name, token in tokens.items():
        db.calls[f"DescribeEvents {name}"] = (
            Call.sign(db.port, "DescribeEvents", {**events, **token}), "ServerEvents", page)
    return db


def measure_backend(backend: str, sizes: tuple[Size, ...], templates: Templates, key: Path,
                    page: int, load: Load, root: Path) -> tuple[Result, list[Database]]:
    """The baseline and both databases, every figure measured in turn with the others (see
    common.measure_in_turn): the small database's and the large one's back to back."""
    with ExitStack() as stack:
        databases = [open_database(stack, backend, size, templates, key, page, root)
                     for size in sizes]
        # The baseline replays the small database's DescribeServers request, byte for byte.
        baseline = baseline_target(stack, root, databases[0].calls["DescribeServers"][0], 1)
        targets: list[tuple[Database | None, str, Target]] = [(None, "", baseline)]
        for name in OPERATIONS:
            for db in databases:
                call, member, expected = db.calls[name]
                size = call.signed_again().check(db.port, member, expected)
                script = root / f"{backend}-{db.size.name}-{name.replace(' ', '-')}.lua"
                targets.append((db, name, Target(f"{backend} {db.size.name} {name}",
                                                 (db.port,), call, script, size)))
        found = measure_in_turn([t for _, _, t in targets], load)
        for owner, name, target in targets:
            if owner is not None:
                owner.results[name] = found[target.name]
    return found[baseline.name], databases


@dataclass
class Verdicts:
    rows: list[tuple[str, str, float, float, bool]] = field(default_factory=list)

    def add(self, backend: str, what: str, value: float, target: float, ok: bool) -> None:
        self.rows.append((backend, what, value, target, ok))


def judge(databases: list[Database], baselines: dict[str, Result]) -> Verdicts:
    found = Verdicts()
    by_key = {(d.backend, d.size.name): d for d in databases}
    for backend in dict.fromkeys(d.backend for d in databases):
        large, small = by_key.get((backend, "large")), by_key.get((backend, "small"))
        if large is None or small is None:
            continue
        ratio = (large.results["DescribeServers"].requests_per_second
                 / baselines[backend].requests_per_second)
        found.add(backend, "DescribeServers large / baseline, requests/s", ratio,
                  SERVERS_TARGET, ratio >= SERVERS_TARGET)
        for page in PAGES:
            big, little = (large.results[f"DescribeEvents {page}"],
                           small.results[f"DescribeEvents {page}"])
            for pct in ("p50", "p99"):
                value = getattr(big, f"{pct}_ms") / getattr(little, f"{pct}_ms")
                found.add(backend, f"DescribeEvents {page} {pct} large / small", value,
                          LATENCY_TARGET, value <= LATENCY_TARGET)
    return found


def run(args: argparse.Namespace) -> int:
    load = Load.from_args(args)
    check_tools(load)
    if not 0 < args.scale <= 1:
        raise BenchError("--scale must be more than 0 and at most 1")
    sizes = (SMALL, large_size(args.scale))
    check_page_size(args.page_size, sizes)
    info = machine()
    databases: list[Database] = []
    with tempfile.TemporaryDirectory(prefix="cmhost-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        template_site = Site(root / "template", f"sqlite:///{root / 'template' / 'db.sqlite'}",
                             ["--clock", "virtual", "--provisioning-seconds", "0"])
        templates = make_templates(template_site)
        template_seconds = time.perf_counter() - started
        key = root / "template" / "key" / "master.key"
        baselines: dict[str, Result] = {}
        for backend in args.backends:
            baselines[backend], found = measure_backend(backend, sizes, templates, key,
                                                        args.page_size, load, root)
            databases += found
    verdicts = judge(databases, baselines)
    problems = [p for r in [*baselines.values(),
                            *(r for d in databases for r in d.results.values())]
                for p in r.problems()]
    info = finished(info)
    if args.json:
        print(json.dumps({
            "machine": info, "load": asdict(load), "page_size": args.page_size,
            "scale": args.scale,
            "template_seconds": round(template_seconds, 2),
            "baselines": {b: asdict(r) for b, r in baselines.items()},
            "databases": [{"backend": d.backend, "size": asdict(d.size), "rows": d.rows,
                           "bytes": d.bytes, "fill_seconds": d.fill_seconds,
                           "walk_seconds": d.walk_seconds, "deep_offset": d.deep_offset,
                           "results": {k: asdict(v) for k, v in d.results.items()}}
                          for d in databases],
            "verdicts": [{"backend": b, "what": w, "value": round(v, 4), "target": t,
                          "pass": ok} for b, w, v, t, ok in verdicts.rows],
            "pass": all(ok for *_, ok in verdicts.rows), "errors": problems}, indent=2))
    else:
        print_report(info, load, args.page_size, baselines, databases, verdicts)
    if problems:
        raise BenchError("; ".join(problems))
    return 0


def print_report(info: dict[str, Any], load: Load, page: int, baselines: dict[str, Result],
                 databases: list[Database], verdicts: Verdicts) -> None:
    print("DescribeServers and DescribeEvents on a large database vs a small one, and a no-op "
          "ASGI app")
    print_machine(info)
    print(f"load: {load.describe()}; DescribeEvents MaxResults={page}")
    print()
    print(table(["database", "backend", "servers", "events", "backups", "size MB",
                 "fill s", "walk s"],
                [[d.size.name, d.backend, d.rows["servers"], d.rows["events"],
                  d.rows["backups"], d.bytes / 1e6, sum(d.fill_seconds.values()),
                  d.walk_seconds] for d in databases]))
    print("(fill s: bulk inserts after `cmhost db upgrade`; walk s: paging through the hot "
          "server's events to the deep page's NextToken)")
    if any(d.size.name == LARGE.name and d.size != LARGE for d in databases):
        print("NOTE: the large database is shrunk by --scale; the verdicts below are not "
              "issue 6's, which are about the full size")
    print()
    lines: list[list[Any]] = []
    for backend, base in baselines.items():
        lines.append(["no-op baseline", backend, "", base.requests_per_second, base.p50_ms,
                      base.p99_ms, ""])
        for d in (d for d in databases if d.backend == backend):
            lines += [operation_line(d, name, page) for name in OPERATIONS]
    print(table(["", "backend", "database", "requests/s", "p50 ms", "p99 ms", "page"], lines))
    print()
    print(table(["target", "backend", "measured", "target", "verdict"],
                [[what, backend, f"{value:.3f}",
                  f">= {target:.2f}" if "baseline" in what else f"<= {target:.2f}",
                  verdict(ok)] for backend, what, value, target, ok in verdicts.rows]))


def operation_line(d: Database, name: str, page: int) -> list[Any]:
    r = d.results[name]
    where = {"DescribeEvents second page": f"after {page:,}",
             "DescribeEvents deep page": f"after {d.deep_offset:,}"}.get(name, "")
    return [name, d.backend, d.size.name, r.requests_per_second, r.p50_ms, r.p99_ms, where]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", type=parse_backends, default=["sqlite", "postgresql"],
                        help="comma-separated: sqlite, postgresql (default both)")
    parser.add_argument("--page-size", type=int, default=100,
                        help="DescribeEvents MaxResults (default 100)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="shrink the large database for a quick run, e.g. 0.01: 10 "
                             "accounts, 10,000 events (default 1: full size)")
    add_load_arguments(parser, duration=5.0, warmup=1.0, rounds=3)
    return parser


if __name__ == "__main__":
    sys.exit(main_guard(run, None, build_parser()))
