"""Benchmark: latency under 200 keep-alive connections, and how long a new connection waits
(issue 13 point 7); cmhost against the no-op baseline in the same run.

What it measures. N connections (default 200) open all at once, as N clients arriving
together do (and as `wrk -c N` does), and each sends one signed DescribeServers request (10
HEALTHY servers in the account) after another, as fast as the answers come back, for
--duration seconds. Every request is recorded: from the start, so the first requests of the
connections count (they are the ones that wait for the server to accept them), and to the
end, so the requests still in flight when the time is up count too (leaving them out would
cut off the tail). Meanwhile a probe opens one more connection every --probe-interval
seconds, sends the same request, and records how long it took to bring its answer: a new
client's wait under that load. Printed for cmhost (`cmhost serve`, SQLite, with its worker,
throttle off) and for the no-op ASGI app on the same uvicorn configuration: requests/s;
p50/p90/p99/p99.9/max of every request; the p99 as wrk reports it (wrk adds, for each request
slower than a connection's mean cycle, the requests that connection could not send meanwhile:
its coordinated-omission correction, which turns a few seconds-long waits into a large share
of its samples); the N connections' first answers (from connect() to the complete answer)
and the probe's; requests per connection (min/median/max: fairness); the CPU the load
generator and the server used. The baseline and cmhost are measured in turn, --rounds times
(a discarded --warmup run of each first); each figure is the median of its rounds, each max
the largest.

Targets (issue 13 point 7): cmhost's p99 at most 10 times its p50, the p99 counted as wrk
counts it (that is how the issue measured 1.8-4.4 s); and no new connection, of the N or of
the probe, waiting more than 10 times the p50 for its first answer. Both use the median over
the rounds of each round's ratio. The verdict does not change the exit status; errors do (a
non-200 answer, a connection refused or closed, a process that dies).

The load generator. Python processes (--client-processes, default 2) share the connections;
each runs one epoll loop over raw non-blocking sockets and replays one request signed once per
run (cmhost accepts a signature for 15 minutes, so the same bytes may be sent again and
again). Its CPU is printed (cores used over the run). With --dump DIR every request goes to
DIR/requests.tsv (target, round, connection, sent at, latency) for a closer look.

    .venv/bin/python bench/connections.py [--connections 200] [--duration 10s] [--rounds 3]
                                          [--warmup 2s] [--backends sqlite,postgresql]
                                          [--no-worker] [--dump DIR] [--json]

A quick check that it runs: `--rounds 1 --duration 2s --warmup 1s --connections 50` (~20 s).
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import select
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median
from typing import Any

from common import (
    BASELINE_BODY,
    BenchError,
    Call,
    Process,
    Site,
    cpu_seconds,
    create_healthy_servers,
    finished,
    free_port,
    fresh_database,
    machine,
    main_guard,
    parse_backends,
    parse_seconds,
    print_machine,
    running,
    serve_baseline,
    table,
    verdict,
)

TARGET_RATIO = 10.0  # p99 / p50, and a new connection's first answer / p50
SERVER_NAMES = [f"bench-{'chef' if i % 2 == 0 else 'puppet'}-{i:02d}" for i in range(10)]
SITE_OPTIONS = ["--clock", "virtual", "--provisioning-seconds", "0"]
SETTLE_SECONDS = 30.0  # how long requests still in flight at the end may take to finish
PROBE_DELAY = 1.0  # the probe starts this long after the connections opened
HEADER_END = b"\r\n\r\n"


# --- the wire -----------------------------------------------------------------------------


def wire_request(call: Call) -> bytes:
    """The HTTP/1.1 request as sent on a keep-alive connection: the signed headers, and a
    Content-Length (not signed, as botocore leaves it)."""
    headers = dict(call.headers)
    if not any(k.lower() == "content-length" for k in headers):
        headers["Content-Length"] = str(len(call.body))
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST / HTTP/1.1\r\n{head}\r\n".encode("latin-1") + call.body


def answer_size(buf: bytes | bytearray) -> int | None:
    """The length of the HTTP response at the start of `buf` once its headers are in, else
    None. Raises BenchError for a response without a Content-Length."""
    end = buf.find(HEADER_END)
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise BenchError(f"a response without Content-Length: {bytes(buf[:200])!r}")
    line_end = head.find(b"\r\n", at + 2)
    value = head[at + len(b"\r\ncontent-length:"):line_end if line_end > 0 else len(head)]
    return end + len(HEADER_END) + int(value.strip())


def status_of(buf: bytes | bytearray) -> int:
    try:
        return int(bytes(buf[9:12]))
    except ValueError:
        return 0


# --- the load generator and the probe (subprocesses) --------------------------------------


def run_client(port: int, connections: int, start_at: float, end_at: float, request: bytes,
               out: Path) -> int:
    """At `start_at` (time.monotonic, which all processes share) open `connections`
    connections at once; each sends `request` as soon as it is connected, and again as soon as
    each answer is complete, until `end_at`; then the requests in flight finish. Writes every
    request (its connection, when it was sent after `start_at`, its latency) and each
    connection's first answer (from connect() to the complete answer), in seconds."""
    poller = select.epoll()
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(connections)]
    conn_of = {sock.fileno(): i for i, sock in enumerate(socks)}
    bufs = [bytearray() for _ in socks]
    need: list[int | None] = [None] * connections
    opened_at = [0.0] * connections
    sent_at = [0.0] * connections
    first = [-1.0] * connections
    connecting = [True] * connections
    conn_ids = array("H")
    sent = array("d")
    latency = array("d")
    errors: list[str] = []
    for sock in socks:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cpu_start = time.process_time()
    time.sleep(max(0.0, start_at - time.monotonic()))
    for i, sock in enumerate(socks):
        opened_at[i] = time.monotonic()
        code = sock.connect_ex(("127.0.0.1", port))
        if code not in (0, errno.EINPROGRESS):
            errors.append(f"connection {i}: connect: {errno.errorcode.get(code, code)}")
            break
        poller.register(sock.fileno(), select.EPOLLOUT)
    busy = connections if not errors else 0
    settle_until = end_at + SETTLE_SECONDS
    while busy and not errors:
        if time.monotonic() > settle_until:
            errors.append(f"{busy} requests still unanswered {SETTLE_SECONDS:g}s after the end")
            break
        for fd, _ in poller.poll(1.0):
            i = conn_of[fd]
            sock = socks[i]
            if connecting[i]:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    errors.append(f"connection {i}: connect: {errno.errorcode.get(code, code)}")
                    break
                connecting[i] = False
                poller.modify(fd, select.EPOLLIN)
                sent_at[i] = time.monotonic()
                sock.sendall(request)
                continue
            try:
                data = sock.recv(1 << 18)
            except BlockingIOError:
                continue
            except OSError as exc:
                errors.append(f"connection {i}: {exc}")
                break
            if not data:
                errors.append(f"connection {i} was closed by the server")
                break
            buf = bufs[i]
            buf += data
            size = need[i]
            if size is None:
                size = need[i] = answer_size(buf)
                if size is None:
                    continue
            if len(buf) < size:
                continue
            done = time.monotonic()
            status = status_of(buf)
            if status != 200 or len(buf) != size:
                errors.append(f"connection {i}: status {status}, {len(buf)} bytes for a "
                              f"response of {size}: {bytes(buf[:300])!r}")
                break
            conn_ids.append(i)
            sent.append(sent_at[i] - start_at)
            latency.append(done - sent_at[i])
            if first[i] < 0:
                first[i] = done - opened_at[i]
            del buf[:]
            need[i] = None
            if done < end_at:
                sent_at[i] = done
                sock.sendall(request)
            else:
                busy -= 1
    cpu = time.process_time() - cpu_start
    for sock in socks:
        sock.close()
    out.write_text(json.dumps({"conn": conn_ids.tolist(), "sent": sent.tolist(),
                               "latency": latency.tolist(), "first": first,
                               "cpu_seconds": cpu, "errors": errors}))
    return 0


