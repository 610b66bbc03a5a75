"""Benchmark: DescribeServers throughput of `cmhost serve`, measured against a no-op ASGI app.

What it measures. Requests per second and p50/p99 latency of one signed `DescribeServers`
call (10 servers in the account, 5 Chef and 5 Puppet, all HEALTHY) served by a real
`cmhost serve` process, and the same figures for a baseline: a no-op ASGI app that reads
the body and answers a fixed small JSON 200, served by the same uvicorn configuration
(httptools, uvloop, access log off, lifespan on, one process). The ratio cmhost/baseline
requests/s is what the project is held to: it must be at least 0.20. Both are measured in
the same run, back to back, on the same machine, each after a short warm-up.

How. cmhost runs as a subprocess on a temporary data directory with throttling off and a
virtual clock; the servers are created through boto3 and the clock is advanced so they are
HEALTHY. wrk replays one fixed request, so one request is signed with botocore's `SigV4Auth`
(X-Amz-Date = now, Host = exactly `127.0.0.1:<port>`) and replayed for the whole run: cmhost
accepts a signature for 15 minutes (its clock-skew window), far longer than a run. Before
loading, the exact replayed request is sent once with urllib and must answer 200 with 10
servers. wrk's Lua script (written to the temporary directory) sets the method, body and
every signed header, counts every response status, and prints its results as one JSON line;
any response other than 200, or any socket error, makes the benchmark fail (exit 1). The
baseline receives the very same request (its Host header names cmhost's port; it ignores it).

The verdict (PASS/FAIL against 0.20) is printed but does not change the exit status; only
errors do. On a 2-core machine the default of one wrk thread leaves a core to the server.

    .venv/bin/python bench/describe_servers.py [--duration 10s] [--connections 16]
                                               [--threads 1] [--warmup 2s] [--json]
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
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.20
SERVER_COUNT = 10
REGION = "us-east-1"
ACCESS_KEY = SECRET_KEY = "test"
SIGNING_NAME = "opsworks-cm"
AMZ_TARGET = "OpsWorksCM_V2016_11_01.DescribeServers"
CONTENT_TYPE = "application/x-amz-json-1.1"
REQUEST_BODY = b"{}"
SERVER_DEFAULTS: dict[str, Any] = {
    "InstanceProfileArn": "arn:aws:iam::000000000000:instance-profile/aws-opsworks-cm-ec2-role",
    "InstanceType": "m5.large",
    "ServiceRoleArn": "arn:aws:iam::000000000000:role/aws-opsworks-cm-service-role",
}
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
    """Serve `baseline_app` as `cmhost serve` serves cmhost (see cmhost/cli.py: cmd_serve)."""
    import uvicorn

    config = uvicorn.Config(baseline_app, host="127.0.0.1", port=port, lifespan="on",
                            access_log=False, log_level="warning", http="httptools",
                            loop="uvloop", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run()
    return 0


# --- processes ----------------------------------------------------------------------------


class BenchError(Exception):
    """The benchmark could not produce a valid measurement."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A server subprocess, its log file, and a health URL to wait on."""

    def __init__(self, name: str, argv: list[str], health_url: str, log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.health_url = health_url
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited ({self.proc.returncode}):\n{self.log()}")
            try:
                with urllib.request.urlopen(self.health_url, timeout=2) as resp:
                    resp.read()
                return
            except urllib.error.HTTPError:
                return  # it answers HTTP: it is up
            except OSError:
                time.sleep(0.05)
        raise BenchError(f"{self.name} did not start in {timeout}s:\n{self.log()}")

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


def start_cmhost(workdir: Path) -> tuple[Process, int]:
    port = free_port()
    argv = [sys.executable, "-m", "cmhost", "serve", "--port", str(port),
            "--data-dir", str(workdir / "data"),
            "--master-key-file", str(workdir / "key" / "master.key"),
            "--throttle", "off", "--clock", "virtual", "--provisioning-seconds", "0",
            "--log-level", "warning"]
    proc = Process("cmhost", argv, f"http://127.0.0.1:{port}/_cmhost/health",
                   workdir / "cmhost.log")
    proc.start()
    return proc, port


def start_baseline(workdir: Path) -> tuple[Process, int]:
    port = free_port()
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve-baseline", str(port)]
    proc = Process("baseline", argv, f"http://127.0.0.1:{port}/", workdir / "baseline.log")
    proc.start()
    return proc, port


# --- cmhost set-up and the signed request -------------------------------------------------


def populate(port: int) -> None:
    """Create the servers through boto3 and advance the virtual clock until all are HEALTHY."""
    import boto3
    from botocore.config import Config

    client = boto3.client("opsworkscm", endpoint_url=f"http://127.0.0.1:{port}",
                          region_name=REGION, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY,
                          config=Config(retries={"total_max_attempts": 1}))
    for i in range(SERVER_COUNT):
        engine = "Chef" if i % 2 == 0 else "Puppet"
        client.create_server(**SERVER_DEFAULTS, ServerName=f"bench-{engine.lower()}-{i:02d}",
                             Engine=engine)
    for _ in range(10):
        post_json(f"http://127.0.0.1:{port}/_cmhost/clock", {"advance": 60})
        statuses = [s["Status"] for s in client.describe_servers()["Servers"]]
        if len(statuses) == SERVER_COUNT and all(s == "HEALTHY" for s in statuses):
            return
    raise BenchError(f"servers did not all become HEALTHY: {statuses}")


def post_json(url: str, payload: Any) -> Any:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def signed_headers(port: int) -> dict[str, str]:
    """The headers of one DescribeServers request signed now, Host exactly as wrk sends it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    host = f"127.0.0.1:{port}"
    request = AWSRequest(method="POST", url=f"http://{host}/", data=REQUEST_BODY,
                         headers={"Host": host, "Content-Type": CONTENT_TYPE,
                                  "X-Amz-Target": AMZ_TARGET})
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), SIGNING_NAME, REGION).add_auth(request)
    return {name: str(value) for name, value in request.headers.items()}


def check_replayed_request(port: int, headers: dict[str, str]) -> int:
    """Send the request wrk will replay; it must answer 200 with every server. Returns its size."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=REQUEST_BODY,
                                 headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        raise BenchError(f"the signed request was refused: {exc.code} {exc.read()!r}") from None
    servers = json.loads(body).get("Servers", [])
    if status != 200 or len(servers) != SERVER_COUNT:
        raise BenchError(f"the signed request answered {status} with {len(servers)} servers, "
                         f"expected 200 with {SERVER_COUNT}")
    return len(body)


# --- wrk ----------------------------------------------------------------------------------


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of printable ASCII is a valid Lua string literal


def write_wrk_script(path: Path, headers: dict[str, str]) -> None:
    lines = [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()]
    path.write_text(WRK_SCRIPT.format(body=lua_string(REQUEST_BODY.decode()),
                                      headers="\n".join(lines), marker=RESULT_MARKER))


@dataclass
class Result:
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

    def problems(self) -> list[str]:
        found = []
        if self.requests == 0:
            found.append("no requests completed")
        if self.non200:
            found.append(f"{self.non200} responses were not 200")
        if self.socket_errors:
            found.append(f"{self.socket_errors} socket errors (connect/read/write/timeout)")
        return found


def run_wrk(name: str, port: int, script: Path, *, threads: int, connections: int,
            duration: float, response_bytes: int) -> tuple[Result, str]:
    argv = ["wrk", "--latency", "-t", str(threads), "-c", str(connections),
            "-d", f"{duration:g}s", "-s", str(script), f"http://127.0.0.1:{port}/"]
    proc = subprocess.run(argv, check=False, capture_output=True, text=True,
                          timeout=duration + 60)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARKER)), None)
    if line is None:
        raise BenchError(f"wrk printed no result line:\n{proc.stdout}\n{proc.stderr}")
    raw = json.loads(line[len(RESULT_MARKER):])
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", proc.stdout)
    non200 = max(raw["non200"], int(non_2xx[1]) if non_2xx else 0)
    if raw["ok"] + raw["non200"] != raw["requests"]:
        # wrk counts a request only when its response is complete, as does response().
        non200 = max(non200, raw["requests"] - raw["ok"])
    seconds = raw["duration_us"] / 1e6
    result = Result(
        name=name, requests_per_second=raw["requests"] / seconds if seconds else 0.0,
        p50_ms=raw["p50_us"] / 1000, p90_ms=raw["p90_us"] / 1000, p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000, requests=raw["requests"], non200=non200,
        socket_errors=raw["connect_errors"] + raw["read_errors"] + raw["write_errors"]
        + raw["timeouts"], response_bytes=response_bytes)
    text = "\n".join(ln for ln in proc.stdout.splitlines() if not ln.startswith(RESULT_MARKER))
    return result, text


