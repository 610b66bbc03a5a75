"""The crash harness's workload: which operation to send next, with which parameters.

Choices are made from the last DescribeServers/DescribeBackups view of each account, with one
seeded random generator, so a seed always gives the same sequence of choices (the responses,
and so the views, depend on where the kills land, which is seeded too but timing-dependent).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from tests.reliability.material import NODE_NAMES, chef_public_key, puppet_csr

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
ENGINES = (("Chef", "2"), ("Chef", "2"), ("Puppet", "2019"), ("Puppet", "2019"), ("Chef", "12"))
MUTATIONS = ("CreateServer", "CreateBackup", "RestoreServer", "StartMaintenance",
             "AssociateNode", "DisassociateNode", "UpdateServerEngineAttributes", "DeleteServer")


@dataclass
class View:
    """What one account looked like at the start of the round."""

    servers: dict[str, dict[str, Any]] = field(default_factory=dict)  # by ServerName
    backups: list[dict[str, Any]] = field(default_factory=list)


def family(engine: str) -> str:
    return "Puppet" if engine == "Puppet" else "Chef"


def _backup_window(now: float, rng: random.Random) -> str:
    moment = dt.datetime.fromtimestamp(now + rng.uniform(60, 6 * 3600), dt.UTC)
    return f"{moment:%H:%M}"


def _maintenance_window(now: float, rng: random.Random) -> str:
    hours = rng.uniform(1, 8) if rng.random() < 0.5 else rng.uniform(60, 100)
    moment = dt.datetime.fromtimestamp(now + hours * 3600, dt.UTC)
    return f"{DAYS[moment.weekday()]}:{moment:%H}:00"


def choose(rng: random.Random, account: str, view: View, names: list[str],
           now: float) -> tuple[str, str | None, dict[str, Any]] | None:
    """(operation, server name, request body) for the next call to `account`, or None."""
    servers = view.servers
    missing = [n for n in names if n not in servers]
    healthy = [n for n, s in servers.items() if s["Status"] == "HEALTHY"]
    ok_backups = [b for b in view.backups if b["Status"] == "OK"]
    weights = {
        "CreateServer": 3.0 if missing else 0.3,
        "CreateBackup": 3.0 if servers else 0.0,
        "RestoreServer": 1.5 if servers and ok_backups else 0.0,
        "StartMaintenance": 1.2 if servers else 0.0,
        "AssociateNode": 2.5 if servers else 0.0,
        "DisassociateNode": 0.8 if servers else 0.0,
        "UpdateServerEngineAttributes": 1.2 if servers else 0.0,
        "DeleteServer": 1.0 if servers else 0.0,
    }
    ops = [op for op in MUTATIONS if weights[op] > 0]
    op = rng.choices(ops, [weights[o] for o in ops])[0]
    if op == "CreateServer":
        name = rng.choice(missing) if missing and rng.random() < 0.9 else rng.choice(names)
        return op, name, _create_server(rng, account, name, ok_backups, now)
    target = rng.choice(healthy) if healthy and rng.random() < 0.85 else rng.choice(
        sorted(servers))
    server = servers[target]
    engine = server["Engine"]
    body: dict[str, Any] = {"ServerName": target}
    if op == "CreateBackup":
        if rng.random() < 0.5:
            body["Description"] = f"crash harness backup {rng.randrange(10**6)}"
    elif op == "RestoreServer":
        same = [b for b in ok_backups if family(b["Engine"]) == family(engine)]
        pool = same if same and rng.random() < 0.9 else ok_backups
        body["BackupId"] = rng.choice(pool)["BackupId"]
    elif op == "StartMaintenance":
        if engine == "Chef" and server.get("EngineVersion", "").startswith("12") \
                and rng.random() < 0.6:
            body["EngineAttributes"] = [{"Name": "CHEF_MAJOR_UPGRADE", "Value": "true"}]
    elif op in ("AssociateNode", "DisassociateNode"):
        node = rng.choice(NODE_NAMES)
        body["NodeName"] = node
        if family(engine) == "Chef":
            attrs = [{"Name": "CHEF_ORGANIZATION", "Value": "default"}]
            if op == "AssociateNode":
                attrs.append({"Name": "CHEF_NODE_PUBLIC_KEY",
                              "Value": chef_public_key(rng.randrange(2))})
        else:
            attrs = ([{"Name": "PUPPET_NODE_CSR", "Value": puppet_csr(node, rng.randrange(2))}]
                     if op == "AssociateNode" else [])
        body["EngineAttributes"] = attrs
    elif op == "UpdateServerEngineAttributes":
        if family(engine) == "Chef":
            body["AttributeName"] = "CHEF_PIVOTAL_KEY"
            if rng.random() < 0.7:
                body["AttributeValue"] = chef_public_key(rng.randrange(2))
        else:
            body["AttributeName"] = "PUPPET_ADMIN_PASSWORD"
            if rng.random() < 0.7:
                body["AttributeValue"] = f"Crash-Harness-{rng.randrange(10**6)}"
    return op, target, body


def _create_server(rng: random.Random, account: str, name: str,
                   ok_backups: list[dict[str, Any]], now: float) -> dict[str, Any]:
    engine, version = rng.choice(ENGINES)
    body: dict[str, Any] = {
        "ServerName": name, "Engine": engine, "EngineVersion": version,
        "InstanceProfileArn": f"arn:aws:iam::{account}:instance-profile/aws-opsworks-cm-ec2-role",
        "InstanceType": "m5.large",
        "ServiceRoleArn": f"arn:aws:iam::{account}:role/aws-opsworks-cm-service-role",
        "BackupRetentionCount": rng.randint(1, 3),
        "PreferredBackupWindow": _backup_window(now, rng),
        "PreferredMaintenanceWindow": _maintenance_window(now, rng),
    }
    if rng.random() < 0.25:
        body["DisableAutomatedBackup"] = True
    if ok_backups and rng.random() < 0.2:
        backup = rng.choice(ok_backups)
        body["BackupId"] = backup["BackupId"]
        body["Engine"] = backup["Engine"]
        body.pop("EngineVersion")
    return body