def run_probe(port: int, interval: float, begin_at: float, end_at: float, request: bytes,
              out: Path) -> int:
    """From `begin_at` to `end_at`, every `interval` seconds open a new connection, send
    `request` and read the answer: the time from connect() to the complete answer."""
    answers: list[float] = []
    errors: list[str] = []
    next_at = begin_at
    while next_at < end_at and not errors:
        time.sleep(max(0.0, next_at - time.monotonic()))
        begin = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(request)
                buf = bytearray()
                size: int | None = None
                while size is None or len(buf) < size:
                    data = sock.recv(1 << 18)
                    if not data:
                        raise OSError("closed by the server")
                    buf += data
                    if size is None:
                        size = answer_size(buf)
                answered = time.monotonic()
        except OSError as exc:
            errors.append(f"new connection: {exc}")
            break
        if status_of(buf) != 200:
            errors.append(f"new connection: status {status_of(buf)}: {bytes(buf[:300])!r}")
            break
        answers.append(answered - begin)
        next_at = max(next_at + interval, answered)
    out.write_text(json.dumps({"answers": answers, "errors": errors}))
    return 0


# --- the baseline -------------------------------------------------------------------------


def start_baseline(workdir: Path) -> tuple[Process, int]:
    port = free_port()
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve-baseline", str(port)]
    proc = Process("baseline", argv, f"http://127.0.0.1:{port}/", workdir / "baseline.log")
    return proc.start(), port


