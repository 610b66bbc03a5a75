"""Benchmark: resident memory of `cmhost serve`, idle and under load, on SQLite and PostgreSQL,
next to the no-op ASGI baseline's, measured in the same run.

What it measures. RSS (VmRSS from /proc/<pid>/status, the process and any children it has) of
a `cmhost serve` process in its default shape (API and worker in one process, 10 HEALTHY
servers in the database, made beforehand by another process): idle once started and after a
few requests (10 each of DescribeServers, DescribeEvents and DescribeAccountAttributes) and once
its CPU use has settled; then sampled every 0.2 s while wrk loads it with DescribeServers
(peak and mean); then idle again after the load. The no-op baseline (same uvicorn
configuration) is measured the same way. On PostgreSQL an idle `cmhost worker` is measured
too, for information.

Target (issue 6): idle `cmhost serve` under 150 MB. The verdict does not change the exit
status; errors do.

    .venv/bin/python bench/memory.py [--backends sqlite,postgresql] [--duration 10s] [--json]

A quick check that it runs: `--backends sqlite --duration 2s --warmup 1s` (~20 s).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

from common import (
    BenchError,
    Call,
    Load,
    Process,
    Site,
    add_load_arguments,
    check_tools,
    create_healthy_servers,
    finished,
    fresh_database,
    machine,
    main_guard,
    measure,
    parse_backends,
    print_machine,
    rss_bytes,
    running,
    start_baseline,
    table,
    verdict,
    wait_until_idle,
)

TARGET_IDLE_MB = 150.0
SERVER_NAMES = [f"bench-{'chef' if i % 2 == 0 else 'puppet'}-{i:02d}" for i in range(10)]
MB = 1024 * 1024


@dataclass
class Memory:
    process: str
    backend: str
    idle_mb: float
    load_peak_mb: float | None = None
    load_mean_mb: float | None = None
    after_load_mb: float | None = None
    requests_per_second: float | None = None

    @property
    def target(self) -> bool | None:
        return self.idle_mb < TARGET_IDLE_MB if self.process == "cmhost serve" else None


class Sampler:
    """RSS of a process every `interval` seconds, in a thread, while a block runs."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(rss_bytes(self.pid))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def idle_rss(proc: Process) -> float:
    wait_until_idle(proc, 60.0)
    return rss_bytes(proc.pid) / MB


def under_load(memory: Memory, proc: Process, port: int, call: Call, load: Load,
               workdir: Path) -> Memory:
    script = call.wrk_script(workdir / f"{memory.process.replace(' ', '-')}.lua")
    with Sampler(proc.pid) as sampler:
        result = measure(memory.process, [port], script, load, 0)
    if result.problems():
        raise BenchError("; ".join(result.problems()))
    if not sampler.samples:
        sampler.samples.append(rss_bytes(proc.pid))
    memory.load_peak_mb = max(sampler.samples) / MB
    memory.load_mean_mb = sum(sampler.samples) / len(sampler.samples) / MB
    memory.requests_per_second = result.requests_per_second
    memory.after_load_mb = idle_rss(proc)
    return memory


def a_few_requests(port: int) -> None:
    calls = [Call.sign(port, "DescribeServers"),
             Call.sign(port, "DescribeEvents", {"ServerName": SERVER_NAMES[0]}),
             Call.sign(port, "DescribeAccountAttributes")]
    for call in calls:
        for _ in range(10):
            status, body = call.send(port)
            if status != 200:
                raise BenchError(f"{call.operation} answered {status}: {body[:200]!r}")


def measure_backend(backend: str, load: Load) -> list[Memory]:
    found: list[Memory] = []
    with tempfile.TemporaryDirectory(prefix="cmhost-bench-") as tmp, \
            fresh_database(backend, Path(tmp)) as url:
        workdir = Path(tmp)
        site = Site(workdir, url, ["--clock", "virtual", "--provisioning-seconds", "0"])
        setup, port = site.serve("setup", worker=True)
        with running([setup]):
            create_healthy_servers(port, SERVER_NAMES)

        proc, port = site.serve("cmhost", worker=True)
        with running([proc]):
            a_few_requests(port)
            memory = Memory("cmhost serve", backend, idle_rss(proc))
            found.append(under_load(memory, proc, port, Call.sign(port, "DescribeServers"),
                                    load, workdir))
        if backend == "postgresql":
            worker = site.worker("worker")
            with running([worker]):
                found.append(Memory("cmhost worker", backend, idle_rss(worker)))

        base, base_port = start_baseline(workdir)
        with running([base]):
            call = Call.sign(port, "DescribeServers")
            for _ in range(30):
                call.send(base_port)
            memory = Memory("no-op baseline", backend, idle_rss(base))
            found.append(under_load(memory, base, base_port, call, load, workdir))
    return found


def run(args: argparse.Namespace) -> int:
    load = Load.from_args(args)
    check_tools(load)
    info = machine()
    rows = [m for backend in args.backends for m in measure_backend(backend, load)]
    info = finished(info)
    if args.json:
        print(json.dumps({"machine": info, "load": asdict(load), "servers": len(SERVER_NAMES),
                          "results": [{**asdict(m), "pass": m.target} for m in rows],
                          "target_idle_mb": TARGET_IDLE_MB,
                          "pass": all(m.target for m in rows if m.target is not None)},
                         indent=2))
        return 0
    print("Resident memory (VmRSS, with children) idle and under DescribeServers load")
    print_machine(info)
    print(f"load: {load.describe()}")
    print()

    def mb(value: float | None) -> Any:
        return "" if value is None else f"{value:.1f}"

    print(table(["process", "backend", "idle MB", "load peak MB", "load mean MB",
                 "after load MB", "requests/s", "target"],
                [[m.process, m.backend, mb(m.idle_mb), mb(m.load_peak_mb), mb(m.load_mean_mb),
                  mb(m.after_load_mb),
                  "" if m.requests_per_second is None else m.requests_per_second,
                  "" if m.target is None else f"{verdict(m.target)} (idle < "
                                              f"{TARGET_IDLE_MB:.0f} MB)"]
                 for m in rows]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", type=parse_backends, default=["sqlite", "postgresql"],
                        help="comma-separated: sqlite, postgresql (default both)")
    add_load_arguments(parser, duration=10.0)
    return parser


if __name__ == "__main__":
    sys.exit(main_guard(run, None, build_parser()))
