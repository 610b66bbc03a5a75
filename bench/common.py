"""What the benchmarks share: processes, the no-op baseline, signed requests, wrk, reports.

Every benchmark in `bench/` starts real `cmhost` processes (and, to compare against, a no-op
ASGI app served by the same uvicorn configuration), replays one SigV4-signed request with
wrk, and prints its figures next to the baseline measured in the same run.

    python bench/common.py --serve-baseline PORT   # the baseline server, started by the others
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The cmhost source tree the processes run from (its `cmhost` package): this checkout unless
# CMHOST_BENCH_TREE names another, e.g. a `git archive` of one commit while the checkout is
# being edited.
TREE = Path(os.environ.get("CMHOST_BENCH_TREE") or ROOT).resolve()
if TREE != ROOT:
    sys.path.insert(0, str(TREE))  # bench/fill.py imports the schema from the same tree
REGION = "us-east-1"
DEV_KEY = ("test", "test")  # cmhost's development key on a loopback bind: account 000000000000
DEV_ACCOUNT = "000000000000"
SIGNING_NAME = "opsworks-cm"
TARGET_PREFIX = "OpsWorksCM_V2016_11_01."
CONTENT_TYPE = "application/x-amz-json-1.1"
SERVER_DEFAULTS: dict[str, Any] = {
    "InstanceProfileArn": "arn:aws:iam::000000000000:instance-profile/aws-opsworks-cm-ec2-role",
    "InstanceType": "m5.large",
    "ServiceRoleArn": "arn:aws:iam::000000000000:role/aws-opsworks-cm-service-role",
}
# Where a fresh PostgreSQL database per run is created (the user must be allowed to).
POSTGRES_ADMIN_URL = os.environ.get(
    "CMHOST_BENCH_POSTGRES_URL", "postgresql+psycopg://cmhost:cmhost@127.0.0.1/cmhost")
RESULT_MARKER = "CMHOST_BENCH_RESULT "

# Counts every status per thread; done() sums the threads and prints one JSON line. Not
# defining request() keeps wrk on its fast path: the request is formatted once and replayed.
WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = {body}
{headers}
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  bad = 0
  first_bad = 0
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  else
    bad = bad + 1
    if first_bad == 0 then first_bad = status end
  end
end

function done(summary, latency, requests)
  local ok_total, bad_total, first = 0, 0, 0
  for _, t in ipairs(threads) do
    ok_total = ok_total + t:get("ok")
    bad_total = bad_total + t:get("bad")
    if first == 0 then first = t:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    '{marker}{{"requests":%d,"duration_us":%d,"bytes":%d,"ok":%d,"non200":%d,' ..
    '"first_non200_status":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, ok_total, bad_total, first,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


class BenchError(Exception):
    """The benchmark could not produce a valid measurement."""


# --- the baseline -------------------------------------------------------------------------


BASELINE_BODY = b'{"Servers":[]}'
BASELINE_HEADERS = [(b"content-type", CONTENT_TYPE.encode()),
                    (b"content-length", str(len(BASELINE_BODY)).encode())]


async def baseline_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The no-op ASGI app: reads the request body, answers a fixed small JSON 200."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": BASELINE_HEADERS})
    await send({"type": "http.response.body", "body": BASELINE_BODY})


def serve_baseline(port: int) -> int:
    """Serve `baseline_app` exactly as `cmhost serve` serves cmhost: the listening socket,
    event loop and HTTP protocol of cmhost.listen (those of the tree the benchmark runs); a
    tree from before cmhost.listen gets the configuration its cmd_serve had."""
    try:
        from cmhost.config import Settings
        from cmhost.listen import bind_listeners, uvicorn_server
    except ImportError:
        import uvicorn

        config = uvicorn.Config(baseline_app, host="127.0.0.1", port=port, lifespan="on",
                                access_log=False, log_level="warning", http="httptools",
                                loop="uvloop", timeout_graceful_shutdown=5)
        uvicorn.Server(config).run()
        return 0
    settings = Settings(host="127.0.0.1", port=port, log_level="warning")
    uvicorn_server(baseline_app, settings).run(sockets=bind_listeners(settings.host, port))
    return 0


# --- processes ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A subprocess, its log file, and (for servers) a health URL to wait on."""

    def __init__(self, name: str, argv: list[str], health_url: str | None,
                 log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.health_url = health_url
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError(f"{self.name} is not running")
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=TREE)
        if self.health_url is None:
            wait_until_idle(self, timeout)
            return self
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(self.health_url, timeout=2) as resp:
                    resp.read()
                return self
            except urllib.error.HTTPError:
                return self  # it answers HTTP: it is up
            except OSError:
                time.sleep(0.05)
        raise BenchError(f"{self.name} did not start in {timeout}s:\n{self.log()}")

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise BenchError(f"{self.name} exited ({code}):\n{self.log()}")

    def log(self, tail: int = 4000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-tail:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU time every process of the machine has used since boot (user, nice, system, irq,
    softirq, steal from /proc/stat): differences of it say how busy the whole machine was."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU time of the machine's PostgreSQL: its live processes, plus what its ended backends
    used (the postmaster's reaped children)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, fields = text.split("(", 1)[1].rsplit(")", 1)
        if name != "postgres":
            continue
        values = fields.split()
        total += (int(values[11]) + int(values[12])) / tick
        if values[1] == "1" or Path(f"/proc/{values[1]}/comm").read_text().strip() != "postgres":
            total += (int(values[13]) + int(values[14])) / tick  # the postmaster
    return total


def wait_until_idle(proc: Process, timeout: float, *, window: float = 0.5,
                    busy: float = 0.02) -> None:
    """Wait until the process uses less than `busy` CPU seconds per `window`: its start-up
    (imports, migrations, first queries) is over. For processes that serve no HTTP."""
    deadline = time.monotonic() + timeout
    time.sleep(window)
    last = cpu_seconds(proc.pid)
    while time.monotonic() < deadline:
        time.sleep(window)
        proc.check_alive()
        now = cpu_seconds(proc.pid)
        if now - last < busy:
            return
        last = now
    raise BenchError(f"{proc.name} was still busy starting after {timeout}s:\n{proc.log()}")


def descendants(pid: int) -> list[int]:
    """Every child, grandchild, ... of the process (from /proc/<pid>/task/*/children)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                found.append(child)
                todo.append(child)
    return found


def rss_bytes(pid: int, *, with_children: bool = True) -> int:
    """VmRSS of the process (and of its descendants), in bytes."""
    total = 0
    for each in [pid] + (descendants(pid) if with_children else []):
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue  # it ended meanwhile
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            total += int(match[1]) * 1024
    return total


@dataclass
class Site:
    """Where cmhost keeps its state: one data directory, master key and database URL shared
    by every process of a run (as several processes share them in production)."""

    workdir: Path
    database_url: str
    options: list[str] = field(default_factory=list)

    @property
    def storage_args(self) -> list[str]:
        return ["--data-dir", str(self.workdir / "data"),
                "--master-key-file", str(self.workdir / "key" / "master.key"),
                "--database-url", self.database_url]

    def cli(self, *args: str) -> str:
        """Run one `cmhost` command against this site; its standard output."""
        proc = subprocess.run([sys.executable, "-m", "cmhost", *args, *self.storage_args],
                              capture_output=True, text=True, cwd=TREE, timeout=300,
                              check=False)
        if proc.returncode != 0:
            raise BenchError(f"cmhost {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stderr}{proc.stdout}")
        return proc.stdout

    def serve(self, name: str, *, worker: bool = False, extra: Sequence[str] = ()
              ) -> tuple[Process, int]:
        """Start `cmhost serve` (API only unless `worker`); the process and its port."""
        port = free_port()
        argv = [sys.executable, "-m", "cmhost", "serve", "--port", str(port),
                *self.storage_args, "--throttle", "off", "--log-level", "warning",
                *self.options, *extra, *([] if worker else ["--no-worker"])]
        proc = Process(name, argv, f"http://127.0.0.1:{port}/_cmhost/health",
                       self.workdir / f"{name}.log")
        return proc.start(), port

    def worker(self, name: str, extra: Sequence[str] = ()) -> Process:
        """Start `cmhost worker`; returns once its start-up is over."""
        argv = [sys.executable, "-m", "cmhost", "worker", *self.storage_args,
                "--log-level", "warning", *self.options, *extra]
        return Process(name, argv, None, self.workdir / f"{name}.log").start()


def start_baseline(workdir: Path, name: str = "baseline") -> tuple[Process, int]:
    port = free_port()
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve-baseline", str(port)]
    proc = Process(name, argv, f"http://127.0.0.1:{port}/", workdir / f"{name}.log")
    return proc.start(), port


@contextmanager
def running(procs: Sequence[Process]) -> Iterator[None]:
    """Stop the processes on the way out, and show their logs if the benchmark failed."""
    try:
        yield
    except BenchError:
        for proc in procs:
            print(f"--- {proc.name} log (tail)\n{proc.log()}", file=sys.stderr)
        raise
    finally:
        for proc in procs:
            proc.stop()


# --- databases ----------------------------------------------------------------------------


BACKENDS = ("sqlite", "postgresql")


@contextmanager
def fresh_database(backend: str, workdir: Path) -> Iterator[str]:
    """A new empty database for one measurement, dropped afterwards; yields its URL."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'data' / 'cmhost.db'}"
        return
    if backend != "postgresql":
        raise BenchError(f"unknown backend {backend!r} (use one of {', '.join(BACKENDS)})")
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    name = f"cmhost_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        raise BenchError(f"cannot create a PostgreSQL database with {POSTGRES_ADMIN_URL} "
                         f"(set CMHOST_BENCH_POSTGRES_URL): {exc.orig}") from None
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- talking to cmhost --------------------------------------------------------------------


def client(port: int, key: tuple[str, str] = DEV_KEY) -> Any:
    """A boto3 OpsWorks CM client for the cmhost on `port`, without retries."""
    import boto3
    from botocore.config import Config

    return boto3.client("opsworkscm", endpoint_url=f"http://127.0.0.1:{port}",
                        region_name=REGION, aws_access_key_id=key[0],
                        aws_secret_access_key=key[1],
                        config=Config(retries={"total_max_attempts": 1},
                                      max_pool_connections=32))


def post_json(url: str, payload: Any) -> Any:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def create_healthy_servers(port: int, names: Sequence[str]) -> None:
    """Create the servers (Chef when the name says chef, else Puppet) through boto3 on a
    cmhost with a worker and a virtual clock, and advance the clock until all are HEALTHY."""
    api = client(port)
    for name in names:
        api.create_server(**SERVER_DEFAULTS, ServerName=name,
                          Engine="Chef" if "chef" in name else "Puppet")
    statuses: list[str] = []
    for _ in range(20):
        post_json(f"http://127.0.0.1:{port}/_cmhost/clock", {"advance": 60})
        statuses = [s["Status"] for s in api.describe_servers()["Servers"]
                    if s["ServerName"] in names]
        if len(statuses) == len(names) and all(s == "HEALTHY" for s in statuses):
            return
        time.sleep(0.2)
    raise BenchError(f"servers did not all become HEALTHY: {statuses}")


@dataclass(frozen=True)
class Call:
    """One signed request for wrk to replay: operation, JSON body and the signed headers.

    Signed with botocore's SigV4Auth (X-Amz-Date = now, Host exactly as wrk sends it).
    cmhost accepts a signature for 15 minutes only, so a run that lasts longer signs the
    request again before each wrk run (`signed_again`, see Target.fresh_script).
    """

    operation: str
    body: bytes
    headers: dict[str, str]
    port: int = 0  # the port the Host header names
    params: dict[str, Any] | None = None
    key: tuple[str, str] = DEV_KEY

    @classmethod
    def sign(cls, port: int, operation: str, params: dict[str, Any] | None = None,
             key: tuple[str, str] = DEV_KEY) -> Call:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        body = json.dumps(params, separators=(",", ":")).encode() if params else b"{}"
        host = f"127.0.0.1:{port}"
        request = AWSRequest(method="POST", url=f"http://{host}/", data=body,
                             headers={"Host": host, "Content-Type": CONTENT_TYPE,
                                      "X-Amz-Target": TARGET_PREFIX + operation})
        SigV4Auth(Credentials(*key), SIGNING_NAME, REGION).add_auth(request)
        return cls(operation, body, {k: str(v) for k, v in request.headers.items()}, port,
                   params, key)

    def signed_again(self) -> Call:
        """The same request with a signature made now."""
        return Call.sign(self.port, self.operation, self.params, self.key)

    def send(self, port: int) -> tuple[int, bytes]:
        """Send the request once (to `port`, whatever Host says): status and body."""
        req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=self.body,
                                     headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def check(self, port: int, member: str, count: int) -> int:
        """Send it once: it must answer 200 with `count` items in `member`. Its size."""
        status, body = self.send(port)
        items = json.loads(body).get(member, []) if status == 200 else []
        if status != 200 or len(items) != count:
            raise BenchError(f"{self.operation} answered {status} with {len(items)} "
                             f"{member}, expected 200 with {count}: {body[:300]!r}")
        return len(body)

    def wrk_script(self, path: Path) -> Path:
        lines = [f"wrk.headers[{_lua(k)}] = {_lua(v)}" for k, v in self.headers.items()]
        path.write_text(WRK_SCRIPT.format(body=_lua(self.body.decode()),
                                          headers="\n".join(lines), marker=RESULT_MARKER))
        return path


def _lua(text: str) -> str:
    return json.dumps(text)  # a JSON string of printable ASCII is a valid Lua string literal


# --- wrk ----------------------------------------------------------------------------------


@dataclass
class Result:
    """One load run; with several processes, wrk runs against each at once and the figures
    are combined: requests/s summed, latency percentiles the worse of the runs."""

    name: str
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    non200: int
    socket_errors: int
    response_bytes: int
    processes: int = 1
    rounds: int = 1

    def problems(self) -> list[str]:
        found = []
        if self.requests == 0:
            found.append("no requests completed")
        if self.non200:
            found.append(f"{self.non200} responses were not 200")
        if self.socket_errors:
            found.append(f"{self.socket_errors} socket errors (connect/read/write/timeout)")
        return [f"{self.name}: {p}" for p in found]


@dataclass
class Load:
    """How hard wrk pushes: threads and connections per target process, and for how long."""

    threads: int = 1
    connections: int = 16
    duration: float = 10.0
    warmup: float = 2.0
    rounds: int = 1
    verbose: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Load:
        return cls(threads=args.threads, connections=args.connections,
                   duration=args.duration, warmup=args.warmup,
                   rounds=getattr(args, "rounds", 1), verbose=args.verbose)

    def describe(self) -> str:
        rounds = (f"; each figure the median of {self.rounds} runs, the figures compared "
                  "measured in turn each round" if self.rounds > 1 else "")
        return (f"wrk -t {self.threads} -c {self.connections} -d {self.duration:g}s per "
                f"process (after a {self.warmup:g}s warm-up), one signed request "
                f"replayed{rounds}")


def _wrk(port: int, script: Path, load: Load, duration: float) -> subprocess.Popen[str]:
    # A slow answer is a figure, not an error: wrk's 2 s default would count it as a timeout.
    argv = ["wrk", "--latency", "--timeout", "30s", "-t", str(load.threads),
            "-c", str(load.connections),
            "-d", f"{duration:g}s", "-s", str(script), f"http://127.0.0.1:{port}/"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wrk_result(proc: subprocess.Popen[str], duration: float) -> tuple[dict[str, Any], str]:
    out, err = proc.communicate(timeout=duration + 60)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}): {err}{out}")
    line = next((ln for ln in out.splitlines() if ln.startswith(RESULT_MARKER)), None)
    if line is None:
        raise BenchError(f"wrk printed no result line:\n{out}\n{err}")
    raw = json.loads(line[len(RESULT_MARKER):])
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    non200 = max(raw["non200"], int(non_2xx[1]) if non_2xx else 0)
    if raw["ok"] + raw["non200"] != raw["requests"]:
        # wrk counts a request only when its response is complete, as does response().
        non200 = max(non200, raw["requests"] - raw["ok"])
    raw["non200"] = non200
    text = "\n".join(ln for ln in out.splitlines() if not ln.startswith(RESULT_MARKER))
    return raw, text


