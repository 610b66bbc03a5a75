"""Benchmark: DescribeServers throughput of `cmhost serve`, measured against a no-op ASGI app.

What it measures. Requests per second and p50/p99 latency of one signed `DescribeServers`
call (10 servers in the account, 5 Chef and 5 Puppet, all HEALTHY) served by a real
`cmhost serve` process (SQLite, with its worker), and the same figures for a baseline: a
no-op ASGI app that reads the body and answers a fixed small JSON 200, served by the same
uvicorn configuration (httptools, uvloop, access log off, lifespan on, one process). The
ratio cmhost/baseline requests/s must be at least 0.20 (the "Service core" target); the
issue 6 target, at least 0.25 on one process, is judged too (bench/describe.py judges it on
SQLite and PostgreSQL with `--no-worker`). Both are measured in the same run, in turn,
--rounds times (default 1), each figure the median of its rounds, after one warm-up each.

How: see bench/common.py. The exact replayed request is sent once first and must answer 200
with 10 servers; any response other than 200, or any socket error, makes the benchmark fail
(exit 1). The verdict (PASS/FAIL) is printed but does not change the exit status.

    .venv/bin/python bench/describe_servers.py [--duration 10s] [--connections 16]
                                               [--threads 1] [--warmup 2s] [--rounds 1]
                                               [--json]

A quick check that it runs: `--duration 2s --warmup 1s` (~15 s).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

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
    create_healthy_servers,
    finished,
    machine,
    main_guard,
    measure_in_turn,
    print_machine,
    running,
    table,
    verdict,
)

TARGET_RATIO = 0.20  # issue "Service core"
ISSUE6_RATIO = 0.25  # issue 6: DescribeServers on one process
SERVER_NAMES = [f"bench-{'chef' if i % 2 == 0 else 'puppet'}-{i:02d}" for i in range(10)]


def run(args: argparse.Namespace) -> int:
    load = Load.from_args(args)
    check_tools(load)
    info = machine()
    with tempfile.TemporaryDirectory(prefix="cmhost-bench-") as tmp:
        workdir = Path(tmp)
        site = Site(workdir, f"sqlite:///{workdir / 'data' / 'cmhost.db'}",
                    ["--clock", "virtual", "--provisioning-seconds", "0"])
        cmhost, port = site.serve("cmhost", worker=True)
        with ExitStack() as stack:
            stack.enter_context(running([cmhost]))
            create_healthy_servers(port, SERVER_NAMES)
            call = Call.sign(port, "DescribeServers")
            size = call.check(port, "Servers", len(SERVER_NAMES))
            baseline = baseline_target(stack, workdir, call, 1)
            target = Target("cmhost", (port,), call, workdir / "ds.lua", size)
            found = measure_in_turn([baseline, target], load)
    base, ours = found[baseline.name], found[target.name]
    results = [base, ours]
    ratio = ours.requests_per_second / base.requests_per_second
    problems = [p for r in results for p in r.problems()]
    info = finished(info)
    if args.json:
        print(json.dumps({"machine": info, "load": asdict(load),
                          "results": {r.name: asdict(r) for r in results},
                          "ratio": round(ratio, 4), "target_ratio": TARGET_RATIO,
                          "pass": ratio >= TARGET_RATIO, "issue6_target_ratio": ISSUE6_RATIO,
                          "issue6_pass": ratio >= ISSUE6_RATIO, "errors": problems},
                         indent=2))
    else:
        print_report(info, load, results, ratio)
    if problems:
        raise BenchError("; ".join(problems))
    return 0


def print_report(info: dict[str, object], load: Load, results: list[Result],
                 ratio: float) -> None:
    print(f"DescribeServers ({len(SERVER_NAMES)} servers) vs a no-op ASGI app, same uvicorn "
          "config")
    print_machine(info)
    print(f"load: {load.describe()}")
    print()
    print(table(["", "requests/s", "p50 ms", "p99 ms", "requests", "non-200", "resp bytes"],
                [[r.name, r.requests_per_second, r.p50_ms, r.p99_ms, r.requests, r.non200,
                  r.response_bytes] for r in results]))
    print()
    for name, target in (("Service core", TARGET_RATIO), ("issue 6", ISSUE6_RATIO)):
        needed = target * results[0].requests_per_second
        print(f"cmhost/baseline requests/s: {ratio:.3f}  ({name} target >= {target:.2f}, i.e. "
              f">= {needed:,.0f} requests/s here): {verdict(ratio >= target)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Load DescribeServers on cmhost and a no-op ASGI baseline with wrk.")
    add_load_arguments(parser, rounds=1)
    return parser


if __name__ == "__main__":
    sys.exit(main_guard(run, None, build_parser()))