def load(name: str, port: int, script: Path, args: argparse.Namespace, response_bytes: int,
         verbose: bool) -> Result:
    """A warm-up run (discarded, but checked for errors), then the measured run."""
    common = {"threads": args.threads, "connections": args.connections,
              "response_bytes": response_bytes}
    if args.warmup > 0:
        warm, _ = run_wrk(name, port, script, duration=args.warmup, **common)
        if warm.problems():
            raise BenchError(f"{name} warm-up: " + "; ".join(warm.problems()))
    result, text = run_wrk(name, port, script, duration=args.duration, **common)
    if verbose:
        print(f"--- wrk: {name}\n{text}\n", file=sys.stderr)
    return result


# --- the report ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "?"

    wrk = subprocess.run(["wrk", "--version"], check=False, capture_output=True, text=True)
    wrk_version = (wrk.stdout + wrk.stderr).split("[", 1)[0].replace("wrk", "").strip()
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "uvicorn": installed("uvicorn"),
            "uvloop": installed("uvloop"), "httptools": installed("httptools"),
            "cmhost": installed("cmhost"), "wrk": wrk_version}


def print_table(info: dict[str, Any], args: argparse.Namespace, results: list[Result],
                ratio: float) -> None:
    print(f"DescribeServers ({SERVER_COUNT} servers) vs a no-op ASGI app, same uvicorn config")
    print(f"machine: {info['cpus']} CPUs, Python {info['python']}, uvicorn {info['uvicorn']}, "
          f"uvloop {info['uvloop']}, httptools {info['httptools']}, wrk {info['wrk']}")
    print(f"load: wrk -t {args.threads} -c {args.connections} -d {args.duration:g}s "
          f"(after {args.warmup:g}s warm-up), one signed request replayed")
    print()
    print(f"{'':10}{'requests/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}"
          f"{'non-200':>9}{'resp bytes':>12}")
    for r in results:
        print(f"{r.name:10}{r.requests_per_second:>12,.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
              f"{r.requests:>10,}{r.non200:>9}{r.response_bytes:>12,}")
    print()
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    needed = TARGET_RATIO * results[0].requests_per_second
    print(f"cmhost/baseline requests/s: {ratio:.3f}  (target >= {TARGET_RATIO:.2f}, i.e. "
          f">= {needed:,.0f} requests/s here): {verdict}")