def run_wrk(name: str, ports: Sequence[int], script: Path, load: Load, duration: float,
            response_bytes: int) -> Result:
    """wrk against every port at once (one wrk process each); the combined result."""
    procs = [_wrk(port, script, load, duration) for port in ports]
    runs = [_wrk_result(proc, duration) for proc in procs]
    if load.verbose:
        for port, (_, text) in zip(ports, runs, strict=True):
            print(f"--- wrk: {name} on port {port}\n{text}\n", file=sys.stderr)
    raws = [raw for raw, _ in runs]

    def worst(key: str) -> float:
        return max(r[key] for r in raws) / 1000

    return Result(
        name=name,
        requests_per_second=sum(r["requests"] / (r["duration_us"] / 1e6) for r in raws
                                if r["duration_us"]),
        p50_ms=worst("p50_us"), p90_ms=worst("p90_us"), p99_ms=worst("p99_us"),
        max_ms=worst("max_us"), requests=sum(r["requests"] for r in raws),
        non200=sum(r["non200"] for r in raws),
        socket_errors=sum(r["connect_errors"] + r["read_errors"] + r["write_errors"]
                          + r["timeouts"] for r in raws),
        response_bytes=response_bytes, processes=len(ports))


def measure(name: str, ports: Sequence[int], script: Path, load: Load, response_bytes: int,
            *, warmup: bool = True) -> Result:
    """A warm-up run (discarded, but checked for errors), then the measured run."""
    if warmup and load.warmup > 0:
        warm = run_wrk(name, ports, script, load, load.warmup, response_bytes)
        if warm.problems():
            raise BenchError("warm-up: " + "; ".join(warm.problems()))
    return run_wrk(name, ports, script, load, load.duration, response_bytes)


