"""What must hold after a crash: the bookkeeping of accepted, rejected and unknown calls
against what cmhost shows, and server events that say every operation happened once."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

TRANSITIONAL_SERVER = frozenset({"CREATING", "BACKING_UP", "RESTORING", "UNDER_MAINTENANCE",
                                 "MODIFYING", "DELETING", "SETUP"})
TRANSITIONAL_BACKUP = frozenset({"IN_PROGRESS", "DELETING"})
# What a refused mutation may answer; anything else (above all a 5xx) is a defect.
EXPECTED_ERRORS = frozenset({"InvalidStateException", "ValidationException",
                             "ResourceNotFoundException", "ResourceAlreadyExistsException",
                             "LimitExceededException"})


@dataclass
class Call:
    """One request the harness sent, and what came of it.

    outcome: accepted (200), rejected (an AWS error), unknown (the connection broke: it may or
    may not have taken effect), unsent (connection refused: it never reached cmhost).
    """

    seq: int
    round: int
    account: str
    op: str
    server: str | None
    body: dict[str, Any]
    outcome: str = ""
    code: str | None = None
    response: Any = None

    @property
    def maybe(self) -> bool:
        return self.outcome in ("accepted", "unknown")

    def describe(self) -> str:
        return (f"#{self.seq} round {self.round} {self.account} {self.op}"
                f"({self.server}) -> {self.outcome}{' ' + self.code if self.code else ''}")


@dataclass
class Ledger:
    """Every call, with the lookups the checks need."""

    calls: list[Call] = field(default_factory=list)

    def of(self, op: str, account: str | None = None, server: str | None = None,
           outcomes: Iterable[str] = ("accepted",)) -> list[Call]:
        wanted = set(outcomes)
        return [c for c in self.calls if c.op == op and c.outcome in wanted
                and (account is None or c.account == account)
                and (server is None or c.server == server)]

    def deleted_after(self, account: str, server: str, seq: int) -> bool:
        """Whether a DeleteServer of that name that may have taken effect followed `seq`."""
        return any(c.seq > seq and c.maybe for c in self.of(
            "DeleteServer", account, server, ("accepted", "unknown")))


def account_problems(ledger: Ledger, account: str, servers: list[dict[str, Any]],
                     backups: list[dict[str, Any]], *, settled: bool) -> list[str]:
    """Nothing accepted is lost, nothing refused took effect, nothing happened twice.

    Holds at any moment: servers and manual backups are compared with the calls that created
    and deleted them (a deleted server may still be DELETING unless `settled`).
    """
    problems: list[str] = []
    by_arn = {s["ServerArn"]: s for s in servers}
    accepted_arns: set[str] = set()
    for call in ledger.of("CreateServer", account):
        arn = call.response["Server"]["ServerArn"]
        accepted_arns.add(arn)
        if arn not in by_arn and not ledger.deleted_after(account, call.server or "", call.seq):
            problems.append(f"{call.describe()}: server {arn} vanished, and no DeleteServer "
                            f"of it was sent")
    strays = Counter(s["ServerName"] for s in servers if s["ServerArn"] not in accepted_arns)
    for name, count in strays.items():
        unknown = len(ledger.of("CreateServer", account, name, ("unknown",)))
        if count > unknown:
            problems.append(f"{account}: {count} server(s) named {name} exist that no accepted "
                            f"CreateServer made (only {unknown} CreateServer with a lost "
                            f"response could have)")
    by_name = {s["ServerName"]: s for s in servers}
    for call in ledger.of("DeleteServer", account):
        later = [c for c in ledger.calls if c.seq > call.seq and c.account == account
                 and c.server == call.server and c.op == "CreateServer" and c.maybe]
        left = by_name.get(call.server or "")
        if left is not None and not later and (settled or left["Status"] != "DELETING"):
            problems.append(f"{call.describe()}: the server still exists, {left['Status']}")
    manual = {b["BackupId"]: b for b in backups if b["BackupType"] == "MANUAL"}
    accepted_ids = set()
    for call in ledger.of("CreateBackup", account):
        backup_id = call.response["Backup"]["BackupId"]
        accepted_ids.add(backup_id)
        if backup_id not in manual:
            problems.append(f"{call.describe()}: backup {backup_id} was lost")
    strays = Counter(b["ServerName"] for b in manual.values() if b["BackupId"] not in accepted_ids)
    for name, count in strays.items():
        unknown = len(ledger.of("CreateBackup", account, name, ("unknown",)))
        if count > unknown:
            problems.append(f"{account}: {count} manual backup(s) of {name} exist that no "
                            f"accepted CreateBackup made (only {unknown} with a lost response)")
    return problems


def settled_problems(servers: list[dict[str, Any]], backups: list[dict[str, Any]]
                     ) -> list[str]:
    """After advancing the clock far enough, nothing is still in a transitional state."""
    problems = [f"server {s['ServerName']} ({s['ServerArn'].rsplit('/', 1)[-1]}) is stuck in "
                f"{s['Status']}" for s in servers if s["Status"] in TRANSITIONAL_SERVER]
    problems += [f"backup {b['BackupId']} is stuck in {b['Status']}" for b in backups
                 if b["Status"] in TRANSITIONAL_BACKUP]
    problems += [f"server {s['ServerName']} is FAILED without a StatusReason" for s in servers
                 if s["Status"] == "FAILED" and not s.get("StatusReason")]
    return problems


_PAIRS: list[tuple[str, re.Pattern[str], re.Pattern[str]]] = [
    ("backup", re.compile(r"^(?:Automated backup|Backup) (\S+) started\.$"),
     re.compile(r"^Backup (\S+) (?:completed\.|failed: )")),
    ("restore", re.compile(r"^Restore from backup (\S+) started\.$"),
     re.compile(r"^(?:Server restored from backup (\S+);|Restore from backup (\S+) failed: )")),
    ("maintenance", re.compile(r"^(?:Scheduled maintenance|Maintenance) started"),
     re.compile(r"^Maintenance (?:completed successfully|failed and was rolled back)")),
    ("node", re.compile(r"^Node (\S+): ((?:dis)?associate) requested\.$"),
     re.compile(r"^Node (\S+)(?: ((?:dis)?associate)d\.|: ((?:dis)?associate) failed: )")),
    ("engine attribute", re.compile(r"^Engine attribute \S+ is being updated\.$"),
     re.compile(r"^Engine attribute (?:\S+ updated\.|update failed: )")),
    ("deletion", re.compile(r"^Server \S+ deletion started\.$"),
     re.compile(r"^Server deletion failed: ")),
]
# Steps that happen at most once in a server's life.
_ONCE = [re.compile(p) for p in (r"^Server \S+ creation started ", r"^Server \S+ is online and",
                                 r"^Engine provisioned by the ", r"^Engine restored from backup ")]
# Messages that name their backup, each of which completes at most once.
_ONCE_EACH = re.compile(r"^(?:Backup|Maintenance backup) \S+ completed\.$")


def _key(match: re.Match[str]) -> tuple[str, ...]:
    return tuple(g for g in match.groups() if g is not None)


def event_problems(server: dict[str, Any], messages: list[str]) -> list[str]:
    """Every started operation of a settled server finished exactly once, and every
    once-only step (creation, provisioning, a backup's completion) happened once."""
    problems: list[str] = []
    where = f"server {server['ServerName']} ({server['ServerArn'].rsplit('/', 1)[-1]})"
    for kind, start, end in _PAIRS:
        started: Counter[tuple[str, ...]] = Counter()
        ended: Counter[tuple[str, ...]] = Counter()
        for message in messages:
            if m := start.match(message):
                started[_key(m)] += 1
            elif m := end.match(message):
                ended[_key(m)] += 1
        if kind == "backup" and any(n > 1 for n in started.values()):
            problems.append(f"{where}: a backup started more than once: {dict(started)}")
        if started != ended:
            problems.append(f"{where}: {kind} operations started {dict(started)} but "
                            f"finished {dict(ended)}")
    created = [m for m in messages if _ONCE[0].match(m)]
    if len(created) != 1:
        problems.append(f"{where}: {len(created)} 'creation started' events")
    for pattern in _ONCE:
        seen = [m for m in messages if pattern.match(m)]
        if len(seen) > 1:
            problems.append(f"{where}: event happened {len(seen)} times: {seen[0]!r}")
    backups = Counter(m for m in messages if _ONCE_EACH.match(m))
    problems += [f"{where}: {m!r} recorded {n} times" for m, n in backups.items() if n > 1]
    return problems
