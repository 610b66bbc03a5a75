"""Hostile callers, isolation: no account sees, touches, tags, backs up, restores or associates
anything of another account (or of its own in another region), for all 19 operations, by
name, by backup ID, by node token and by ARN (and by every near variant of the ARN).

Attackers: account B against account A, A against B, and A in eu-west-1 against A in
us-east-1 (resources live per account and region). Every attack must end in
ResourceNotFoundException (or ValidationException where the value cannot even be a name),
listings must not show the owner's resources, and afterwards both sides are unchanged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from cmhost.api.model import SERVICE
from tests.security.estate import (
    Estate,
    build_estate,
    node_attributes,
    server_params,
    snapshot,
)
from tests.security.hosts import issue_caller, settle
from tests.security.wire import Caller, check_answer, check_aws_error
from tests.support import Cmhost

A_ACCOUNT, B_ACCOUNT = "410000000001", "410000000002"
SHARED = "same-name"  # a server name both accounts use
NOT_FOUND = frozenset({"ResourceNotFoundException"})
NOT_A_NAME = frozenset({"ValidationException"})
BAD_TOKEN = frozenset({"InvalidNextTokenException", "ResourceNotFoundException"})


@dataclass
class Estates:
    host: Cmhost
    by_label: dict[str, Estate]


@pytest.fixture(scope="module")
def estates(host: Cmhost) -> Estates:
    a = issue_caller(host, A_ACCOUNT)
    b = issue_caller(host, B_ACCOUNT)
    return Estates(host, {
        "A": build_estate(host, a, "ia", shared_name=SHARED, gone=True),
        "B": build_estate(host, b, "ib", shared_name=SHARED, gone=True),
        "A@eu-west-1": build_estate(host, a.in_region("eu-west-1"), "ie", shared_name=SHARED),
    })


def arn_variants(arn: str, attacker: Caller) -> list[str]:
    """The owner's ARN, and ARNs an attacker could forge from it."""
    parts = arn.split(":", 5)
    region, account = parts[3], parts[4]
    mine = arn.replace(f":{region}:{account}:", f":{attacker.region}:{attacker.key.account}:")
    return sorted({
        arn,
        arn.replace(f":{account}:", f":{attacker.key.account}:"),
        arn.replace(f":{region}:", f":{attacker.region}:"),
        mine,
        arn.replace("arn:aws:", "arn:aws-cn:"),
        arn + "/",
        arn.replace(":server/", ":server//").replace(":backup/", ":backup//"),
        arn.rsplit("/", 1)[0],  # the server ARN without its id
    })


def attacks(owner: Estate, mine: Estate, host: Cmhost) -> list[tuple[str, dict[str, Any],
                                                                     frozenset[str]]]:
    """(operation, input, acceptable errors) of every attack of `mine.caller` on `owner`."""
    o, me = owner, mine.caller
    chef, puppet, backup = o.name("chef"), o.name("puppet"), o.backup_id("chef")
    out: list[tuple[str, dict[str, Any], frozenset[str]]] = [
        ("AssociateNode", {"ServerName": chef, "NodeName": "intruder",
                           "EngineAttributes": node_attributes()}, NOT_FOUND),
        ("CreateBackup", {"ServerName": chef}, NOT_FOUND),
        ("CreateBackup", {"ServerName": o.name("gone")}, NOT_FOUND),
        ("CreateServer", {**server_params(host, me, f"{mine.prefix}-stolen"),
                          "BackupId": backup}, NOT_FOUND),
        ("CreateServer", {**server_params(host, me, f"{mine.prefix}-stolen-2"),
                          "BackupId": o.backup_id("gone")}, NOT_FOUND),
        ("DeleteBackup", {"BackupId": backup}, NOT_FOUND),
        ("DeleteBackup", {"BackupId": o.backup_id("gone")}, NOT_FOUND),
        ("DeleteServer", {"ServerName": chef}, NOT_FOUND),
        ("DescribeBackups", {"BackupId": backup}, NOT_FOUND),
        ("DescribeBackups", {"BackupId": o.backup_id("shared"), "ServerName": SHARED},
         NOT_FOUND),
        ("DescribeBackups", {"ServerName": chef}, NOT_FOUND),
        ("DescribeBackups", {"ServerName": o.name("gone")}, NOT_FOUND),
        ("DescribeEvents", {"ServerName": chef}, NOT_FOUND),
        ("DescribeNodeAssociationStatus", {"ServerName": chef,
                                           "NodeAssociationStatusToken": o.token}, NOT_FOUND),
        ("DescribeNodeAssociationStatus", {"ServerName": mine.name("chef"),
                                           "NodeAssociationStatusToken": o.token}, NOT_FOUND),
        ("DescribeNodeAssociationStatus", {"ServerName": SHARED,
                                           "NodeAssociationStatusToken": o.token}, NOT_FOUND),
        ("DescribeServers", {"ServerName": chef}, NOT_FOUND),
        ("DisassociateNode", {"ServerName": chef, "NodeName": f"{o.prefix}-node-1",
                              "EngineAttributes": [{"Name": "CHEF_ORGANIZATION",
                                                    "Value": "default"}]}, NOT_FOUND),
        ("ExportServerEngineAttribute", {"ServerName": chef, "ExportAttributeName": "Userdata"},
         NOT_FOUND),
        ("RestoreServer", {"ServerName": chef, "BackupId": backup}, NOT_FOUND),
        ("RestoreServer", {"ServerName": mine.name("chef"), "BackupId": backup}, NOT_FOUND),
        ("RestoreServer", {"ServerName": SHARED, "BackupId": o.backup_id("shared")}, NOT_FOUND),
        ("RestoreServer", {"ServerName": chef, "BackupId": mine.backup_id("chef")}, NOT_FOUND),
        ("StartMaintenance", {"ServerName": chef}, NOT_FOUND),
        ("UpdateServer", {"ServerName": chef, "BackupRetentionCount": 5}, NOT_FOUND),
        ("UpdateServerEngineAttributes", {"ServerName": chef,
                                          "AttributeName": "CHEF_PIVOTAL_KEY"}, NOT_FOUND),
        ("UpdateServerEngineAttributes", {"ServerName": puppet,
                                          "AttributeName": "PUPPET_ADMIN_PASSWORD",
                                          "AttributeValue": "Intrud3r-pass"}, NOT_FOUND),
        # An ARN where a name or an ID is expected is not a name: refused by the model.
        ("DescribeServers", {"ServerName": o.arn("chef")}, NOT_A_NAME),
        ("DeleteServer", {"ServerName": o.arn("chef")}, NOT_A_NAME),
        ("DescribeBackups", {"BackupId": o.backup_arn("chef")}, NOT_A_NAME),
    ]
    for arn in (o.arn("chef"), o.arn("shared"), o.backup_arn("chef"), o.backup_arn("gone")):
        for variant in arn_variants(arn, me):
            out += [
                ("ListTagsForResource", {"ResourceArn": variant}, NOT_FOUND | NOT_A_NAME),
                ("TagResource", {"ResourceArn": variant,
                                 "Tags": [{"Key": "owner", "Value": "intruder"}]},
                 NOT_FOUND | NOT_A_NAME),
                ("UntagResource", {"ResourceArn": variant, "TagKeys": ["owner", "role"]},
                 NOT_FOUND | NOT_A_NAME),
            ]
    return out