@dataclass(frozen=True)
class Target:
    """Something to load: a name, the ports of its processes, the request to replay and the
    wrk script file it is written to."""

    name: str
    ports: tuple[int, ...]
    call: Call
    script: Path
    response_bytes: int

    def fresh_script(self) -> Path:
        """The wrk script, rewritten with a signature made now (it must be under 15 minutes
        old for every request of the next wrk run)."""
        return self.call.signed_again().wrk_script(self.script)


def baseline_target(stack: ExitStack, workdir: Path, call: Call, processes: int) -> Target:
    """The no-op baseline on `processes` processes (running as long as `stack`), to be loaded
    with `call` exactly as cmhost is."""
    started = [start_baseline(workdir, f"baseline-{processes}-{i}") for i in range(processes)]
    stack.enter_context(running([proc for proc, _ in started]))
    return Target(f"no-op baseline ({processes} process{'es' if processes > 1 else ''})",
                  tuple(port for _, port in started), call,
                  workdir / f"baseline-{processes}-{call.operation}.lua", len(BASELINE_BODY))


def measure_in_turn(targets: Sequence[Target], load: Load) -> dict[str, Result]:
    """Load every target in turn, `load.rounds` times (warm-up in the first round only); each
    figure is the median of its rounds. Figures that are compared with each other are thus
    measured minutes apart at most, and one burst of load from elsewhere on the machine
    moves one round of one figure, not the verdict. Each run replays a request signed just
    before it, however long the whole takes."""
    runs: dict[str, list[Result]] = {t.name: [] for t in targets}
    for round_ in range(load.rounds):
        for t in targets:
            runs[t.name].append(measure(t.name, t.ports, t.fresh_script(), load,
                                        t.response_bytes, warmup=round_ == 0))
    return {name: median_result(found) for name, found in runs.items()}


