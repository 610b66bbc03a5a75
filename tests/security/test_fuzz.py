"""Hostile input, property-based: model-derived valid and near-valid requests for every
operation, sent as real signed HTTP requests to a running cmhost.

Properties, for every example: never a 5xx, never a hang (a socket timeout fails the test),
always a parseable success or a well-formed AWS error that the operation's model (or the
protocol) declares; for the operations that change something, a refused request leaves
everything the account can see (servers, backups, attributes, tags, events) exactly as it
was, and an accepted one has its job finish (no server is left BACKING_UP, RESTORING...).

`make test` tries a fixed, derandomized sequence of FAST_EXAMPLES examples per operation and
reports a failure unshrunk; `make soak` (CMHOST_SOAK=1) tries SOAK_EXAMPLES per operation and
shrinks. The terminal summary prints how many ran, and what they were answered.
CMHOST_FUZZ_TRACE=1 (with -s) prints every example.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from cmhost.api.model import SERVICE, Operation
from tests.integration.helpers import certificate, private_pem, rsa_key
from tests.security.estate import (
    Estate,
    build_estate,
    busy_servers,
    chef_attributes,
    difference,
    node_attributes,
    puppet_node_attributes,
    server_params,
    snapshot,
)
from tests.security.hosts import SOAK, issue_caller, settle
from tests.security.strategies import Example, Hints, operation_input
from tests.security.wire import Caller, check_answer
from tests.support import Cmhost

FAST_EXAMPLES = int(os.environ.get("CMHOST_FUZZ_EXAMPLES", "30"))
SOAK_EXAMPLES = int(os.environ.get("CMHOST_FUZZ_SOAK_EXAMPLES", "1000"))
ACCOUNT = "210987654321"
# CMHOST_FUZZ_TRACE=1 prints every example and its answer (run with -s).
TRACE = os.environ.get("CMHOST_FUZZ_TRACE") == "1"

# Operations that change state: a refused one must have changed nothing.
MUTATING = frozenset({
    "AssociateNode", "CreateBackup", "CreateServer", "DeleteBackup", "DeleteServer",
    "DisassociateNode", "RestoreServer", "StartMaintenance", "TagResource", "UntagResource",
    "UpdateServer", "UpdateServerEngineAttributes",
})
# Members whose valid values are the estate's real ones (or one that names nothing).
IDENTIFIERS = frozenset({"ServerName", "BackupId", "ResourceArn", "NodeAssociationStatusToken",
                         "Engine", "InstanceProfileArn", "ServiceRoleArn",
                         "ExportAttributeName"})
# Operations that destroy: their valid examples name spare resources, not the estate's.
DESTRUCTIVE = frozenset({"DeleteServer", "DeleteBackup"})


@dataclass
class Fuzz:
    """The fuzzed account: its estate, the hints drawn from it, the last snapshot taken."""

    host: Cmhost
    caller: Caller
    estate: Estate
    hints: Hints
    watched_arns: list[str]
    figures: Counter[str]
    state: dict[str, Any] | None = None
    stuck: set[str] = field(default_factory=set)  # servers left busy by an earlier request

    def hints_for(self, operation: str) -> Hints:
        if operation not in DESTRUCTIVE:
            return self.hints
        spare = {"DeleteServer.ServerName": [self.estate.name("victim0"),
                                             self.estate.name("victim1"), "fz-nothing"],
                 "DeleteBackup.BackupId": [self.estate.backup_id("victim0"),
                                           self.estate.backup_id("victim1")]}
        return Hints({**self.hints.values, **spare}, self.hints.only)

    def snapshot_arns(self, params: Any) -> list[str]:
        arns = list(self.watched_arns)
        if isinstance(params, dict) and isinstance(params.get("ResourceArn"), str):
            arns.append(params["ResourceArn"])
        return arns

    def snapshot(self, params: Any) -> dict[str, Any]:
        """The account's state, with the tags of the estate and of the ARN `params` names."""
        return snapshot(self.caller, events_of=self.estate.server_names,
                        tags_of=self.snapshot_arns(params))

    def attempt(self, operation: Operation, example: Example) -> None:
        mutating = operation.name in MUTATING
        before = self.state
        if mutating and (before is None or before["tags"].keys() != set(
                self.snapshot_arns(example.params))):
            before = self.state = self.snapshot(example.params)
        reply = self.caller.call(operation.name, example.body())
        body = check_answer(operation.name, reply)
        self.figures[f"fuzz outcome: {operation.name}: {body.get('__type', 'OK')}"] += 1
        if TRACE:
            print(f"{operation.name} {example.body()[:300]!r} -> {reply}", file=sys.stderr)
        if example.encoding == "utf-8" and not _encodable(example.params):
            assert body.get("__type") == "SerializationException", (operation.name, body)
        if not mutating:
            return
        if reply.status == 200:
            # It took effect: its job must finish (and the estate be usable again).
            settle(self.host)
            self.state = self.snapshot(example.params)
            stuck = {k: v for k, v in busy_servers(self.state).items() if k not in self.stuck}
            self.stuck.update(stuck)  # blamed once, on the request that caused it
            assert not stuck, (f"{operation.name} was accepted but its job never finished: "
                               f"{stuck} after {example.body()[:400]!r}")
            return
        assert before is not None
        after = self.snapshot(example.params)
        assert after == before, (
            f"{operation.name} was refused ({body['__type']}: {body['message'][:200]}) but "
            f"changed the account:\n{difference(before, after)}")