# --- one run against one target -----------------------------------------------------------


@dataclass
class Run:
    """One load run's figures (latencies in ms)."""

    name: str
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    wrk_p99_ms: float  # the p99 with wrk's coordinated-omission correction
    requests: int
    first_answer_p50_ms: float  # the N connections opened at once
    first_answer_max_ms: float
    probe_answer_p50_ms: float  # one new connection at a time, under load
    probe_answer_max_ms: float
    probes: int
    per_connection_min: int
    per_connection_median: float
    per_connection_max: int
    client_cores: float  # CPU the load generator used, in cores
    server_cores: float  # CPU the target process used, in cores

    @property
    def ratio(self) -> float:
        """The p99 as wrk counts it, over the p50."""
        return self.wrk_p99_ms / self.p50_ms if self.p50_ms else math.inf

    @property
    def raw_ratio(self) -> float:
        return self.p99_ms / self.p50_ms if self.p50_ms else math.inf

    @property
    def new_connection_ratio(self) -> float:
        """The slowest new connection's first answer over the p50."""
        slowest = max(self.first_answer_max_ms, self.probe_answer_max_ms)
        return slowest / self.p50_ms if self.p50_ms else math.inf


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0.0
    rank = math.ceil(fraction * len(ordered))
    return ordered[min(len(ordered), max(1, rank)) - 1]


def wrk_corrected_percentile(latencies_us: list[int], interval_us: int,
                             fraction: float) -> float:
    """The percentile wrk 4 prints: its stats_correct() adds, for each latency x of at least
    twice the expected interval (the run's time over the requests per connection), one more
    sample at x - interval, x - 2 interval, ... while above the interval: the requests the
    connection would have sent had it not been waiting. Latencies in whole microseconds, as
    wrk keeps them."""
    counts: dict[int, int] = {}
    for x in latencies_us:
        counts[x] = counts.get(x, 0) + 1
    if interval_us > 0:
        for x, count in list(counts.items()):
            m = x - interval_us
            while x >= 2 * interval_us and m > interval_us:
                counts[m] = counts.get(m, 0) + count
                m -= interval_us
    total = sum(counts.values())
    rank = round(fraction * total + 0.5)  # as wrk's stats_percentile
    seen = 0
    for x in sorted(counts):
        seen += counts[x]
        if seen >= rank:
            return float(x)
    return 0.0


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    proc: Process


@dataclass(frozen=True)
class Load:
    connections: int
    duration: float
    warmup: float
    rounds: int
    client_processes: int
    probe_interval: float