def median_result(runs: Sequence[Result]) -> Result:
    """Rates and latencies: the median of the runs; counts of requests and errors: the sum."""
    def median(key: str) -> float:
        values = sorted(getattr(r, key) for r in runs)
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

    first = runs[0]
    return Result(
        name=first.name, requests_per_second=median("requests_per_second"),
        p50_ms=median("p50_ms"), p90_ms=median("p90_ms"), p99_ms=median("p99_ms"),
        max_ms=max(r.max_ms for r in runs), requests=sum(r.requests for r in runs),
        non200=sum(r.non200 for r in runs), socket_errors=sum(r.socket_errors for r in runs),
        response_bytes=first.response_bytes, processes=first.processes, rounds=len(runs))


# --- the report ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on: hardware, versions, load, the code's commit."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "?"

    wrk_version = "not installed"
    if shutil.which("wrk") is not None:
        wrk = subprocess.run(["wrk", "--version"], check=False, capture_output=True, text=True)
        wrk_version = (wrk.stdout + wrk.stderr).split("[", 1)[0].replace("wrk", "").strip()
    if TREE != ROOT:
        commit_text = f"the tree {TREE}"
        stamp = TREE / "COMMIT"  # written by whoever exported the tree, if they did
        if stamp.exists():
            commit_text += f" ({stamp.read_text().strip()})"
    else:
        commit = subprocess.run(["git", "--no-optional-locks", "rev-parse", "--short", "HEAD"],
                                check=False, capture_output=True, text=True, cwd=ROOT)
        dirty = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain",
                                "--untracked-files=no", "cmhost"],
                               check=False, capture_output=True, text=True, cwd=ROOT)
        commit_text = commit.stdout.strip() + (" + local changes" if dirty.stdout.strip()
                                               else "")
    model = "?"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        model = found[1].strip() if found else "?"
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpus": os.cpu_count(),
            "cpu_model": model, "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "platform": platform.platform(), "python": platform.python_version(),
            "uvicorn": installed("uvicorn"), "uvloop": installed("uvloop"),
            "httptools": installed("httptools"), "sqlalchemy": installed("SQLAlchemy"),
            "psycopg": installed("psycopg"), "wrk": wrk_version,
            "cmhost": commit_text}


