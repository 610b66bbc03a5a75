"""IAM policy reading and evaluation (cmhost.service.policies), case by case as IAM decides."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cmhost.service.policies import (
    PolicyError,
    arn_match,
    denial_message,
    evaluate,
    read_policy,
)

ACCOUNT = "123456789012"
TEAM_A = f"arn:aws:opsworks-cm:us-east-1:{ACCOUNT}:server/team-a-web/0a1b2c3d"
TEAM_B = f"arn:aws:opsworks-cm:us-east-1:{ACCOUNT}:server/team-b-web/9f8e7d6c"


def policy(*statements: dict[str, Any], version: str = "2012-10-17") -> Any:
    return read_policy(json.dumps({"Version": version, "Statement": list(statements)},
                                  indent=2))


def allows(policies: list[Any], action: str, resource: str = "*",
           **context: Any) -> bool:
    return evaluate(policies, f"opsworks-cm:{action}", resource, context).allowed


READ_ONLY = policy({"Effect": "Allow", "Action": ["opsworks-cm:Describe*",
                                                  "opsworks-cm:List*"], "Resource": "*"})


def test_read_only_allows_describe_and_denies_the_rest() -> None:
    assert allows([READ_ONLY], "DescribeServers")
    assert allows([READ_ONLY], "ListTagsForResource", TEAM_A)
    assert not allows([READ_ONLY], "DeleteServer", TEAM_A)
    assert not allows([READ_ONLY], "CreateServer")
    assert not allows([], "DescribeServers")  # no policy: denied


def test_actions_are_case_insensitive_and_star_is_everything() -> None:
    assert allows([policy({"Effect": "Allow", "Action": "OPSWORKS-CM:deleteserver",
                           "Resource": "*"})], "DeleteServer", TEAM_A)
    assert allows([policy({"Effect": "Allow", "Action": "*", "Resource": "*"})],
                  "StartMaintenance", TEAM_A)


def test_explicit_deny_beats_allow_and_says_so() -> None:
    both = [policy({"Effect": "Allow", "Action": "opsworks-cm:*", "Resource": "*"}),
            policy({"Effect": "Deny", "Action": "opsworks-cm:DeleteServer", "Resource": "*"})]
    decision = evaluate(both, "opsworks-cm:DeleteServer", TEAM_A, {})
    assert not decision.allowed and decision.explicit_deny
    assert allows(both, "UpdateServer", TEAM_A)
    user = f"arn:aws:iam::{ACCOUNT}:user/ci"
    assert denial_message(user, "opsworks-cm:DeleteServer", TEAM_A, decision) == (
        f"User: {user} is not authorized to perform: opsworks-cm:DeleteServer on resource: "
        f"{TEAM_A} with an explicit deny in an identity-based policy")
    implicit = evaluate([READ_ONLY], "opsworks-cm:DeleteServer", TEAM_A, {})
    assert denial_message(user, "opsworks-cm:DeleteServer", TEAM_A, implicit).endswith(
        "because no identity-based policy allows the opsworks-cm:DeleteServer action")


def test_resource_patterns_per_arn_part() -> None:
    team_a = policy({"Effect": "Allow", "Action": "opsworks-cm:*",
                     "Resource": f"arn:aws:opsworks-cm:*:{ACCOUNT}:server/team-a-*"})
    assert allows([team_a], "DeleteServer", TEAM_A)
    assert not allows([team_a], "DeleteServer", TEAM_B)
    assert not arn_match("arn:aws:opsworks-cm:*:1234*", TEAM_A)  # * does not cross a colon
    assert arn_match("*", TEAM_B)
    not_b = policy({"Effect": "Allow", "Action": "opsworks-cm:*",
                    "NotResource": "arn:aws:opsworks-cm:*:*:server/team-b-*"})
    assert allows([not_b], "DeleteServer", TEAM_A) and not allows([not_b], "DeleteServer",
                                                                   TEAM_B)


def test_not_action() -> None:
    all_but_delete = policy({"Effect": "Allow", "NotAction": "opsworks-cm:Delete*",
                             "Resource": "*"})
    assert allows([all_but_delete], "CreateBackup", TEAM_A)
    assert not allows([all_but_delete], "DeleteBackup", TEAM_A)


def test_tag_conditions() -> None:
    tagged = policy({"Effect": "Allow", "Action": "opsworks-cm:*", "Resource": "*",
                     "Condition": {"StringEquals": {"aws:ResourceTag/team": "a"}}})
    assert allows([tagged], "DeleteServer", TEAM_A, **{"aws:resourcetag/team": "a"})
    assert not allows([tagged], "DeleteServer", TEAM_A, **{"aws:resourcetag/team": "b"})
    assert not allows([tagged], "DeleteServer", TEAM_A)  # untagged: the key is missing
    keys = policy({"Effect": "Allow", "Action": "opsworks-cm:TagResource", "Resource": "*",
                   "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["team", "env"]}}})
    assert allows([keys], "TagResource", TEAM_A, **{"aws:tagkeys": ["team"]})
    assert not allows([keys], "TagResource", TEAM_A, **{"aws:tagkeys": ["team", "owner"]})
    any_env = policy({"Effect": "Deny", "Action": "*", "Resource": "*",
                      "Condition": {"ForAnyValue:StringLike": {"aws:TagKeys": "env*"}}})
    assert evaluate([any_env], "opsworks-cm:TagResource", TEAM_A,
                    {"aws:tagkeys": ["x", "environment"]}).explicit_deny
    assert not evaluate([any_env], "opsworks-cm:TagResource", TEAM_A, {}).explicit_deny


def test_ip_bool_and_date_conditions() -> None:
    office = policy({"Effect": "Allow", "Action": "*", "Resource": "*",
                     "Condition": {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "::1/128"]},
                                   "Bool": {"aws:SecureTransport": "false"}}})
    assert allows([office], "DescribeServers", **{"aws:sourceip": "10.1.2.3",
                                                   "aws:securetransport": "false"})
    assert allows([office], "DescribeServers", **{"aws:sourceip": "::1",
                                                   "aws:securetransport": "false"})
    assert not allows([office], "DescribeServers", **{"aws:sourceip": "192.0.2.1",
                                                       "aws:securetransport": "false"})
    outside = policy({"Effect": "Deny", "Action": "*", "Resource": "*",
                      "Condition": {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}})
    assert evaluate([outside], "opsworks-cm:DescribeServers", "*",
                    {"aws:sourceip": "192.0.2.1"}).explicit_deny
    window = policy({"Effect": "Allow", "Action": "*", "Resource": "*",
                     "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"},
                                   "DateLessThan": {"aws:CurrentTime": "2027-01-01T00:00:00Z"}}})
    assert allows([window], "DescribeServers", **{"aws:currenttime": "2026-12-03T14:00:00Z"})
    assert not allows([window], "DescribeServers", **{"aws:currenttime": "2027-02-01T00:00:00Z"})


def test_missing_keys_if_exists_negation_and_null() -> None:
    ne = policy({"Effect": "Allow", "Action": "*", "Resource": "*",
                 "Condition": {"StringNotEquals": {"aws:ResourceTag/team": "b"}}})
    assert allows([ne], "DeleteServer")  # missing key: a negated operator holds
    assert not allows([ne], "DeleteServer", **{"aws:resourcetag/team": "b"})
    if_exists = policy({"Effect": "Allow", "Action": "*", "Resource": "*",
                        "Condition": {"StringEqualsIfExists": {"aws:ResourceTag/team": "a"}}})
    assert allows([if_exists], "CreateServer")
    assert not allows([if_exists], "DeleteServer", **{"aws:resourcetag/team": "b"})
    null = policy({"Effect": "Allow", "Action": "*", "Resource": "*",
                   "Condition": {"Null": {"aws:RequestTag/team": "false"}}})
    assert allows([null], "CreateServer", **{"aws:requesttag/team": "a"})
    assert not allows([null], "CreateServer")


def test_policy_variables() -> None:
    own = policy({"Effect": "Allow", "Action": "*",
                  "Resource": f"arn:aws:opsworks-cm:*:{ACCOUNT}:server/${{aws:username}}-*"})
    context = {"aws:username": "team-a"}
    assert evaluate([own], "opsworks-cm:DeleteServer", TEAM_A, context).allowed
    assert not evaluate([own], "opsworks-cm:DeleteServer", TEAM_B, context).allowed
    old = policy({"Effect": "Allow", "Action": "*",
                  "Resource": f"arn:aws:opsworks-cm:*:{ACCOUNT}:server/${{aws:username}}-*"},
                 version="2008-10-17")  # no variables in the old version: literal text
    assert not evaluate([old], "opsworks-cm:DeleteServer", TEAM_A, context).allowed


@pytest.mark.parametrize(("text", "line", "reason"), [
    ('{"Version": "2012-10-17", "Statement": [\n  {"Effect": "Allow",}\n]}', 2,
     "not valid JSON"),
    (('{\n "Version": "2012-10-17",\n "Statement": [{\n  "Effect": "Permit",\n'
     '  "Action": "*", "Resource": "*"}]}'), 4, "Effect must be Allow or Deny"),
    (('{\n "Version": "2012-10-17",\n "Statement": {\n  "Effect": "Allow",\n'
     '  "Action": "opsworks-cm DeleteServer",\n  "Resource": "*"}}'), 5, "is not an action"),
    (('{\n "Version": "2012-10-17",\n "Statement": {\n  "Effect": "Allow",\n'
     '  "Action": "*"\n }}'), 3, "exactly one of Resource and NotResource"),
    (('{\n "Version": "2012-10-17",\n "Statement": {\n  "Effect": "Allow",\n'
     '  "Action": "*", "Resource": "*",\n  "Condition": {"StringEqualz": {"aws:username": "x"}}'
     '}}'), 6, "not a condition operator"),
    (('{\n "Version": "2012-10-17",\n "Statement": {\n  "Effect": "Allow",\n'
     '  "Action": "*", "Resource": "*",\n  "Condition": {"IpAddress":\n'
     '   {"aws:SourceIp": "10.0.0.300/8"}}}}'), 7, "not a valid value for aws:SourceIp"),
    (('{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": "*",\n'
     ' "Action": "*", "Resource": "*"}}'), 1, "not allowed in an identity-based policy"),
    ('{"Version": "2012-10-18", "Statement": []}', 1, "Version must be one of"),
    ('{"Statement": [], "Extra": 1}', 1, "unknown element 'Extra'"),
    ('["not", "an", "object"]', 1, "a policy is a JSON object"),
])
def test_a_malformed_policy_is_refused_with_its_line_and_reason(text: str, line: int,
                                                                  reason: str) -> None:
    with pytest.raises(PolicyError) as caught:
        read_policy(text)
    assert caught.value.line == line, caught.value
    assert reason in caught.value.reason, caught.value