def load_once(target: Target, call: Call, load: Load, duration: float, workdir: Path
              ) -> tuple[Run, list[tuple[int, float, float]]]:
    """One run against `target`: the client processes and the probe at the same time. Its
    figures, and every request (connection, sent at, latency)."""
    request_file = workdir / "request.bin"
    request_file.write_bytes(wire_request(call.signed_again()))
    start_at = time.monotonic() + 1.0  # time for the processes to start
    end_at = start_at + duration
    shares = [load.connections // load.client_processes
              + (1 if i < load.connections % load.client_processes else 0)
              for i in range(load.client_processes)]
    shares = [s for s in shares if s]
    script = str(Path(__file__).resolve())
    children: list[tuple[subprocess.Popen[bytes], Path]] = []
    for i, share in enumerate(shares):
        out = workdir / f"client-{i}.json"
        argv = [sys.executable, script, "--client", str(target.port), str(share),
                repr(start_at), repr(end_at), str(request_file), str(out)]
        children.append((subprocess.Popen(argv), out))
    probe_out = workdir / "probe.json"
    probe = subprocess.Popen([sys.executable, script, "--probe", str(target.port),
                              repr(load.probe_interval), repr(start_at + PROBE_DELAY),
                              repr(end_at), str(request_file), str(probe_out)])
    time.sleep(max(0.0, start_at - time.monotonic()))
    server_cpu = cpu_seconds(target.proc.pid)
    time.sleep(max(0.0, end_at - time.monotonic()))
    server_cpu = cpu_seconds(target.proc.pid) - server_cpu
    deadline = end_at + SETTLE_SECONDS + 30
    for proc in [p for p, _ in children] + [probe]:
        try:
            proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            raise BenchError(f"{target.name}: the load generator did not finish") from None
        if proc.returncode != 0:
            raise BenchError(f"{target.name}: a load generator process failed "
                             f"({proc.returncode})")
    target.proc.check_alive()
    clients = [json.loads(out.read_text()) for _, out in children]
    probed = json.loads(probe_out.read_text())
    problems = [e for c in clients for e in c["errors"]] + probed["errors"]
    if problems:
        raise BenchError(f"{target.name}: " + "; ".join(problems[:5]))
    requests: list[tuple[int, float, float]] = []
    per_conn: list[int] = []
    firsts: list[float] = []
    base = 0
    for found, share in zip(clients, shares, strict=True):
        requests += [(base + i, s, lat) for i, s, lat in
                     zip(found["conn"], found["sent"], found["latency"], strict=True)]
        counts = [0] * share
        for i in found["conn"]:
            counts[i] += 1
        per_conn += counts
        firsts += found["first"]
        base += share
    latencies = sorted(lat for _, _, lat in requests)
    if not latencies or min(firsts) < 0:
        raise BenchError(f"{target.name}: a connection got no answer")
    firsts.sort()
    answers = sorted(probed["answers"])
    interval_us = round(duration * 1e6 / (len(latencies) / load.connections))
    wrk_p99 = wrk_corrected_percentile([round(x * 1e6) for x in latencies], interval_us, 0.99)
    ms = 1000.0
    return Run(
        name=target.name,
        requests_per_second=sum(1 for _, s, _ in requests if s < duration) / duration,
        p50_ms=percentile(latencies, 0.50) * ms, p90_ms=percentile(latencies, 0.90) * ms,
        p99_ms=percentile(latencies, 0.99) * ms, p999_ms=percentile(latencies, 0.999) * ms,
        max_ms=latencies[-1] * ms, wrk_p99_ms=wrk_p99 / 1000, requests=len(latencies),
        first_answer_p50_ms=percentile(firsts, 0.5) * ms, first_answer_max_ms=firsts[-1] * ms,
        probe_answer_p50_ms=percentile(answers, 0.5) * ms,
        probe_answer_max_ms=(answers[-1] if answers else 0.0) * ms, probes=len(answers),
        per_connection_min=min(per_conn), per_connection_median=median(per_conn),
        per_connection_max=max(per_conn),
        client_cores=sum(c["cpu_seconds"] for c in clients) / duration,
        server_cores=server_cpu / duration), requests


def median_run(runs: list[Run]) -> Run:
    """Each figure the median of the runs; maxima the largest, minima the smallest; counts
    summed."""
    summed = {"requests", "probes"}
    largest = {"max_ms", "first_answer_max_ms", "probe_answer_max_ms", "per_connection_max"}
    smallest = {"per_connection_min"}
    values: dict[str, Any] = {"name": runs[0].name}
    for key in Run.__dataclass_fields__:
        if key == "name":
            continue
        found = [getattr(r, key) for r in runs]
        if key in summed:
            values[key] = sum(found)
        elif key in largest:
            values[key] = max(found)
        elif key in smallest:
            values[key] = min(found)
        else:
            values[key] = median(found)
    return Run(**values)