def finished(info: dict[str, Any]) -> dict[str, Any]:
    """The machine description with the load average at the end of the run added: other work
    on the machine during the run makes every figure lower and noisier."""
    return {**info, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}


def print_machine(info: dict[str, Any]) -> None:
    end = info.get("loadavg_at_end", ["?"])[0]
    print(f"machine: {info['cpus']} CPUs ({info['cpu_model']}), load average "
          f"{info['loadavg_at_start'][0]} at start, {end} at end; Python {info['python']}, "
          f"uvicorn {info['uvicorn']}, "
          f"wrk {info['wrk']}; cmhost: {info['cmhost']}; {info['date']}")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                           strict=True)]
        lines.append("  ".join(parts).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def parse_seconds(text: str) -> float:
    """A wrk duration: whole seconds or minutes (wrk takes no fractions), e.g. 10s or 1m."""
    match = re.fullmatch(r"(\d+)([sm]?)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use whole seconds or "
                                         "minutes, e.g. 10 or 10s or 1m: wrk takes no "
                                         "fractions)")
    return float(int(match[1]) * (60 if match[2] == "m" else 1))


def parse_backends(text: str) -> list[str]:
    chosen = [b.strip() for b in text.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BACKENDS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"backends are a comma-separated subset of "
                                         f"{','.join(BACKENDS)}")
    return chosen


def add_load_arguments(parser: argparse.ArgumentParser, *, duration: float = 10.0,
                       warmup: float = 2.0, rounds: int = 0) -> None:
    parser.add_argument("--duration", type=parse_seconds, default=duration,
                        help=f"measured wrk run per figure, e.g. 10s (default {duration:g}s)")
    parser.add_argument("--warmup", type=parse_seconds, default=warmup,
                        help=f"discarded warm-up run per figure (default {warmup:g}s)")
    parser.add_argument("--connections", type=int, default=16,
                        help="wrk -c per target process (default 16)")
    parser.add_argument("--threads", type=int, default=1,
                        help="wrk -t per target process (default 1: on 2 cores, leaves one "
                             "to the server)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--verbose", action="store_true", help="show wrk's own output")
    if rounds:
        parser.add_argument("--rounds", type=int, default=rounds,
                            help=f"runs per figure, the median is reported (default {rounds})")


def check_tools(load: Load) -> None:
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed")
    if load.connections < load.threads:
        raise BenchError("--connections must be at least --threads")
    if load.rounds < 1:
        raise BenchError("--rounds must be at least 1")
    if load.duration < 1:
        raise BenchError("--duration must be at least 1s")


def main_guard(run: Any, argv: list[str] | None, parser: argparse.ArgumentParser) -> int:
    """Parse, run, and turn a BenchError into a message and exit status 1."""
    args = parser.parse_args(argv)
    try:
        return int(run(args))
    except BenchError as exc:
        sys.stdout.flush()
        print(f"\nBENCHMARK ERROR: {exc}", file=sys.stderr)
        return 1


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The no-op ASGI baseline server.")
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", required=True)
    return serve_baseline(parser.parse_args(argv).serve_baseline)


if __name__ == "__main__":
    sys.exit(_main())