def parse_seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([sm]?)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 10 or 10s or 1m)")
    return float(match[1]) * (60 if match[2] == "m" else 1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Load DescribeServers on cmhost and a no-op ASGI baseline with wrk.")
    parser.add_argument("--duration", type=parse_seconds, default=10.0,
                        help="measured run per target, e.g. 10s (default 10s)")
    parser.add_argument("--warmup", type=parse_seconds, default=2.0,
                        help="discarded warm-up run per target (default 2s)")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c (default 16)")
    parser.add_argument("--threads", type=int, default=1,
                        help="wrk -t (default 1: on 2 cores, leaves one to the server)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--verbose", action="store_true", help="show wrk's own output")
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser


def run(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed")
    if args.connections < args.threads:
        raise BenchError("--connections must be at least --threads")
    info = machine()
    with tempfile.TemporaryDirectory(prefix="cmhost-bench-") as tmp:
        workdir = Path(tmp)
        cmhost, port = start_cmhost(workdir)
        try:
            populate(port)
            headers = signed_headers(port)
            cmhost_bytes = check_replayed_request(port, headers)
            script = workdir / "describe_servers.lua"
            write_wrk_script(script, headers)

            baseline, baseline_port = start_baseline(workdir)
            try:
                base = load("baseline", baseline_port, script, args, len(BASELINE_BODY),
                            args.verbose)
            finally:
                baseline.stop()
            ours = load("cmhost", port, script, args, cmhost_bytes, args.verbose)
        except BenchError:
            print(f"--- cmhost log (tail)\n{cmhost.log()}", file=sys.stderr)
            raise
        finally:
            cmhost.stop()

    results = [base, ours]
    ratio = ours.requests_per_second / base.requests_per_second
    problems = [f"{r.name}: {p}" for r in results for p in r.problems()]
    if args.json:
        print(json.dumps({
            "machine": info,
            "load": {"threads": args.threads, "connections": args.connections,
                     "duration_s": args.duration, "warmup_s": args.warmup,
                     "servers": SERVER_COUNT},
            "results": {r.name: asdict(r) for r in results},
            "ratio": round(ratio, 4), "target_ratio": TARGET_RATIO,
            "pass": ratio >= TARGET_RATIO, "errors": problems,
        }, indent=2))
    else:
        print_table(info, args, results, ratio)
    if problems:
        print("BENCHMARK ERROR: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve_baseline is not None:
        return serve_baseline(args.serve_baseline)
    try:
        return run(args)
    except BenchError as exc:
        print(f"BENCHMARK ERROR: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