# --- the benchmark ------------------------------------------------------------------------


@dataclass
class Figures:
    backend: str
    cmhost: Run
    baseline: Run
    rounds: list[Run]  # cmhost's, one per round

    @property
    def ratio(self) -> float:
        return median(r.ratio for r in self.rounds)

    @property
    def new_connection_ratio(self) -> float:
        return median(r.new_connection_ratio for r in self.rounds)

    @property
    def ok(self) -> bool:
        return self.ratio <= TARGET_RATIO and self.new_connection_ratio <= TARGET_RATIO


def measure_backend(backend: str, load: Load, worker: bool, dump: Path | None) -> Figures:
    with tempfile.TemporaryDirectory(prefix="cmhost-bench-") as tmp, \
            fresh_database(backend, Path(tmp)) as url:
        workdir = Path(tmp)
        site = Site(workdir, url, SITE_OPTIONS)
        setup, port = site.serve("setup", worker=True)
        with running([setup]):
            create_healthy_servers(port, SERVER_NAMES)
        api, port = site.serve(f"api-{backend}", worker=worker)
        baseline, base_port = start_baseline(workdir)
        with running([api, baseline]):
            call = Call.sign(port, "DescribeServers")
            call.check(port, "Servers", len(SERVER_NAMES))
            status, body = call.send(base_port)
            if status != 200 or body != BASELINE_BODY:
                raise BenchError(f"the baseline answered {status}: {body[:200]!r}")
            # The Host header names cmhost's port; the baseline does not read it.
            targets = [Target("no-op baseline", base_port, baseline),
                       Target(f"cmhost ({backend})", port, api)]
            runs: dict[str, list[Run]] = {t.name: [] for t in targets}
            for round_ in range(load.rounds):
                for target in targets:
                    if round_ == 0 and load.warmup > 0:
                        load_once(target, call, load, load.warmup, workdir)
                    found, requests = load_once(target, call, load, load.duration, workdir)
                    runs[target.name].append(found)
                    if dump is not None:
                        with open(dump, "a") as f:
                            f.writelines(f"{target.name}\t{round_ + 1}\t{i}\t{s:.6f}\t{lat:.6f}\n"
                                         for i, s, lat in requests)
    found = runs[targets[1].name]
    return Figures(backend, median_run(found), median_run(runs[targets[0].name]), found)


def run(args: argparse.Namespace) -> int:
    load = Load(connections=args.connections, duration=args.duration, warmup=args.warmup,
                rounds=args.rounds, client_processes=args.client_processes,
                probe_interval=args.probe_interval)
    if load.connections < 1 or load.rounds < 1 or load.client_processes < 1:
        raise BenchError("--connections, --rounds and --client-processes must be at least 1")
    if load.duration <= 0 or load.probe_interval <= 0:
        raise BenchError("--duration and --probe-interval must be positive")
    dump: Path | None = None
    if args.dump is not None:
        args.dump.mkdir(parents=True, exist_ok=True)
        dump = args.dump / "requests.tsv"
        dump.write_text("target\tround\tconnection\tsent_s\tlatency_s\n")
    info = machine()
    figures = [measure_backend(b, load, not args.no_worker, dump) for b in args.backends]
    info = finished(info)
    if args.json:
        print(json.dumps({
            "machine": info, "load": asdict(load), "worker": not args.no_worker,
            "results": [{"backend": f.backend, "cmhost": asdict(f.cmhost),
                         "baseline": asdict(f.baseline),
                         "cmhost_rounds": [asdict(r) for r in f.rounds],
                         "wrk_p99_over_p50": round(f.ratio, 2),
                         "new_connection_over_p50": round(f.new_connection_ratio, 2),
                         "target": TARGET_RATIO, "pass": f.ok} for f in figures],
            "pass": all(f.ok for f in figures)}, indent=2))
    else:
        print_report(info, load, not args.no_worker, figures)
    return 0


