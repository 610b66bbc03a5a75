"""The crash harness: a seeded mix of mutations against a real cmhost, SIGKILLed at random
points and restarted, checking after every restart that nothing was lost, left half-written,
stuck or done twice.

One round: refresh the view of every account, then one of
- *after*: send 2-6 mutations, maybe advance the clock a little, kill a few ms later (the
  worker is usually mid-job: jobs run as soon as they are enqueued);
- *during*: a background thread kills after a random delay while mutations are being sent
  (often mid-request: CreateServer spends a few hundred ms generating keys);
- *advance*: send mutations, then advance the virtual clock by minutes to a day (scheduled
  backups and maintenance fire) while a background thread kills it mid-way.
Then restart, check, and sometimes settle (advance far enough for everything to finish) and
check that nothing is stuck and every started operation finished exactly once.

Some restarts also arm a crash point (faults/sitecustomize.py): the process then kills itself
at an exact place (between two renames, after an artifact is stored but before it is
recorded, inside a transaction) if it gets there before the round's own kill.

`CMHOST_CRASH_SEED` replays a seed; every failure message names its seed and round.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.reliability import invariants, workload
from tests.reliability.dbprobe import DbProbe
from tests.reliability.invariants import EXPECTED_ERRORS, Call, Ledger
from tests.reliability.split import FAULTS
from tests.support import Cmhost, raw_call

SETTLE_SECONDS = 900.0  # longer than any job's retries (2+4+8+16 s) and busy waits (10 s)
DEV_ACCOUNT = ("000000000000", "test", "test")
_BROKEN = (OSError, http.client.HTTPException, ValueError)  # ValueError: a truncated JSON body
# Exact crash points a restart may arm (`{n}`: which call, 1 to 3); the first ones are
# reached by most rounds.
CRASH_POINTS = (
    "cmhost.storage.repo:claim_next_job:after:{n}",
    "cmhost.storage.repo:finish_job_step:after:{n}",
    "cmhost.service.events:record:after:{n}",
    "cmhost.storage.repo:transition_server:after:{n}",
    "cmhost.engines.embedded_nodes:disassociate:after:{n}",
    "cmhost.engines.embedded_nodes:associate_chef:after:{n}",
    "cmhost.engines.embedded_nodes:associate_puppet:after:{n}",
    "cmhost.service.artifacts:store_artifact:after:{n}",
    "os:replace:before:{n}:cmhost.storage.blobs",
    "os:rename:before:{n}:cmhost.engines.statedir",
    "cmhost.engines.embedded:EmbeddedDriver.restore:after:{n}",
    "cmhost.engines.embedded:EmbeddedDriver.maintain:after:{n}",
    "cmhost.engines.embedded:EmbeddedDriver.provision:after:{n}",
    "cmhost.engines.embedded:EmbeddedDriver.destroy:after:{n}",
    "cmhost.storage.repo:insert_backup:after:{n}",
)


class CrashCheckFailed(AssertionError):
    pass


@dataclass(frozen=True)
class Account:
    id: str
    key: str
    secret: str


@dataclass
class Report:
    seed: int
    kill_points: int = 0
    kills: dict[str, int] = field(default_factory=dict)  # by round style
    kills_mid_request: int = 0
    kills_mid_advance: int = 0
    crash_points_hit: dict[str, int] = field(default_factory=dict)
    settles: int = 0
    backups_verified: int = 0
    leftovers: dict[str, int] = field(default_factory=dict)
    failed_jobs: list[str] = field(default_factory=list)
    final_statuses: dict[str, int] = field(default_factory=dict)
    failures_seen: dict[str, int] = field(default_factory=dict)  # failure events and states
    seconds: float = 0.0
    restart_seconds: list[float] = field(default_factory=list)  # each restart's start-up
    ledger: Ledger = field(default_factory=Ledger)

    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for call in self.ledger.calls:
            counts[call.outcome] = counts.get(call.outcome, 0) + 1
        return counts

    def by_op(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for call in self.ledger.calls:
            row = table.setdefault(call.op, {})
            row[call.outcome] = row.get(call.outcome, 0) + 1
        return table

    def summary(self) -> str:
        sent = sum(n for o, n in self.outcomes().items() if o != "unsent")
        restart = sum(self.restart_seconds) / max(1, len(self.restart_seconds))
        return (f"seed {self.seed}: {self.kill_points} kill points survived "
                f"({self.kills}; {self.kills_mid_request} mid-request, "
                f"{self.kills_mid_advance} mid-advance, {sum(self.crash_points_hit.values())} "
                f"at armed crash points), {sent} mutations sent "
                f"{self.outcomes()}, {self.settles} settles, {self.backups_verified} backup "
                f"artifacts verified at the end, {self.seconds:.1f} s (of which restarts "
                f"{sum(self.restart_seconds):.1f} s, {restart:.2f} s each)")


class _Killer(threading.Thread):
    """SIGKILLs the process after `delay`, noting what the driver was doing at that moment."""

    def __init__(self, campaign: CrashCampaign, delay: float) -> None:
        super().__init__(daemon=True)
        self.campaign = campaign
        self.proc = campaign.cm.proc
        self.delay = delay
        self.fired = threading.Event()
        self.mid_request = False
        self.mid_advance = False
        self.already_dead = False

    def run(self) -> None:
        time.sleep(self.delay)
        self.mid_request = self.campaign.in_flight
        self.mid_advance = self.campaign.advancing
        if self.proc is not None:
            self.already_dead = self.proc.poll() is not None
            self.proc.kill()
        self.fired.set()


class CrashCampaign:
    def __init__(self, workdir: Path, seed: int, kill_points: int, *,
                 settle_probability: float = 0.2, accounts: int = 3, names: int = 4,
                 provisioning_seconds: float = 3.0) -> None:
        self.workdir = workdir
        self.seed = seed
        self.rng = random.Random(seed)
        self.kill_points = kill_points
        self.settle_probability = settle_probability
        self.account_count = accounts
        self.names = [f"srv-{i}" for i in range(names)]
        self.cm = Cmhost(workdir, provisioning_seconds=provisioning_seconds,
                         deletion_seconds=1.0)
        self.probe = DbProbe(self.cm.database_url, self.cm.data_dir, self.cm.master_key_file)
        self.accounts: list[Account] = []
        self.report = Report(seed=seed)
        self.ledger = self.report.ledger
        self.views: dict[str, workload.View] = {}
        self.round = 0
        self.in_flight = False
        self.advancing = False
        self.problems: list[str] = []
        self.armed: str | None = None
        self.finished_nodes: set[str] = set()
        self.fault_probability = 0.3
        # The armed crash point counts calls only while this file exists: during the round's
        # work, not while cmhost starts or the harness checks.
        self.gate = workdir / "crash-gate"

    # --- running ----------------------------------------------------------------------

    def run(self) -> Report:
        started = time.monotonic()
        try:
            self.cm.start()
            self._issue_accounts()
            for _ in range(self.kill_points):
                self._round()
            self._settle_and_check(final=True)
        except CrashCheckFailed:
            raise
        except Exception as exc:
            raise CrashCheckFailed(
                f"crash harness seed {self.seed} (replay: CMHOST_CRASH_SEED={self.seed}), round "
                f"{self.round}: {type(exc).__name__}: {exc}\ncmhost data: {self.cm.workdir}"
            ) from exc
        finally:
            self.report.seconds = time.monotonic() - started
            self.cm.stop()
            self.probe.close()
        return self.report

    def _issue_accounts(self) -> None:
        self.accounts = [Account(*DEV_ACCOUNT)]
        ids = [f"{111111111111 * (i + 1):012d}" for i in range(self.account_count - 1)]
        results: dict[str, Any] = {}

        def issue(account: str) -> None:
            out = self.cm.cli("keys", "create", "--account", account, *self.cm.storage_args())
            results[account] = json.loads(out.stdout)

        threads = [threading.Thread(target=issue, args=(a,)) for a in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for account in ids:
            key = results[account]
            self.accounts.append(Account(account, key["AccessKeyId"], key["SecretAccessKey"]))

    def _delay(self) -> float:
        roll = self.rng.random()
        if roll < 0.45:
            return self.rng.uniform(0.0, 0.03)
        if roll < 0.85:
            return self.rng.uniform(0.03, 0.3)
        return self.rng.uniform(0.3, 0.6)

    def _round(self) -> None:
        self.round += 1
        rng = self.rng
        if not self.views:
            self._refresh_views()
        now = float(self.cm.get("/_cmhost/clock")["now"])
        style = rng.choices(("after", "during", "advance"), (4, 4, 2))[0]
        if self.armed:
            self.gate.touch()
        count = rng.randint(2, 6)
        # An armed crash point gets time to be reached before the round's own kill.
        delay = rng.uniform(0.3, 1.0) if self.armed else self._delay()
        if style == "after":
            for _ in range(count):
                self._mutate(now)
            if rng.random() < 0.3:
                self._advance(rng.choice((1, 5, 30, 120)), killable=self.armed is not None)
            killer = _Killer(self, delay)
            killer.start()
        elif style == "during":
            killer = _Killer(self, delay)
            killer.start()
            for _ in range(count):
                if killer.fired.is_set():
                    break
                self._mutate(now)
        else:
            for _ in range(count - 1):
                self._mutate(now)
            killer = _Killer(self, rng.uniform(0.0, 0.15))
            killer.start()
            self._advance(rng.choice((30, 600, 3600, 6 * 3600, 86400)), killable=True)
        killer.join()
        assert self.cm.proc is not None
        self.cm.proc.wait()
        self.cm.proc = None
        self.gate.unlink(missing_ok=True)
        self.report.kill_points += 1
        if killer.already_dead and self.armed:
            module, attribute, when, _, *caller = self.armed.split(":")
            point = f"{when} {module}.{attribute}" + (f" in {caller[0]}" if caller else "")
            self.report.crash_points_hit[point] = self.report.crash_points_hit.get(point, 0) + 1
            style = "crash point"
        elif killer.already_dead:
            self._fail(["cmhost died by itself (no crash point armed)"])
        self.report.kills[style] = self.report.kills.get(style, 0) + 1
        self.report.kills_mid_request += killer.mid_request and not killer.already_dead
        self.report.kills_mid_advance += killer.mid_advance and not killer.already_dead
        self._arm(rng.choice(CRASH_POINTS).format(n=rng.randint(1, 3))
                  if rng.random() < self.fault_probability else None)
        began = time.monotonic()
        try:
            self.cm.start()
        except RuntimeError as exc:
            self._fail([f"cmhost did not come back after the kill: {exc}"])
        self.report.restart_seconds.append(time.monotonic() - began)
        self._check_after_restart()
        if rng.random() < self.settle_probability:
            self._settle_and_check(final=False)

    def _arm(self, crash_at: str | None) -> None:
        """The next start of cmhost kills itself at `crash_at` (None: only the round's kill)."""
        env = {k: v for k, v in self.cm.env.items()
               if k not in ("CMHOST_CRASH_AT", "CMHOST_CRASH_GATE")}
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(FAULTS)]
        if crash_at:
            env["CMHOST_CRASH_AT"] = crash_at
            env["CMHOST_CRASH_GATE"] = str(self.gate)
            paths.insert(0, str(FAULTS))
        env["PYTHONPATH"] = os.pathsep.join(paths)
        self.cm.env = env
        self.armed = crash_at

    # --- talking to cmhost ------------------------------------------------------------

    def _send(self, account: Account, op: str, body: dict[str, Any]
              ) -> tuple[int, dict[str, Any] | None]:
        status, _, data = raw_call(self.cm, op, json.dumps(body).encode(), key=account.key,
                                   secret=account.secret)
        return status, data

    def _api(self, account: Account, op: str, body: dict[str, Any]) -> dict[str, Any]:
        """A call that must succeed (the harness's own reads)."""
        status, data = self._send(account, op, body)
        if status != 200 or data is None:
            self._fail([f"{op} {body} for {account.id} answered {status}: {data}"])
        assert data is not None
        return data

    def _all(self, account: Account, op: str, member: str, body: dict[str, Any]
             ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = None
        while True:
            page = self._api(account, op, {**body, **({"NextToken": token} if token else {})})
            items += page[member]
            token = page.get("NextToken")
            if not token:
                return items

    def _refresh_views(self) -> None:
        for account in self.accounts:
            view = workload.View()
            for server in self._all(account, "DescribeServers", "Servers", {}):
                view.servers[server["ServerName"]] = server
            view.backups = self._all(account, "DescribeBackups", "Backups", {})
            self.views[account.id] = view

    def _mutate(self, now: float) -> None:
        account = self.rng.choice(self.accounts)
        choice = workload.choose(self.rng, account.id, self.views[account.id], self.names, now)
        if choice is None:
            return
        op, server, body = choice
        call = Call(seq=len(self.ledger.calls), round=self.round, account=account.id, op=op,
                    server=server, body=body)
        self.ledger.calls.append(call)
        self.in_flight = True
        try:
            status, data = self._send(account, op, body)
        except ConnectionRefusedError:
            call.outcome = "unsent"
            return
        except _BROKEN:
            call.outcome = "unknown"
            return
        finally:
            self.in_flight = False
        if status == 200:
            call.outcome, call.response = "accepted", data
        elif status < 500 and isinstance(data, dict) and data.get("__type") in EXPECTED_ERRORS:
            call.outcome, call.code = "rejected", str(data["__type"])
        else:
            call.outcome = "unknown"
            self.problems.append(f"{call.describe()}: unexpected answer {status}: {data}")

    def _advance(self, seconds: float, *, killable: bool) -> None:
        self.advancing = True
        try:
            self.cm.advance(seconds)
        except _BROKEN as exc:
            if not killable:
                self._fail([f"advance({seconds}) failed while cmhost should be up: {exc}"])
        finally:
            self.advancing = False

    # --- checking ---------------------------------------------------------------------

    def _fail(self, problems: list[str]) -> None:
        recent = "\n".join(c.describe() for c in self.ledger.calls[-12:])
        raise CrashCheckFailed(
            f"crash harness seed {self.seed} (replay: CMHOST_CRASH_SEED={self.seed}), "
            f"round {self.round}:\n  " + "\n  ".join(problems[:40])
            + f"\nlast calls:\n{recent}\ncmhost data: {self.cm.workdir}")

    def _check_after_restart(self) -> None:
        """Integrity, artifacts and the ledger: hold right after any restart."""
        problems = list(self.problems)
        problems += self.probe.integrity_problems()
        problems += self.probe.artifact_problems()[0]
        self._refresh_views()
        for account in self.accounts:
            view = self.views[account.id]
            problems += invariants.account_problems(self.ledger, account.id,
                                                    list(view.servers.values()), view.backups,
                                                    settled=False)
        if problems:
            self._fail(problems)

    def _settle(self) -> None:
        self._advance(SETTLE_SECONDS, killable=False)
        for _ in range(3):  # a window that opened at the very end may still be running
            busy = [s for a in self.accounts
                    for s in self._all(a, "DescribeServers", "Servers", {})
                    if s["Status"] in invariants.TRANSITIONAL_SERVER]
            if not busy:
                return
            self._advance(120, killable=False)

    def _settle_and_check(self, *, final: bool) -> None:
        self.report.settles += 1
        self._settle()
        problems = list(self.problems)
        problems += self.probe.integrity_problems()
        artifact_problems, verified = self.probe.artifact_problems()
        problems += artifact_problems
        self.report.backups_verified = verified
        live_ids: set[str] = set()
        statuses: dict[str, int] = {}
        self._refresh_views()
        for account in self.accounts:
            view = self.views[account.id]
            servers, backups = list(view.servers.values()), view.backups
            problems += invariants.account_problems(self.ledger, account.id, servers, backups,
                                                    settled=True)
            problems += invariants.settled_problems(servers, backups)
            for server in servers:
                live_ids.add(server["ServerArn"].rsplit("/", 1)[-1])
                statuses[server["Status"]] = statuses.get(server["Status"], 0) + 1
                events = self._all(account, "DescribeEvents", "ServerEvents",
                                   {"ServerName": server["ServerName"]})
                messages = [e["Message"] for e in events]
                problems += invariants.event_problems(server, messages)
                if final:
                    for message in messages:
                        if "failed" in message:
                            reason = re.sub(r"(\S+-\d{17}|srv-\d|node-\w)", "…", message)[:90]
                            self.report.failures_seen[reason] = \
                                self.report.failures_seen.get(reason, 0) + 1
            problems += self._node_problems(account, {s["ServerName"] for s in servers},
                                            final=final)
        problems += [f"node request {r['token'][:12]}… of {r['server_name']} is stuck "
                     f"IN_PROGRESS" for r in self.probe.rows(
                         "SELECT token, server_name FROM node_associations "
                         "WHERE status = 'IN_PROGRESS'")]
        self.report.failed_jobs = [
            f"{j['kind']}/{j['step']} (attempts {j['attempts']}): {j['last_error']}"
            for j in self.probe.jobs("failed")]
        if final:
            self.report.final_statuses = statuses
            orphans = self.probe.engine_dirs() - live_ids
            if orphans:
                problems.append(f"engine state directories of servers that no longer exist: "
                                f"{sorted(orphans)}")
            self.report.leftovers = {k: len(v) for k, v in self.probe.leftovers().items()}
            for row in self.probe.rows("SELECT action, error FROM node_associations "
                                       "WHERE status = 'FAILED'"):
                error = re.sub(r"(srv-\d|node-\w)", "…", str(row["error"]))[:70]
                reason = f"node {row['action']} FAILED: {error}"
                self.report.failures_seen[reason] = self.report.failures_seen.get(reason, 0) + 1
        if problems:
            self._fail(problems)

    def _node_problems(self, account: Account, live: set[str], *, final: bool) -> list[str]:
        """Every accepted node request has finished (those seen finished before are looked
        at again only at the end)."""
        problems = []
        acct = next(a for a in self.accounts if a.id == account.id)
        for op in ("AssociateNode", "DisassociateNode"):
            for call in self.ledger.of(op, account.id):
                token = call.response["NodeAssociationStatusToken"]
                if token in self.finished_nodes and not final:
                    continue
                gone = call.server not in live or self.ledger.deleted_after(
                    account.id, call.server or "", call.seq)
                status, data = self._send(acct, "DescribeNodeAssociationStatus", {
                    "ServerName": call.server, "NodeAssociationStatusToken": token})
                if status != 200:
                    if not gone:
                        problems.append(f"{call.describe()}: its status cannot be read: "
                                        f"{status} {data}")
                    continue
                assert data is not None
                if data["NodeAssociationStatus"] == "IN_PROGRESS":
                    problems.append(f"{call.describe()}: still IN_PROGRESS after settling")
                else:
                    self.finished_nodes.add(token)
        return problems
