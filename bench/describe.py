"""Benchmark: DescribeServers and DescribeEvents on SQLite and PostgreSQL, one API process and
two, each against the no-op ASGI baseline on as many processes, measured in the same run.

What it measures. Requests per second and p50/p99 latency of one signed request replayed by
wrk: `DescribeServers` (10 HEALTHY servers in the account, 5 Chef and 5 Puppet) and
`DescribeEvents` of one of them (its few creation events). cmhost runs as `cmhost serve
--no-worker` processes sharing one database, data directory and master key: one process, then
two on different ports with one wrk per process running at the same time (requests/s summed,
latency percentiles the worse of the two). The baseline is a no-op ASGI app served by the same
uvicorn configuration, on one process and on two, loaded the same way. The baseline and the
cmhost figures it is compared with are measured in turn, --rounds times, and each figure is
the median of its rounds, so that load from elsewhere on the machine affects both alike. Each
database is fresh (PostgreSQL: a new `cmhost_bench_*` database, dropped afterwards) and is
filled through the API by a `cmhost serve` with a worker that is stopped before measuring.

Target (issue 6): DescribeServers on one process at least 25% of the baseline's requests/s,
on each backend. Other ratios are shown for information. The verdict does not change the exit
status; errors (a non-200 answer, a socket error, a process that fails) do.

    .venv/bin/python bench/describe.py [--backends sqlite,postgresql] [--processes 1,2]
                                       [--duration 5s] [--warmup 1s] [--rounds 3]
                                       [--connections 16] [--json]

A quick check that it runs: `--backends sqlite --rounds 1 --duration 2s --warmup 1s` (~30 s).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass
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
    create_healthy_servers,
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

TARGET_RATIO = 0.25
SERVER_NAMES = [f"bench-{'chef' if i % 2 == 0 else 'puppet'}-{i:02d}" for i in range(10)]
EVENTS_OF = SERVER_NAMES[0]
SITE_OPTIONS = ["--clock", "virtual", "--provisioning-seconds", "0"]


@dataclass
class Row:
    backend: str
    processes: int
    operation: str
    result: Result
    baseline: Result  # the no-op app on as many processes, measured just before

    @property
    def ratio(self) -> float:
        return self.result.requests_per_second / self.baseline.requests_per_second

    @property
    def target(self) -> bool | None:
        """PASS/FAIL where the issue sets a target, None where the figure is informative."""
        if self.operation == "DescribeServers" and self.processes == 1:
            return self.ratio >= TARGET_RATIO
        return None


def measure_backend(backend: str, process_counts: list[int], load: Load) -> list[Row]:
    """The backend's figures on each process count, each next to the baseline on as many
    processes, all measured in turn (see common.measure_in_turn)."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="cmhost-bench-") as tmp, \
            fresh_database(backend, Path(tmp)) as url:
        workdir = Path(tmp)
        site = Site(workdir, url, SITE_OPTIONS)
        setup, port = site.serve("setup", worker=True)
        with running([setup]):
            create_healthy_servers(port, SERVER_NAMES)
            event_count = len(client(port).describe_events(ServerName=EVENTS_OF)["ServerEvents"])
        for count in process_counts:
            with ExitStack() as stack:
                started = [site.serve(f"api-{backend}-{count}-{i}") for i in range(count)]
                stack.enter_context(running([proc for proc, _ in started]))
                ports = tuple(p for _, p in started)
                calls = [(Call.sign(ports[0], "DescribeServers"), "Servers", len(SERVER_NAMES)),
                         (Call.sign(ports[0], "DescribeEvents", {"ServerName": EVENTS_OF}),
                          "ServerEvents", event_count)]
                baseline = baseline_target(stack, workdir, calls[0][0], count)
                targets = [baseline]
                for call, member, expected in calls:
                    size = max(call.check(p, member, expected) for p in ports)
                    targets.append(Target(f"{backend} {count}p {call.operation}", ports, call,
                                          workdir / f"{call.operation}.lua", size))
                found = measure_in_turn(targets, load)
                for (call, _, _), target in zip(calls, targets[1:], strict=True):
                    rows.append(Row(backend, count, call.operation, found[target.name],
                                    found[baseline.name]))
    return rows


def run(args: argparse.Namespace) -> int:
    load = Load.from_args(args)
    check_tools(load)
    info = machine()
    rows: list[Row] = []
    for backend in args.backends:
        rows += measure_backend(backend, args.processes, load)
    problems = [p for row in rows for r in (row.baseline, row.result) for p in r.problems()]
    info = finished(info)
    if args.json:
        print(json.dumps(report(info, load, rows, problems), indent=2))
    else:
        print_report(info, load, rows)
    if problems:
        raise BenchError("; ".join(problems))
    return 0


def report(info: dict[str, Any], load: Load, rows: list[Row], problems: list[str]
           ) -> dict[str, Any]:
    return {
        "machine": info, "load": asdict(load), "servers": len(SERVER_NAMES),
        "results": [{"backend": r.backend, "processes": r.processes, "operation": r.operation,
                     **asdict(r.result), "baseline": asdict(r.baseline),
                     "ratio_to_baseline": round(r.ratio, 4),
                     "target_ratio": TARGET_RATIO if r.target is not None else None,
                     "pass": r.target} for r in rows],
        "pass": all(r.target for r in rows if r.target is not None), "errors": problems,
    }


def print_report(info: dict[str, Any], load: Load, rows: list[Row]) -> None:
    print(f"DescribeServers ({len(SERVER_NAMES)} servers) and DescribeEvents vs a no-op ASGI "
          "app, same uvicorn config")
    print_machine(info)
    print(f"load: {load.describe()}")
    print()
    lines: list[list[Any]] = []
    for i, r in enumerate(rows):
        if i == 0 or r.baseline is not rows[i - 1].baseline:
            base = r.baseline
            lines.append(["no-op baseline", r.backend, r.processes, base.requests_per_second,
                          base.p50_ms, base.p99_ms, "", ""])
        target = "" if r.target is None else (
            f"{verdict(r.target)} (>= {TARGET_RATIO:.2f})")
        lines.append([r.operation, r.backend, r.processes, r.result.requests_per_second,
                      r.result.p50_ms, r.result.p99_ms, f"{r.ratio:.3f}", target])
    print(table(["", "backend", "procs", "requests/s", "p50 ms", "p99 ms", "x baseline",
                 "target"], lines))


def parse_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError("process counts are comma-separated integers") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("process counts must be 1 or more")
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", type=parse_backends, default=["sqlite", "postgresql"],
                        help="comma-separated: sqlite, postgresql (default both)")
    parser.add_argument("--processes", type=parse_counts, default=[1, 2],
                        help="API process counts to measure (default 1,2)")
    add_load_arguments(parser, duration=5.0, warmup=1.0, rounds=3)
    return parser


if __name__ == "__main__":
    sys.exit(main_guard(run, None, build_parser()))
