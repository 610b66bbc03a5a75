"""What an account holds in the security tests: servers, backups, tags, a node request; and a
snapshot of everything it can see, to prove a refused request changed nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.integration.helpers import USER_CHEF_PASSWORD, public_pem, user_pivotal_key
from tests.ops.helpers import csr_pem, quiet_windows
from tests.security.hosts import SLOW_SECONDS, settle, to_hour_start
from tests.security.wire import Caller
from tests.support import SERVER_DEFAULTS, Cmhost


def chef_attributes() -> list[dict[str, str]]:
    """A Chef server with the user's own pivotal key and password: the cheapest to create."""
    return [{"Name": "CHEF_PIVOTAL_KEY", "Value": public_pem(user_pivotal_key())},
            {"Name": "CHEF_DELIVERY_ADMIN_PASSWORD", "Value": USER_CHEF_PASSWORD}]


def node_attributes() -> list[dict[str, str]]:
    return [{"Name": "CHEF_ORGANIZATION", "Value": "default"},
            {"Name": "CHEF_NODE_PUBLIC_KEY", "Value": public_pem(user_pivotal_key())}]


def server_params(host: Cmhost, caller: Caller, name: str, engine: str = "Chef",
                  **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {**SERVER_DEFAULTS, **quiet_windows(host), "ServerName": name,
                              "Engine": engine, **extra}
    # The role ARNs name the caller's own account, as a real user's would.
    for member in ("InstanceProfileArn", "ServiceRoleArn"):
        params[member] = params[member].replace("000000000000", caller.key.account)
    if engine == "Chef" and "EngineAttributes" not in extra:
        params["EngineAttributes"] = chef_attributes()
    return params


@dataclass
class Estate:
    """Resources of one account in one region, created through the API."""

    caller: Caller
    prefix: str
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)  # by role: chef, ...
    backups: dict[str, dict[str, Any]] = field(default_factory=dict)  # by role
    token: str = ""  # an AssociateNode status token on the chef server
    deleted: set[str] = field(default_factory=set)  # roles of servers deleted since

    def name(self, role: str) -> str:
        return str(self.servers[role]["ServerName"])

    def arn(self, role: str) -> str:
        return str(self.servers[role]["ServerArn"])

    def backup_id(self, role: str) -> str:
        return str(self.backups[role]["BackupId"])

    def backup_arn(self, role: str) -> str:
        return str(self.backups[role]["BackupArn"])

    @property
    def server_names(self) -> list[str]:
        """Names of the estate's servers that still exist."""
        return [s["ServerName"] for r, s in self.servers.items() if r not in self.deleted]

    @property
    def live_server_arns(self) -> list[str]:
        return [s["ServerArn"] for r, s in self.servers.items() if r not in self.deleted]


def build_estate(host: Cmhost, caller: Caller, prefix: str, *, shared_name: str | None = None,
                 victims: int = 0, gone: bool = False) -> Estate:
    """HEALTHY Chef and Puppet servers (`<prefix>-chef`, `<prefix>-puppet`), an OK manual
    backup of each, tags on all of them, a finished node association; optionally a server
    named `shared_name`, `victims` spare servers with a spare backup each (for the operations
    that destroy), and a deleted server `<prefix>-gone` whose manual backup outlives it."""
    estate = Estate(caller, prefix)
    roles = {"chef": (f"{prefix}-chef", "Chef"), "puppet": (f"{prefix}-puppet", "Puppet")}
    if shared_name:
        roles["shared"] = (shared_name, "Chef")
    for i in range(victims):
        roles[f"victim{i}"] = (f"{prefix}-victim{i}", "Chef")
    if gone:
        roles["gone"] = (f"{prefix}-gone", "Chef")
    for role, (name, engine) in roles.items():
        params = server_params(host, caller, name, engine,
                               Tags=[{"Key": "owner", "Value": caller.key.account},
                                     {"Key": "role", "Value": role}])
        estate.servers[role] = caller.ok("CreateServer", params)["Server"]
    to_hour_start(host, SLOW_SECONDS)
    for role in roles:
        backup = caller.ok("CreateBackup", {"ServerName": estate.name(role),
                                            "Description": f"{role} backup",
                                            "Tags": [{"Key": "kind", "Value": "manual"}]})
        estate.backups[role] = backup["Backup"]
    settle(host)
    for role in roles:
        found = caller.ok("DescribeBackups", {"BackupId": estate.backup_id(role)})["Backups"]
        assert found[0]["Status"] == "OK", found
    estate.token = caller.ok("AssociateNode", {
        "ServerName": estate.name("chef"), "NodeName": f"{prefix}-node-1",
        "EngineAttributes": node_attributes()})["NodeAssociationStatusToken"]
    settle(host)
    if gone:
        caller.ok("DeleteServer", {"ServerName": estate.name("gone")})
        to_hour_start(host, SLOW_SECONDS)
        estate.deleted.add("gone")
    return estate