def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _hints(host: Cmhost, caller: Caller, estate: Estate) -> Hints:
    account = caller.key.account
    domain_key = rsa_key()
    servers_token = caller.ok("DescribeServers", {"MaxResults": 1})["NextToken"]
    events_token = caller.ok("DescribeEvents", {"ServerName": estate.name("chef"),
                                                "MaxResults": 1})["NextToken"]
    backups_token = caller.ok("DescribeBackups", {"MaxResults": 1})["NextToken"]
    foreign_arn = estate.arn("chef").replace(f":{account}:", ":000000000000:")
    defaults = server_params(host, caller, "unused")
    chef_key = next(a["Value"] for a in chef_attributes() if a["Name"] == "CHEF_PIVOTAL_KEY")
    return Hints({
        "ServerName": [estate.name("chef"), estate.name("puppet"), "fz-nothing"],
        "BackupId": [estate.backup_id("chef"), estate.backup_id("puppet")],
        "ResourceArn": [estate.arn("chef"), estate.arn("puppet"), estate.backup_arn("chef"),
                        foreign_arn],
        "NodeAssociationStatusToken": [estate.token],
        "NextToken": [servers_token, events_token, backups_token],
        "Engine": ["Chef", "ChefAutomate", "Puppet"],
        "EngineModel": ["Single", "Monolithic"],
        "EngineVersion": ["2", "12", "2019", "2017"],
        "InstanceType": ["m5.large"],
        "InstanceProfileArn": [defaults["InstanceProfileArn"]],
        "ServiceRoleArn": [defaults["ServiceRoleArn"]],
        "ExportAttributeName": ["Userdata"],
        "AttributeName": ["CHEF_PIVOTAL_KEY", "CHEF_AUTOMATE_PIVOTAL_KEY",
                          "PUPPET_ADMIN_PASSWORD"],
        "AttributeValue": [chef_key, "Pupp3t-passw0rd"],
        "AssociateNode.EngineAttributes": [node_attributes(),
                                           puppet_node_attributes("fz-node-p")],
        "DisassociateNode.EngineAttributes": [
            [{"Name": "CHEF_ORGANIZATION", "Value": "default"}], []],
        "CreateServer.EngineAttributes": [
            chef_attributes(), [{"Name": "PUPPET_ADMIN_PASSWORD", "Value": "Pupp3t-passw0rd"}]],
        "StartMaintenance.EngineAttributes": [
            [{"Name": "CHEF_MAJOR_UPGRADE", "Value": "false"}], []],
        "ExportServerEngineAttribute.InputAttributes": [
            [{"Name": "RunList", "Value": "role[web]"},
             {"Name": "OrganizationName", "Value": "default"}],
            [{"Name": "NodeEnvironment", "Value": "production"}]],
        "NodeName": ["fz-node-2", "fz-node-1"],
        "CustomDomain": ["fz.example.com"],
        "CustomCertificate": [certificate(domain_key, "fz.example.com")],
        "CustomPrivateKey": [private_pem(domain_key)],
        "PreferredMaintenanceWindow": ["Mon:08:00", "Sun:23:00"],
        "PreferredBackupWindow": ["08:00", "Tue:08:30"],
        "Tag": [{"Key": "env", "Value": "prod"}, {"Key": "owner", "Value": "x"}],
        "TagKey": ["owner", "env", "role"],
        "EngineAttribute.Name": ["CHEF_ORGANIZATION", "CHEF_NODE_PUBLIC_KEY",
                                 "PUPPET_NODE_CSR", "CHEF_PIVOTAL_KEY", "RunList"],
        "EngineAttribute.Value": ["default", chef_key],
    }, only=IDENTIFIERS)


@pytest.fixture(scope="module")
def fuzz(host: Cmhost, figures: Counter[str]) -> Fuzz:
    # Room for the servers valid CreateServer examples make (the default limit is 10).
    host.cli("accounts", "set-limits", "--account", ACCOUNT, "--server-limit", "40",
             *host.storage_args())
    caller = issue_caller(host, ACCOUNT)
    estate = build_estate(host, caller, "fz", victims=2)
    watched = [estate.arn(r) for r in estate.servers] + [
        estate.backup_arn(r) for r in estate.backups]
    return Fuzz(host, caller, estate, _hints(host, caller, estate), watched, figures)


def run_fuzz(fuzz: Fuzz, figures: Counter[str], name: str, examples: int, *,
             shrink: bool) -> None:
    """`examples` examples of `name`, derandomized. Shrinking a failure costs hundreds of
    requests: the fast run reports the failing example as found, the soak run shrinks it."""
    operation = SERVICE.operations[name]
    settle(fuzz.host)  # let what the previous operation started finish
    fuzz.state = None
    strategy = operation_input(operation, fuzz.hints_for(name))

    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=phases)
    @given(strategy)
    def attempt(example: Example) -> None:
        figures[f"fuzz examples: {name}"] += 1
        fuzz.attempt(operation, example)

    attempt()


@pytest.mark.parametrize("name", sorted(SERVICE.operations))
def test_fuzz_operation(fuzz: Fuzz, figures: Counter[str], name: str) -> None:
    run_fuzz(fuzz, figures, name, FAST_EXAMPLES, shrink=False)


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="the long fuzz runs in `make soak` (CMHOST_SOAK=1)")
@pytest.mark.parametrize("name", sorted(SERVICE.operations))
def test_fuzz_operation_soak(fuzz: Fuzz, figures: Counter[str], name: str) -> None:
    run_fuzz(fuzz, figures, name, SOAK_EXAMPLES, shrink=True)
