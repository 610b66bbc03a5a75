"""The crash harness for `cmhost db upgrade`: SIGKILL it at random moments and at exact
points, then start it again and check that it finishes the job.

A trial takes a database, either fresh or at revision 0002 with data in it (servers,
backups, events, tags and an issued key, made by a real cmhost and migrated down), and runs
`cmhost db upgrade` on it two to four times in a row, each run killed:
- at a random moment while it migrates the database (from when the database file, its WAL
  or its PostgreSQL connection appears, to as long after as a whole upgrade took to get
  to the newest revision, and a tenth more), or
- at an exact point (faults/sitecustomize.py): before or after the n-th statement a migration
  executes (DDL, data change or version stamp), before or after the n-th commit.
After each kill the database must be exactly at a revision: the schema of the revision it
is stamped with, nothing more (a migration half applied is what made a database that never
started again). Then an upgrade that is not killed must succeed, and leave the same schema
and rows as an upgrade never interrupted; at the last trial (and now and then in a soak)
`cmhost serve` starts on it and boto3 reads it back.

`CMHOST_CRASH_SEED` replays a seed; every failure message names its seed and trial.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.reliability import dbstate
from tests.reliability.crash import CrashCheckFailed
from tests.reliability.split import FAULTS
from tests.support import ROOT, Cmhost, create_server, fresh_database_url

TEMPLATE_REVISION = "0002"
# Stored before migration 0007 (issue 14): major engine versions, no groups or subnets.
_AS_BEFORE_0007 = ("UPDATE servers SET engine_version = CASE engine WHEN 'Chef' THEN '2' "
                   "ELSE '2019' END, security_group_ids = NULL, subnet_ids = NULL")
# Rows a fresh database gets that differ between databases: compared by key only.
_KEYS_ONLY = ("meta",)
_COMPARED = ("ServerName", "ServerArn", "Engine", "EngineVersion", "Status", "Endpoint",
             "SecurityGroupIds", "SubnetIds", "CreatedAt")


@dataclass
class UpgradeReport:
    kind: str
    backend: str
    seed: int
    kills: int = 0  # kill points survived
    random_kills: int = 0
    points_hit: dict[str, int] = field(default_factory=dict)  # exact points, by kind
    left_at: dict[str, int] = field(default_factory=dict)  # revision after each kill
    trials: int = 0
    serves: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        left = ", ".join(f"{k}: {v}" for k, v in sorted(self.left_at.items()))
        return (f"db upgrade from {self.kind} on {self.backend}, seed {self.seed}: "
                f"{self.kills} kill points survived in {self.trials} trials "
                f"({self.random_kills} at random moments, {self.points_hit} at exact points); "
                f"left at revision {{{left}}}; {self.serves} serves checked; "
                f"{self.seconds:.1f} s")


@dataclass
class _Template:
    """The stopped cmhost whose data directory and database every trial copies."""

    workdir: Path
    url: str
    servers: dict[str, dict[str, Any]]
    backups: int
    key: dict[str, str]


class UpgradeCampaign:
    def __init__(self, workdir: Path, seed: int, kills: int, *, kind: str,
                 serve_probability: float = 0.0) -> None:
        assert kind in ("fresh", TEMPLATE_REVISION)
        self.workdir = workdir
        self.seed = seed
        self.rng = random.Random(seed)
        self.kills = kills
        self.kind = kind
        self.serve_probability = serve_probability
        self.master_key_file = workdir / "secret" / "master.key"
        self.template: _Template | None = None
        self.order = dbstate.revisions()
        self.schemas: dict[str | None, list[tuple[Any, ...]]] = {}
        self.expected: dict[str, list[str]] = {}
        self.window = 0.0  # how long an upgrade takes to migrate the database
        self.reached: float | None = None  # when the reference upgrade got to the last one
        self.bounds: dict[str, int] = {}  # exact points: how many calls a whole upgrade makes
        self.watch: dbstate.PostgresWatch | None = None
        self.data_dirs: dict[str, Path] = {}  # by database URL
        self.trial = 0
        self.history: list[str] = []
        self.backend = "SQLite"
        self.report = UpgradeReport(kind=kind, backend="", seed=seed)

    # --- running ----------------------------------------------------------------------

    def run(self) -> UpgradeReport:
        started = time.monotonic()
        try:
            self._prepare()
            while self.report.kills < self.kills:
                workdir, url = self._trial()
                if self.rng.random() < self.serve_probability:
                    self._check_serving(workdir, url)
            self._check_serving(workdir, url)
        except CrashCheckFailed:
            raise
        except Exception as exc:
            raise self._failure(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self.report.seconds = time.monotonic() - started
            if self.watch is not None:
                self.watch.close()
        return self.report

    def _prepare(self) -> None:
        """The master key, the template, the schema of every revision, and an upgrade never
        interrupted: its time on the database, its end state, its number of statements."""
        if self.kind == TEMPLATE_REVISION:
            self.template = self._make_template()
            self.master_key_file = self.template.workdir / "secret" / "master.key"
        else:
            self.master_key_file.parent.mkdir(parents=True, exist_ok=True)
            self.master_key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
            self.master_key_file.chmod(0o600)
        scratch = self.workdir / "schemas"
        url = fresh_database_url(scratch)
        if not url.startswith("sqlite"):
            self.backend = "PostgreSQL"
            self.watch = dbstate.PostgresWatch()
        self.report.backend = self.backend
        self.schemas[None] = dbstate.Database(url).schema()
        for revision in self.order:
            dbstate.migrate_to(url, revision)
            self.schemas[revision] = dbstate.Database(url).schema()
        self.bounds["exec"] = dbstate.count_exec_calls(self._database(self.workdir / "count"))
        url = self._database(self.workdir / "reference")
        began = time.monotonic()
        touched, code, err = self._upgrade(url, watch=True)
        if code != 0:
            raise self._failure(f"an upgrade never interrupted failed ({code}):\n{err}")
        # Up to a little after the last migration committed (what follows, the master key
        # check and the process's exit, needs fewer kills).
        self.window = 1.1 * ((self.reached or time.monotonic()) - (touched or began))
        with dbstate.Database(url) as reference:
            self.expected = reference.rows(keys_only=_KEYS_ONLY)
            schema = reference.schema()
        if schema != self.schemas[self.order[-1]]:
            raise self._failure("the schema `db upgrade` made differs from alembic's")
        # A whole upgrade commits once per migration and a few times more (reading the
        # revision, the master key check): lowered when a first run finds fewer.
        self.bounds["commit"] = len(self.order) + 3

    def _database(self, workdir: Path) -> str:
        """A database of this campaign's kind (its data directory `workdir`/data), where
        nothing ran yet."""
        if self.template is None:
            url = fresh_database_url(workdir)
        else:
            url = dbstate.copy_database(self.template.url, self.template.workdir, workdir)
        self.data_dirs[url] = workdir / "data"
        return url

    def _trial(self) -> tuple[Path, str]:
        """Kill upgrades of a new database two to four times in a row, then finish."""
        self.trial += 1
        self.report.trials += 1
        workdir = self.workdir / f"trial-{self.trial}"
        url = self._database(workdir)
        self.history = []
        for attempt in range(self.rng.randint(2, 4)):
            if not self._killed_run(url, first=attempt == 0):
                return workdir, url  # it ran to the end before its kill: checked
            self._check_left_at_a_revision(url)
        code, err = self._upgrade(url)[1:]
        if code != 0:
            raise self._failure(f"`cmhost db upgrade` after the kills failed ({code}):\n{err}")
        self._check_finished(url)
        return workdir, url

    def _killed_run(self, url: str, *, first: bool) -> bool:
        """One upgrade killed at a random moment or at an exact point; False when it ran to
        the end first (an exact point it did not reach, or a moment after its end)."""
        crash_at, which, n, point, delay = None, "", 0, "", None
        if self.report.kills % 2 == 0:  # every other kill at an exact point, 3 in 4 a statement
            which = "exec" if self.rng.random() < 0.75 else "commit"
            n = self.rng.randint(1, self.bounds[which])
            when = self.rng.choice(("before", "after"))
            if self.report.kills == 0:  # the first: after the first statement (the issue's)
                which, n, when = "exec", 1, "after"
            point = f"{when} {'statement' if which == 'exec' else 'commit'}"
            target = dbstate.EXEC_POINT if which == "exec" else dbstate.COMMIT_POINT
            crash_at = f"{target}:{when}:{n}"
            label = f"{point} {n}"
        else:
            delay = self.rng.uniform(0.0, self.window)
            label = f"{delay * 1000:.0f} ms in"
        code, err = self._upgrade(url, crash_at=crash_at, kill_after=delay)[1:]
        if code == 0:
            if crash_at is not None and first:
                self.bounds[which] = max(1, n - 1)  # a whole upgrade makes fewer calls
            self.history.append(f"{label}: ran to the end first")
            self._check_finished(url)
            return False
        if code != -signal.SIGKILL or (crash_at is not None and "cmhost-fault:" not in err):
            raise self._failure(f"`cmhost db upgrade` failed by itself ({code}), "
                                f"planned kill {label}:\n{err}")
        if crash_at is None:
            self.report.random_kills += 1
        else:
            self.report.points_hit[point] = self.report.points_hit.get(point, 0) + 1
        self.report.kills += 1
        self.history.append(f"killed {label}")
        return True

    def _upgrade(self, url: str, *, crash_at: str | None = None,
                 kill_after: float | None = None, watch: bool = False
                 ) -> tuple[float | None, int, str]:
        """Run `cmhost db upgrade`; with `kill_after`, SIGKILL it that long after it began
        to work on the database. Returns when it did (or None), its exit code and stderr."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CMHOST_CRASH")}
        if crash_at is not None:
            env["CMHOST_CRASH_AT"] = crash_at
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FAULTS), env.get("PYTHONPATH"))
                                                if p)
        data_dir = self.data_dirs[url]
        args = [sys.executable, "-m", "cmhost", "db", "upgrade", "--data-dir", str(data_dir),
                "--database-url", url, "--master-key-file", str(self.master_key_file)]
        log = data_dir.parent / "upgrade.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            out.write(f"--- trial {self.trial}: {crash_at or kill_after}\n".encode())
            out.flush()
            start = out.tell()
            proc = subprocess.Popen(args, stdout=out, stderr=out, env=env, cwd=ROOT)
            touched = None
            if kill_after is not None or watch:
                touched = self._wait_until_touched(proc, url)
            if watch:
                self._wait_until_migrated(proc, url)
            if kill_after is not None:
                time.sleep(kill_after)
                proc.kill()
            try:
                code = proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise self._failure("`cmhost db upgrade` hung for 120 s") from None
        with open(log, "rb") as f:
            f.seek(start)
            err = f.read().decode(errors="replace")
        return touched, code, err[-3000:]

    def _wait_until_touched(self, proc: subprocess.Popen[bytes], url: str) -> float | None:
        """When the process began to work on the database: its file or WAL appeared (either
        absent at the start), or it connected to PostgreSQL."""
        if self.watch is not None:
            watch = self.watch
            def touched() -> bool:
                return watch.connected(url)
        else:
            base = url.removeprefix("sqlite:///")
            absent = [Path(base + s) for s in ("", "-wal") if not Path(base + s).exists()]
            def touched() -> bool:
                return not absent or any(p.exists() for p in absent)
        while proc.poll() is None:
            if touched():
                return time.monotonic()
            time.sleep(0.001)
        return None

    def _wait_until_migrated(self, proc: subprocess.Popen[bytes], url: str) -> None:
        with dbstate.Database(url) as db:
            while proc.poll() is None:
                if db.revision() == self.order[-1]:
                    self.reached = time.monotonic()
                    return
                time.sleep(0.002)

    # --- checking ---------------------------------------------------------------------

    def _failure(self, problem: str) -> CrashCheckFailed:
        return CrashCheckFailed(
            f"db upgrade crash harness ({self.kind}, {self.backend}) seed {self.seed} "
            f"(replay: CMHOST_CRASH_SEED={self.seed}), trial {self.trial} "
            f"[{'; '.join(self.history)}]: {problem}\nfiles: {self.workdir}")

    def _check_left_at_a_revision(self, url: str) -> None:
        if self.watch is not None:
            # The killed process's server session may still be finishing what it had sent
            # (a COMMIT, say): look once it is gone, and at one moment (a snapshot).
            deadline = time.monotonic() + 30
            while self.watch.connected(url) and time.monotonic() < deadline:
                time.sleep(0.01)
        with dbstate.Database(url, snapshot=True) as db:
            self._check_at_a_revision(db)

    def _check_at_a_revision(self, db: dbstate.Database) -> None:
        revision = db.revision()
        self.report.left_at[str(revision)] = self.report.left_at.get(str(revision), 0) + 1
        self.history[-1] += f" -> at {revision}"
        if db.integrity() != "ok":
            raise self._failure(f"integrity_check after the kill: {db.integrity()}")
        if revision not in self.schemas:
            raise self._failure(f"stamped with an unknown revision {revision!r}")
        schema = db.schema()
        if schema != self.schemas[revision]:
            extra = [s for s in schema if s not in self.schemas[revision]]
            missing = [s for s in self.schemas[revision] if s not in schema]
            raise self._failure(
                f"the killed upgrade left a schema that is not revision {revision}'s "
                f"(a migration half applied): more {extra[:8]}, less {missing[:8]}")

    def _check_finished(self, url: str) -> None:
        with dbstate.Database(url) as db:
            self._check_at_the_end(db)

    def _check_at_the_end(self, db: dbstate.Database) -> None:
        if db.integrity() != "ok":
            raise self._failure(f"integrity_check: {db.integrity()}")
        if db.schema() != self.schemas[self.order[-1]]:
            raise self._failure(f"the schema after the upgrade is not {self.order[-1]}'s")
        rows = db.rows(keys_only=_KEYS_ONLY)
        if rows != self.expected:
            changed = sorted(t for t in set(rows) | set(self.expected)
                             if rows.get(t) != self.expected.get(t))
            raise self._failure(f"rows differ from an upgrade never interrupted in {changed}: "
                                f"{ {t: rows.get(t) for t in changed[:2]} }")

    def _check_serving(self, workdir: Path, url: str) -> None:
        """`cmhost serve` starts on it, and boto3 finds what was there (or can create)."""
        self.report.serves += 1
        cm = Cmhost(workdir, database_url=url, master_key_file=self.master_key_file,
                    provisioning_seconds=1.0, deletion_seconds=1.0)
        try:
            cm.start()
        except RuntimeError as exc:
            raise self._failure(f"cmhost serve did not start: {exc}") from None
        try:
            client = cm.client()
            if self.template is None:
                if create_server(client, "after-upgrade")["Status"] != "CREATING":
                    raise self._failure("CreateServer after the upgrade did not create")
                return
            seen = {s["ServerName"]: {k: s.get(k) for k in _COMPARED}
                    for s in client.describe_servers()["Servers"]}
            if seen != self.template.servers:
                raise self._failure(f"DescribeServers after the upgrade: {seen}, before "
                                    f"{self.template.servers}")
            backups = client.describe_backups()["Backups"]
            if len(backups) != self.template.backups:
                raise self._failure(f"{len(backups)} backups after, {self.template.backups} "
                                    "before")
            key = self.template.key
            cm.client(key=key["AccessKeyId"], secret=key["SecretAccessKey"]).describe_servers()
        finally:
            cm.stop()

    # --- the template -----------------------------------------------------------------

    def _make_template(self) -> _Template:
        """A cmhost with two servers, a backup, tags and an issued key, stopped, its
        database migrated down to 0002 and its rows as cmhost stored them then."""
        workdir = self.workdir / "template"
        cm = Cmhost(workdir, provisioning_seconds=1.0, deletion_seconds=1.0).start()
        try:
            client = cm.client()
            create_server(client, "chef-1", Tags=[{"Key": "team", "Value": "a"}])
            create_server(client, "puppet-1", "Puppet")
            cm.advance(30)
            client.create_backup(ServerName="chef-1")
            cm.advance(30)
            key = json.loads(cm.cli("keys", "create", "--account", "111111111111",
                                    *cm.storage_args()).stdout)
            servers = {s["ServerName"]: {k: s.get(k) for k in _COMPARED}
                       for s in client.describe_servers()["Servers"]}
            backups = len(client.describe_backups()["Backups"])
        finally:
            cm.stop()
        assert {s["Status"] for s in servers.values()} == {"HEALTHY"}, servers
        assert backups >= 1
        dbstate.migrate_to(cm.database_url, TEMPLATE_REVISION)
        from sqlalchemy import create_engine, text

        engine = create_engine(cm.database_url)
        with engine.begin() as conn:
            conn.execute(text(_AS_BEFORE_0007))
        engine.dispose()
        return _Template(workdir, cm.database_url, servers, backups, key)