def _tokens(owner: Estate) -> list[tuple[str, dict[str, Any]]]:
    """Pagination tokens of the owner, each with the request that would continue it."""
    c = owner.caller
    out = []
    for op, params in (("DescribeServers", {}), ("DescribeBackups", {}),
                       ("DescribeEvents", {"ServerName": SHARED}),
                       ("ListTagsForResource", {"ResourceArn": owner.arn("chef")})):
        token = c.ok(op, {**params, "MaxResults": 1}).get("NextToken")
        assert token, (op, params)
        out.append((op, {**params, "NextToken": token}))
    return out


PAIRS = [("B", "A"), ("A", "B"), ("A@eu-west-1", "A")]


@pytest.mark.parametrize(("attacker", "owner"), PAIRS,
                         ids=[f"{a} against {o}" for a, o in PAIRS])
def test_no_account_reaches_another(estates: Estates, figures: Counter[str], attacker: str,
                                    owner: str) -> None:
    host = estates.host
    mine, theirs = estates.by_label[attacker], estates.by_label[owner]
    me = mine.caller
    watched = theirs.server_names
    before = (snapshot(theirs.caller, events_of=watched), snapshot(me, events_of=[SHARED]))
    owner_node = theirs.caller.ok("DescribeNodeAssociationStatus", {
        "ServerName": theirs.name("chef"), "NodeAssociationStatusToken": theirs.token})

    planned = attacks(theirs, mine, host)
    assert {op for op, _, _ in planned} | {"DescribeAccountAttributes"} == set(
        SERVICE.operations), "every operation is attacked"
    wrong = []
    for op, params, acceptable in planned:
        reply = me.call(op, params)
        figures["isolation matrix requests"] += 1
        answer = check_answer(op, reply)
        got = answer.get("__type", "200 OK")
        if got not in acceptable:
            wrong.append(f"{op} {str(params)[:160]}: {reply}")
    # A continuation token of the owner's listings means nothing to the attacker.
    for op, params in _tokens(theirs):
        if op == "DescribeEvents" and not any(
                s["ServerName"] == SHARED for s in me.ok("DescribeServers")["Servers"]):
            continue
        if op == "ListTagsForResource":
            params = {**params, "ResourceArn": mine.arn("chef")}
        reply = me.call(op, params)
        figures["isolation matrix requests"] += 1
        refused = BAD_TOKEN | ({"ValidationException"} if op == "ListTagsForResource"
                               else set())  # its model declares no InvalidNextTokenException
        if check_aws_error(reply)["__type"] not in refused:
            wrong.append(f"{op} with the owner's NextToken: {reply}")
    settle(host)
    assert not wrong, f"{len(wrong)} of {len(planned)} attacks were not refused:\n" + \
        "\n".join(wrong[:30])

    # Listings show the attacker's own resources only.
    seen = me.ok("DescribeServers")["Servers"]
    assert {s["ServerArn"] for s in seen} == set(mine.live_server_arns)
    backups = me.ok("DescribeBackups")["Backups"]
    assert {b["BackupId"] for b in backups}.isdisjoint(
        {b["BackupId"] for b in theirs.backups.values()})
    shared = me.ok("DescribeBackups", {"ServerName": SHARED})["Backups"]
    assert [b["BackupId"] for b in shared] == [mine.backup_id("shared")]
    used = {a["Name"]: a["Used"] for a in me.ok("DescribeAccountAttributes")["Attributes"]}
    assert used == {"ServerLimit": len(seen), "ManualBackupLimit": len(backups)}
    figures["isolation matrix requests"] += 5

    # Nothing changed on either side.
    after = (snapshot(theirs.caller, events_of=watched), snapshot(me, events_of=[SHARED]))
    assert after[0] == before[0], "the owner's account changed"
    assert after[1] == before[1], "the attacker's account changed"
    assert theirs.caller.ok("DescribeNodeAssociationStatus", {
        "ServerName": theirs.name("chef"),
        "NodeAssociationStatusToken": theirs.token}) == owner_node