def valid_bodies(host: Cmhost, estate: Estate) -> dict[str, dict[str, Any]]:
    """A valid body of every operation, naming the estate's chef server and its backup."""
    chef, backup = estate.name("chef"), estate.backup_id("chef")
    return {
        "AssociateNode": {"ServerName": chef, "NodeName": f"{estate.prefix}-node-9",
                          "EngineAttributes": node_attributes()},
        "CreateBackup": {"ServerName": chef, "Description": "d"},
        "CreateServer": server_params(host, estate.caller, f"{estate.prefix}-new"),
        "DeleteBackup": {"BackupId": backup},
        "DeleteServer": {"ServerName": chef},
        "DescribeAccountAttributes": {},
        "DescribeBackups": {"BackupId": backup},
        "DescribeEvents": {"ServerName": chef},
        "DescribeNodeAssociationStatus": {"ServerName": chef,
                                          "NodeAssociationStatusToken": estate.token},
        "DescribeServers": {"ServerName": chef},
        "DisassociateNode": {"ServerName": chef, "NodeName": f"{estate.prefix}-node-1",
                             "EngineAttributes": [{"Name": "CHEF_ORGANIZATION",
                                                   "Value": "default"}]},
        "ExportServerEngineAttribute": {"ServerName": chef, "ExportAttributeName": "Userdata"},
        "ListTagsForResource": {"ResourceArn": estate.arn("chef")},
        "RestoreServer": {"ServerName": chef, "BackupId": backup},
        "StartMaintenance": {"ServerName": chef},
        "TagResource": {"ResourceArn": estate.arn("chef"),
                        "Tags": [{"Key": "k", "Value": "v"}]},
        "UntagResource": {"ResourceArn": estate.arn("chef"), "TagKeys": ["owner"]},
        "UpdateServer": {"ServerName": chef, "BackupRetentionCount": 2},
        "UpdateServerEngineAttributes": {"ServerName": chef, "AttributeName": "CHEF_PIVOTAL_KEY"},
    }


def puppet_node_attributes(node: str) -> list[dict[str, str]]:
    return [{"Name": "PUPPET_NODE_CSR", "Value": csr_pem(node)}]


def snapshot(caller: Caller, *, events_of: Sequence[str] = (),
             tags_of: Sequence[str] | None = None) -> dict[str, Any]:
    """What the account can see in this region: servers, backups, account attributes, the
    tags of `tags_of` (default: of every server and backup) and the events of `events_of`."""
    servers = caller.ok("DescribeServers")["Servers"]
    backups = caller.ok("DescribeBackups")["Backups"]
    if tags_of is None:
        tags_of = [s["ServerArn"] for s in servers] + [b["BackupArn"] for b in backups]
    state: dict[str, Any] = {
        "servers": servers,
        "backups": backups,
        "attributes": caller.ok("DescribeAccountAttributes")["Attributes"],
        "tags": {arn: _tags(caller, arn) for arn in tags_of},
        "events": {},
    }
    present = {s["ServerName"] for s in servers}
    for name in events_of:
        if name in present:
            state["events"][name] = caller.ok("DescribeEvents", {"ServerName": name})[
                "ServerEvents"]
    return state


# States a server leaves as soon as its job has run (CREATING and DELETING take an hour here).
TRANSITIONAL = frozenset({"BACKING_UP", "MODIFYING", "RESTORING", "UNDER_MAINTENANCE"})


def busy_servers(state: dict[str, Any]) -> dict[str, str]:
    """Servers of a settled snapshot still in a state their job should have ended."""
    return {s["ServerName"]: s["Status"] for s in state["servers"]
            if s["Status"] in TRANSITIONAL}


def _tags(caller: Caller, arn: str) -> Any:
    reply = caller.call("ListTagsForResource", {"ResourceArn": arn})
    return reply.json()["Tags"] if reply.status == 200 else reply.code


def difference(before: dict[str, Any], after: dict[str, Any]) -> str:
    """A short account of what changed between two snapshots."""
    lines = []
    for part, was in before.items():
        now = after[part]
        if was == now:
            continue
        if isinstance(was, dict) and isinstance(now, dict):
            for key in sorted(set(was) | set(now)):
                if was.get(key) != now.get(key):
                    lines.append(f"{part}[{key}]: {str(was.get(key))[:300]} -> "
                                 f"{str(now.get(key))[:300]}")
        else:
            lines.append(f"{part}: {str(was)[:400]} -> {str(now)[:400]}")
    return "\n".join(lines)
