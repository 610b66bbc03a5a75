"""Benchmark: what a real server costs — its time to HEALTHY and the memory of each of its
processes (puppetserver, its Code Manager and PuppetDB; goiardi), next to an embedded
server's time and the `cmhost serve` process's own memory, measured in the same run.

What it measures. One `cmhost serve` (with its worker, SQLite, real clock,
`--provisioning-seconds 0`, `--health-interval 1`) with `--puppet-driver puppetserver
--chef-driver goiardi` (and `--puppetdb on` when --puppetdb-url is given), and, one after the
other, a second one with the embedded engines: the baseline. For each engine it creates one
server through boto3 (the Puppet one with a PUPPET_R10K_REMOTE: a control repository made
here, so its Code Manager runs too, when r10k and git are installed) and times CreateServer →
HEALTHY, polling DescribeServers every 0.5 s. Once HEALTHY it reads the VmRSS (children
included) of every process the server runs: each pid file under
`<data-dir>/engines/<server-id>/`, checked against /proc. The figures are for one server at a
time; two cores share everything, so a start-up takes longer on a busy machine.

    .venv/bin/python bench/engines.py [--puppetdb-url postgresql://...] [--timeout 900] [--json]

Needs Debian's puppetserver, puppet-agent and goiardi (and puppetdb for --puppetdb-url);
takes about 3-5 minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    SERVER_DEFAULTS,
    BenchError,
    Site,
    client,
    machine,
    main_guard,
    print_machine,
    rss_bytes,
    table,
)

MB = 1024 * 1024


def control_repository(workdir: Path) -> str | None:
    """A bare git repository with one `production` branch holding a site.pp: the r10k
    remote of the Puppet server. None when git or r10k is missing."""
    if shutil.which("git") is None or not Path("/usr/bin/r10k").exists():
        return None
    work, bare = workdir / "control", workdir / "control.git"
    (work / "manifests").mkdir(parents=True)
    (work / "manifests" / "site.pp").write_text("node default { notify { 'bench': } }\n")
    (work / "Puppetfile").write_text("# no modules\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    for args in (["init", "-q", "-b", "production", str(work)],
                 ["-C", str(work), "add", "-A"],
                 ["-C", str(work), "commit", "-qm", "bench"],
                 ["clone", "-q", "--bare", str(work), str(bare)]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return f"file://{bare}"


def processes_of(data_dir: Path, server_id: str) -> dict[str, int]:
    """name -> pid of each live process the server's engine directory names in a pid file."""
    found: dict[str, int] = {}
    for pid_file in sorted((data_dir / "engines" / server_id).rglob("*.pid")):
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if Path(f"/proc/{pid}").exists():
            found[pid_file.stem] = pid
    return found


def time_to_healthy(api: Any, name: str, engine: str, timeout: float,
                    attributes: list[dict[str, str]]) -> tuple[float, str]:
    """Seconds from CreateServer to HEALTHY, and the server's id."""
    started = time.monotonic()
    answer = api.create_server(**SERVER_DEFAULTS, ServerName=name, Engine=engine,
                               EngineAttributes=attributes)["Server"]
    while time.monotonic() - started < timeout:
        described = api.describe_servers(ServerName=name)["Servers"][0]
        if described["Status"] == "HEALTHY":
            return time.monotonic() - started, answer["ServerArn"].rsplit("/", 1)[1]
        if described["Status"] not in ("CREATING",):
            raise BenchError(f"{name} is {described['Status']}: {described.get('StatusReason')}")
        time.sleep(0.5)
    raise BenchError(f"{name} was not HEALTHY after {timeout:.0f}s")


def run_site(workdir: Path, label: str, extra: list[str], r10k_remote: str | None,
             timeout: float) -> dict[str, Any]:
    site = Site(workdir / label, f"sqlite:///{workdir / label / 'cmhost.db'}",
                options=["--clock", "real", "--provisioning-seconds", "0",
                         "--health-interval", "1", *extra])
    (workdir / label).mkdir(parents=True)
    proc, port = site.serve(label, worker=True)
    out: dict[str, Any] = {"cmhost_rss_mb": 0.0, "servers": {}}
    try:
        api = client(port)
        for engine in ("Puppet", "Chef"):
            attributes = ([{"Name": "PUPPET_R10K_REMOTE", "Value": r10k_remote}]
                          if engine == "Puppet" and r10k_remote else [])
            seconds, server_id = time_to_healthy(api, f"bench-{engine.lower()}", engine,
                                                 timeout, attributes)
            time.sleep(5)  # let the processes settle after their first requests
            rss = {name: rss_bytes(pid) / MB
                   for name, pid in processes_of(workdir / label / "data", server_id).items()}
            out["servers"][engine] = {"seconds_to_healthy": round(seconds, 1),
                                      "rss_mb": {k: round(v, 1) for k, v in rss.items()}}
        out["cmhost_rss_mb"] = round(rss_bytes(proc.pid, with_children=False) / MB, 1)
        for engine in ("Puppet", "Chef"):
            api.delete_server(ServerName=f"bench-{engine.lower()}")
        deadline = time.monotonic() + 120
        while api.describe_servers()["Servers"] and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        proc.stop()
    return out


def run(args: argparse.Namespace) -> int:
    info = machine()
    with tempfile.TemporaryDirectory(prefix="cmhost-bench-engines-") as tmp:
        workdir = Path(tmp)
        remote = control_repository(workdir)
        real_flags = ["--puppet-driver", "puppetserver", "--chef-driver", "goiardi",
                      "--engine-ports", "29140-29199"]
        if args.puppetdb_url:
            real_flags += ["--puppetdb", "on", "--puppetdb-database-url", args.puppetdb_url]
        real = run_site(workdir, "real", real_flags, remote, args.timeout)
        embedded = run_site(workdir, "embedded", [], None, args.timeout)
    info["loadavg_at_end"] = list(Path("/proc/loadavg").read_text().split()[:3])
    result = {"machine": info, "real": real, "embedded": embedded,
              "code_manager": remote is not None, "puppetdb": bool(args.puppetdb_url)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print_machine(info)
    rows = []
    for engine, driver in (("Puppet", "puppetserver"), ("Chef", "goiardi")):
        figures = real["servers"][engine]
        base = embedded["servers"][engine]["seconds_to_healthy"]
        processes = ", ".join(f"{_label(n)} {mb:.0f} MB" for n, mb in figures["rss_mb"].items())
        rows.append([f"{engine} ({driver})", figures["seconds_to_healthy"], base,
                     f"{sum(figures['rss_mb'].values()):.0f}", processes or "-"])
    print(table(["server", "s to HEALTHY", "embedded s", "RSS MB", "processes (VmRSS)"],
                rows))
    print(f"cmhost serve itself: {real['cmhost_rss_mb']:.0f} MB with the real engines' "
          f"drivers, {embedded['cmhost_rss_mb']:.0f} MB embedded only")
    return 0


def _label(pid_file_stem: str) -> str:
    return re.sub(r"\.pid$", "", pid_file_stem)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--puppetdb-url", help="PostgreSQL URL for --puppetdb-database-url "
                                               "(PuppetDB on when given)")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--json", action="store_true")
    return main_guard(run, argv, parser)


if __name__ == "__main__":
    sys.exit(main())
