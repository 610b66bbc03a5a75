"""Races through real HTTP: concurrent requests, each on its own connection, released together.

Every answer must be one a serial execution of the same requests could give: one winner for
one name, limits never exceeded (and reached exactly), one backup per server at a time, and
tags that some serial order of the accepted calls would leave.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.split import FAULTS, SplitCmhost, poll
from tests.support import Cmhost, raw_call

_accounts = itertools.count(300000000001)


@dataclass(frozen=True)
class Caller:
    account: str
    key: str = "test"
    secret: str = "test"
    region: str = "us-east-1"

    def elsewhere(self, region: str) -> Caller:
        return Caller(self.account, self.key, self.secret, region)


@dataclass
class Answer:
    status: int
    data: Any
    started: float = 0.0
    ended: float = 0.0

    @property
    def code(self) -> str:
        return "OK" if self.status == 200 else str((self.data or {}).get("__type"))


def call(cm: Cmhost, who: Caller, op: str, body: dict[str, Any]) -> Answer:
    started = time.monotonic()
    status, _, data = raw_call(cm, op, json.dumps(body).encode(), key=who.key,
                               secret=who.secret, region=who.region)
    return Answer(status, data, started, time.monotonic())


def ok(cm: Cmhost, who: Caller, op: str, body: dict[str, Any]) -> Any:
    answer = call(cm, who, op, body)
    assert answer.status == 200, (op, body, answer)
    return answer.data


def together(n: int, work: Callable[[int], Answer]) -> list[Answer]:
    """Run work(0..n-1) on n threads released at the same instant; answers in index order."""
    barrier = threading.Barrier(n)
    answers: list[Answer | BaseException | None] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            answers[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below, with the others
            answers[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    failures = [a for a in answers if not isinstance(a, Answer)]
    assert not failures, failures
    return [a for a in answers if isinstance(a, Answer)]


def codes(answers: list[Answer]) -> Counter[str]:
    return Counter(a.code for a in answers)


def issue_keys(cm: Cmhost, count: int) -> list[Caller]:
    """Keys of `count` accounts no request has touched yet (issued in parallel)."""
    accounts = [f"{next(_accounts):012d}" for _ in range(count)]
    found: dict[str, Caller] = {}

    def issue(account: str) -> None:
        out = json.loads(cm.cli("keys", "create", "--account", account,
                                *cm.storage_args()).stdout)
        found[account] = Caller(account, out["AccessKeyId"], out["SecretAccessKey"])

    threads = [threading.Thread(target=issue, args=(a,)) for a in accounts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [found[a] for a in accounts]


def quiet_window(cm: Cmhost) -> str:
    """A weekly maintenance window half a week from the virtual now: never during a test."""
    moment = dt.datetime.fromtimestamp(cm.get("/_cmhost/clock")["now"], dt.UTC)
    moment += dt.timedelta(days=3, hours=12)
    return f"{('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')[moment.weekday()]}:{moment:%H}:00"


def server_body(who: Caller, name: str, window: str, engine: str = "Chef") -> dict[str, Any]:
    return {"ServerName": name, "Engine": engine, "InstanceType": "m5.large",
            "InstanceProfileArn": f"arn:aws:iam::{who.account}:instance-profile/ec2-role",
            "ServiceRoleArn": f"arn:aws:iam::{who.account}:role/service-role",
            "DisableAutomatedBackup": True, "PreferredMaintenanceWindow": window}


def servers(cm: Cmhost, who: Caller) -> list[dict[str, Any]]:
    return list(ok(cm, who, "DescribeServers", {})["Servers"])


def manual_backups(cm: Cmhost, who: Caller) -> list[dict[str, Any]]:
    return [b for b in ok(cm, who, "DescribeBackups", {})["Backups"]
            if b["BackupType"] == "MANUAL"]


def settle(races: SplitCmhost, who: Caller) -> None:
    """Let the worker run until nothing of `who` is in progress, then pause it again: between
    settles nothing runs, so a backup a race started stays in progress (its server
    BACKING_UP) while the rest of the race arrives."""
    cm = races.cm
    races.resume()
    if any(s["Status"] == "CREATING" for s in servers(cm, who)):
        cm.advance(30)  # provisioning takes 5 virtual seconds

    def settled() -> bool:
        return all(s["Status"] in ("HEALTHY", "FAILED") for s in servers(cm, who)) and not any(
            b["Status"] == "IN_PROGRESS" for b in ok(cm, who, "DescribeBackups", {})["Backups"])

    poll(settled)
    races.pause()


@pytest.fixture(scope="module")
def races(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SplitCmhost]:
    running = SplitCmhost(Path(tmp_path_factory.mktemp("races"))).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def cm(races: SplitCmhost) -> Cmhost:
    return races.cm


@pytest.fixture(scope="module")
def others(cm: Cmhost) -> list[Caller]:
    """Three more accounts (besides the development key's 000000000000)."""
    return issue_keys(cm, 3)


@pytest.fixture(scope="module")
def limit_race(cm: Cmhost, others: list[Caller]) -> tuple[Caller, list[Answer]]:
    """15 CreateServer with different names at once, in an account nothing touched before
    (so even its account record is created by the race)."""
    who = others[0]
    window = quiet_window(cm)
    answers = together(15, lambda i: call(cm, who, "CreateServer",
                                          server_body(who, f"limit-{i:02d}", window)))
    return who, answers


def test_same_name_twenty_times_one_wins(cm: Cmhost) -> None:
    who = Caller("000000000000")
    window = quiet_window(cm)
    answers = together(20, lambda i: call(cm, who, "CreateServer", server_body(
        who, "one-name", window, ("Chef", "Puppet")[i % 2])))
    assert codes(answers) == {"OK": 1, "ResourceAlreadyExistsException": 19}, answers
    winner = next(a for a in answers if a.status == 200).data["Server"]
    found = [s for s in servers(cm, who) if s["ServerName"] == "one-name"]
    assert [s["ServerArn"] for s in found] == [winner["ServerArn"]]
    events = ok(cm, who, "DescribeEvents", {"ServerName": "one-name"})["ServerEvents"]
    assert sum("creation started" in e["Message"] for e in events) == 1


def test_fifteen_names_against_the_server_limit(cm: Cmhost,
                                                limit_race: tuple[Caller, list[Answer]]
                                                ) -> None:
    who, answers = limit_race
    assert codes(answers) == {"OK": 10, "LimitExceededException": 5}, answers
    created = {a.data["Server"]["ServerArn"] for a in answers if a.status == 200}
    assert {s["ServerArn"] for s in servers(cm, who)} == created
    used = {a["Name"]: a["Used"] for a in ok(cm, who, "DescribeAccountAttributes", {})
            ["Attributes"]}
    assert used["ServerLimit"] == 10


def test_concurrent_backups_of_one_server_one_accepted(races: SplitCmhost) -> None:
    cm = races.cm
    who = Caller("000000000000", "test", "test")
    ok(cm, who, "CreateServer", server_body(who, "backed-up", quiet_window(cm)))
    settle(races, who)
    answers = together(12, lambda i: call(cm, who, "CreateBackup", {"ServerName": "backed-up"}))
    assert codes(answers) == {"OK": 1, "InvalidStateException": 11}, answers
    accepted = next(a for a in answers if a.status == 200).data["Backup"]["BackupId"]
    mine = [b["BackupId"] for b in manual_backups(cm, who) if b["ServerName"] == "backed-up"]
    assert mine == [accepted]


def _backup_wave(races: SplitCmhost, who: Caller, names: list[str], per_server: int
                 ) -> list[Answer]:
    cm = races.cm
    targets = [n for n in names for _ in range(per_server)]
    answers = together(len(targets), lambda i: call(cm, who, "CreateBackup",
                                                    {"ServerName": targets[i]}))
    unexpected = set(codes(answers)) - {"OK", "InvalidStateException", "LimitExceededException"}
    assert not unexpected, answers
    per = Counter(targets[i] for i, a in enumerate(answers) if a.status == 200)
    assert all(n == 1 for n in per.values()), per  # one backup per server at a time
    settle(races, who)
    return answers


def test_manual_backup_limit_holds_under_concurrency(
        races: SplitCmhost, limit_race: tuple[Caller, list[Answer]]) -> None:
    cm = races.cm
    who, answers = limit_race
    names = sorted(a.data["Server"]["ServerName"] for a in answers if a.status == 200)
    settle(races, who)
    # A low limit first: 10 servers x 2 requests race for 5 places.
    cm.cli("accounts", "set-limits", "--account", who.account, "--backup-limit", "5",
           *cm.storage_args())
    wave = _backup_wave(races, who, names, per_server=2)
    assert codes(wave)["OK"] == 5, wave
    assert len(manual_backups(cm, who)) == 5
    wave = _backup_wave(races, who, names, per_server=1)
    assert codes(wave) == {"LimitExceededException": 10}, wave
    # The real limit, 50: fill to 45, then 20 requests race for the last 5 places.
    cm.cli("accounts", "set-limits", "--account", who.account, "--backup-limit", "50",
           *cm.storage_args())
    for _ in range(4):
        assert codes(_backup_wave(races, who, names, per_server=1)) == {"OK": 10}
    wave = _backup_wave(races, who, names, per_server=2)
    assert codes(wave)["OK"] == 5, wave
    assert len(manual_backups(cm, who)) == 50
    assert codes(_backup_wave(races, who, names, per_server=1)) == {"LimitExceededException": 10}
    used = {a["Name"]: a["Used"] for a in ok(cm, who, "DescribeAccountAttributes", {})
            ["Attributes"]}
    assert used["ManualBackupLimit"] == 50


def test_backups_of_same_named_servers_in_different_accounts(
        races: SplitCmhost, others: list[Caller]) -> None:
    """BackupIds are `<ServerName>-<time>`: servers of one name in different accounts that
    back up in the same millisecond must still all get their backup."""
    cm = races.cm
    owners = [Caller("000000000000"), *(o.elsewhere("us-west-2") for o in others)]
    for who in owners:
        ok(cm, who, "CreateServer", server_body(who, "shared-name", quiet_window(cm)))
    for who in owners:
        settle(races, who)
    for _ in range(5):
        answers = together(len(owners), lambda i: call(cm, owners[i], "CreateBackup",
                                                        {"ServerName": "shared-name"}))
        assert codes(answers) == {"OK": len(owners)}, answers
        ids = [a.data["Backup"]["BackupId"] for a in answers]
        assert len(set(ids)) == len(ids)
        for who in owners:
            settle(races, who)
    for who in owners:
        assert len([b for b in manual_backups(cm, who) if b["ServerName"] == "shared-name"]) == 5


# --- tags -----------------------------------------------------------------------------


def _tags(cm: Cmhost, who: Caller, arn: str) -> dict[str, str]:
    found: dict[str, str] = {}
    token = None
    while True:
        page = ok(cm, who, "ListTagsForResource",
                  {"ResourceArn": arn, **({"NextToken": token} if token else {})})
        found.update({t["Key"]: t["Value"] for t in page["Tags"]})
        token = page.get("NextToken")
        if not token:
            return found


@dataclass
class TagOp:
    thread: int
    key: str
    value: str | None  # None: an untag
    answer: Answer


def _possible_finals(ops: list[TagOp], key: str) -> set[str | None]:
    """The states of `key` a linearizable execution of the accepted calls can end in: the
    last call on the key is some thread's last accepted call on it, and not one that ended
    before another thread's last call on it began."""
    lasts = {}
    for op in ops:
        if op.key == key and op.answer.status == 200:
            lasts[op.thread] = op
    return {op.value for op in lasts.values()
            if not any(o.answer.started > op.answer.ended for o in lasts.values())}


def test_tag_and_untag_race_ends_in_a_serial_state(cm: Cmhost) -> None:
    who = Caller("000000000000")
    arn = ok(cm, who, "CreateServer", server_body(who, "tagged", quiet_window(cm)))["Server"]["ServerArn"]
    threads, rounds = 8, 6
    # Several keys in one call are set together: the last call wins them all.
    together(threads, lambda i: _tag_all(cm, who, arn, i))
    shared = _tags(cm, who, arn)
    assert len({shared[k] for k in ("all-0", "all-1", "all-2")}) == 1, shared
    assert shared["all-0"] in {f"t{i}-2" for i in range(threads)}, shared

    ops: list[TagOp] = []
    lock = threading.Lock()

    def worker(i: int) -> Answer:
        rng = random.Random(i)
        last = Answer(200, None)
        for j in range(rounds):
            own = f"own-{i}-{j % 3}"
            key = rng.choice(("x0", "x1"))
            steps: list[tuple[str, str | None]] = [(own, f"t{i}-{j}"), (key, f"t{i}-{j}")]
            if rng.random() < 0.4:
                steps.append((key, None))
            if j % 2:
                steps.append((own, None))
            for k, v in steps:
                if v is None:
                    last = call(cm, who, "UntagResource", {"ResourceArn": arn, "TagKeys": [k]})
                else:
                    last = call(cm, who, "TagResource", {"ResourceArn": arn,
                                                         "Tags": [{"Key": k, "Value": v}]})
                with lock:
                    ops.append(TagOp(i, k, v, last))
        return last

    together(threads, worker)
    assert {o.answer.code for o in ops} == {"OK"}, [o for o in ops if o.answer.status != 200]
    final = _tags(cm, who, arn)
    for key in {o.key for o in ops}:
        assert final.get(key) in _possible_finals(ops, key), (key, final.get(key))
    assert {k for k in final if k.startswith(("own-", "x"))} == {
        k for k in {o.key for o in ops} if final.get(k) is not None}


def _tag_all(cm: Cmhost, who: Caller, arn: str, i: int) -> Answer:
    answer = Answer(200, None)
    for j in range(3):
        answer = call(cm, who, "TagResource", {"ResourceArn": arn, "Tags": [
            {"Key": f"all-{k}", "Value": f"t{i}-{j}"} for k in range(3)]})
        assert answer.status == 200, answer
    return answer


def test_tag_limit_holds_under_concurrency(cm: Cmhost) -> None:
    who = Caller("000000000000")
    arn = ok(cm, who, "CreateServer", server_body(who, "tag-limit", quiet_window(cm)))["Server"]["ServerArn"]
    ok(cm, who, "TagResource", {"ResourceArn": arn, "Tags": [
        {"Key": f"base-{k}", "Value": "v"} for k in range(45)]})
    answers = together(10, lambda i: call(cm, who, "TagResource", {
        "ResourceArn": arn, "Tags": [{"Key": f"new-{i}", "Value": "v"}]}))
    assert codes(answers) == {"OK": 5, "ValidationException": 5}, answers
    assert len(_tags(cm, who, arn)) == 50


# --- an update computed from what a concurrent restore replaced -----------------------


@pytest.fixture()
def slow_update(tmp_path: Path) -> Iterator[Cmhost]:
    """A cmhost (worker included) whose UpdateServerEngineAttributes pauses 1.5 s between
    reading the server and writing the new credential: the race below lands in that window
    every time instead of now and then."""
    server = Cmhost(tmp_path, provisioning_seconds=5, env={
        "PYTHONPATH": str(FAULTS),
        "CMHOST_DELAY_AT": "cmhost.engines.embedded:EmbeddedDriver.update_attribute:after:1.5",
    }).start()
    yield server
    server.stop()


def test_engine_attribute_update_racing_a_restore_keeps_the_server_consistent(
        slow_update: Cmhost) -> None:
    """UpdateServerEngineAttributes reads the server, makes the new credential, then writes
    it. A RestoreServer (from another server's backup: another CA) that starts and finishes
    in between must not be overwritten by material computed before it: either the update is
    refused, or it applies to the restored server, which stays consistent (HEALTHY, the CA
    it shows is the one its engine uses)."""
    cm = slow_update
    who = Caller("000000000000")
    window = quiet_window(cm)
    for name in ("target", "source"):
        ok(cm, who, "CreateServer", server_body(who, name, window, "Puppet"))
    cm.advance(30)
    backup_id = ok(cm, who, "CreateBackup", {"ServerName": "source"})["Backup"]["BackupId"]
    poll(lambda: all(s["Status"] == "HEALTHY" for s in servers(cm, who)))
    update: list[Answer] = []
    thread = threading.Thread(target=lambda: update.append(call(
        cm, who, "UpdateServerEngineAttributes", {"ServerName": "target",
                                                  "AttributeName": "PUPPET_ADMIN_PASSWORD",
                                                  "AttributeValue": "Raced-Passw0rd"})))
    thread.start()
    time.sleep(0.4)  # the update has read the server and is making the new credential
    ok(cm, who, "RestoreServer", {"ServerName": "target", "BackupId": backup_id})
    poll(lambda: servers_by_name(cm, who)["target"]["Status"] != "RESTORING")
    thread.join()
    assert update[0].code in ("OK", "InvalidStateException"), update
    cm.advance(5)
    poll(lambda: servers_by_name(cm, who)["target"]["Status"] != "MODIFYING")
    target = servers_by_name(cm, who)["target"]
    shown = {a["Name"]: a["Value"] for a in target["EngineAttributes"]}["PUPPET_API_CA_CERT"]
    engine_ca = (cm.data_dir / "engines" / target["ServerArn"].rsplit("/", 1)[-1]
                 / "ca.pem").read_text()
    assert (target["Status"], engine_ca == shown) == ("HEALTHY", True), target


def servers_by_name(cm: Cmhost, who: Caller) -> dict[str, dict[str, Any]]:
    return {s["ServerName"]: s for s in servers(cm, who)}