def print_report(info: dict[str, Any], load: Load, worker: bool,
                 figures: list[Figures]) -> None:
    print(f"DescribeServers ({len(SERVER_NAMES)} servers) on {load.connections} keep-alive "
          f"connections vs a no-op ASGI app, same uvicorn config")
    print_machine(info)
    print(f"load: {load.connections} connections opened at once, requests back to back for "
          f"{load.duration:g}s ({load.client_processes} client processes), a new connection "
          f"every {load.probe_interval:g}s; cmhost serve "
          f"{'with' if worker else 'without'} its worker; each figure the median of "
          f"{load.rounds} round{'s' if load.rounds > 1 else ''} (max: the largest)")
    print()
    rows: list[list[Any]] = []
    for f in figures:
        for r in (f.baseline, f.cmhost):
            rows.append([r.name, r.requests_per_second, r.p50_ms, r.p90_ms, r.p99_ms,
                         r.p999_ms, r.max_ms, r.wrk_p99_ms,
                         f"{r.first_answer_p50_ms:.0f} / {r.first_answer_max_ms:,.0f}",
                         f"{r.probe_answer_p50_ms:.0f} / {r.probe_answer_max_ms:,.0f}",
                         (f"{r.per_connection_min}/{r.per_connection_median:g}/"
                          f"{r.per_connection_max}"),
                         f"{r.client_cores:.2f}", f"{r.server_cores:.2f}"])
    print(table(["", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
                 "wrk p99 ms", "first answer p50/max", "probe p50/max",
                 "req per conn", "client cores", "server cores"], rows))
    print()
    for f in figures:
        rounds = ", ".join(f"{r.ratio:.1f}" for r in f.rounds)
        raw = ", ".join(f"{r.raw_ratio:.1f}" for r in f.rounds)
        new = ", ".join(f"{r.new_connection_ratio:.1f}" for r in f.rounds)
        ok_p99 = f.ratio <= TARGET_RATIO
        ok_new = f.new_connection_ratio <= TARGET_RATIO
        print(f"{f.backend}: cmhost p99 (as wrk counts it) / p50 = {f.ratio:.1f} (rounds: "
              f"{rounds}; without wrk's correction: {raw}): {verdict(ok_p99)} "
              f"(<= {TARGET_RATIO:g})")
        print(f"{f.backend}: cmhost slowest new connection's first answer / p50 = "
              f"{f.new_connection_ratio:.1f} (rounds: {new}): {verdict(ok_new)} "
              f"(<= {TARGET_RATIO:g})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=200,
                        help="keep-alive connections, opened at once (default 200)")
    parser.add_argument("--duration", type=parse_seconds, default=10.0,
                        help="each measured run, e.g. 10s (default 10s)")
    parser.add_argument("--warmup", type=parse_seconds, default=2.0,
                        help="a discarded run of each target before the first round "
                             "(default 2s; 0: none)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs per target, in turn; the median is reported (default 3)")
    parser.add_argument("--backends", type=parse_backends, default=["sqlite"],
                        help="comma-separated: sqlite, postgresql (default sqlite)")
    parser.add_argument("--no-worker", action="store_true",
                        help="run `cmhost serve --no-worker` (default: with its worker)")
    parser.add_argument("--client-processes", type=int, default=2,
                        help="load generator processes sharing the connections (default 2)")
    parser.add_argument("--probe-interval", type=float, default=0.2,
                        help="seconds between the probe's new connections (default 0.2)")
    parser.add_argument("--dump", type=Path,
                        help="write every measured request to DIR/requests.tsv")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def _subprocess_main(argv: list[str]) -> int:
    kind, port, *rest = argv
    if kind == "--serve-baseline":
        return serve_baseline(int(port))
    if kind == "--client":
        count, start_at, end_at, request, out = rest
        return run_client(int(port), int(count), float(start_at), float(end_at),
                          Path(request).read_bytes(), Path(out))
    interval, begin_at, end_at, request, out = rest
    return run_probe(int(port), float(interval), float(begin_at), float(end_at),
                     Path(request).read_bytes(), Path(out))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("--client", "--probe", "--serve-baseline"):
        sys.exit(_subprocess_main(sys.argv[1:]))
    sys.exit(main_guard(run, None, build_parser()))
