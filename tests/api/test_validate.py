"""Request validation: exact AWS messages for every kind of violation."""

from __future__ import annotations

from typing import Any

import pytest

from cmhost.api.model import BACKUP_TYPE, SERVICE, Member, Operation, Shape
from cmhost.api.validate import (
    MAX_LISTED_VIOLATIONS,
    NOT_AN_OBJECT,
    UnsupportedPattern,
    compile_java_pattern,
    format_violations,
    validate_input,
)

ARN = "arn:aws:opsworks-cm:us-east-1:123456789012:server/chef/0e3d7d12-0000-4000-8000-000000000000"
SERVER_NAME_PATTERN = r"[a-zA-Z][a-zA-Z0-9\-]*"
TAG_PATTERN = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"
PRIVATE_KEY_PATTERN = (
    r"(?ms)\s*^-----BEGIN (?-s:.*)PRIVATE KEY-----$.*?^-----END (?-s:.*)PRIVATE KEY-----$\s*"
)
FAILED = "failed to satisfy constraint: Member must"

CREATE_SERVER: dict[str, Any] = {
    "Engine": "ChefAutomate",
    "EngineModel": "Single",
    "EngineVersion": "2",
    "ServerName": "my-chef",
    "InstanceProfileArn": "arn:aws:iam::123456789012:instance-profile/aws-opsworks-cm-ec2-role",
    "InstanceType": "m5.large",
    "ServiceRoleArn": "arn:aws:iam::123456789012:role/aws-opsworks-cm-service-role",
    "EngineAttributes": [
        {"Name": "CHEF_AUTOMATE_ADMIN_PASSWORD", "Value": "Secr3t!pass"},
        {"Name": "CHEF_AUTOMATE_PIVOTAL_KEY", "Value": "-----BEGIN PUBLIC KEY-----\nMIIB\n"},
    ],
    "BackupRetentionCount": 3,
    "PreferredBackupWindow": "Sun:02:00",
    "PreferredMaintenanceWindow": "Mon:08:00",
    "AssociatePublicIpAddress": True,
    "DisableAutomatedBackup": False,
    "SecurityGroupIds": ["sg-1234"],
    "SubnetIds": ["subnet-1234"],
    "KeyPair": "my-key",
    "Tags": [{"Key": "team", "Value": "infra"}],
}


def _violations(operation: str, params: object) -> list[str]:
    return validate_input(SERVICE.operations[operation], params)


CASES: list[tuple[str, str, object, list[str]]] = [
    # (id, operation, body, expected messages)
    ("valid create", "CreateServer", CREATE_SERVER, []),
    ("valid describe", "DescribeAccountAttributes", {}, []),
    ("unknown members ignored", "DeleteServer", {"ServerName": "ok", "Nope": {"x": [1]}}, []),
    ("optional null is absent", "DescribeServers", {"ServerName": None, "MaxResults": None}, []),
    (
        "pattern", "CreateBackup", {"ServerName": "1x"},
        [f"Value '1x' at 'serverName' {FAILED} satisfy regular expression pattern: "
         + SERVER_NAME_PATTERN],
    ),
    (
        "missing required", "DeleteServer", {},
        [f"Value null at 'serverName' {FAILED} not be null"],
    ),
    (
        "required json null", "DeleteServer", {"ServerName": None},
        [f"Value null at 'serverName' {FAILED} not be null"],
    ),
    (
        "every required member, in model order", "CreateServer", {},
        [f"Value null at '{p}' {FAILED} not be null" for p in (
            "engine", "serverName", "instanceProfileArn", "instanceType", "serviceRoleArn")],
    ),
    (
        "too long", "DeleteServer", {"ServerName": "a" * 41},
        [f"Value '{'a' * 41}' at 'serverName' {FAILED} have length less than or equal to 40"],
    ),
    (
        "too short and pattern", "DeleteServer", {"ServerName": ""},
        [f"Value '' at 'serverName' {FAILED} have length greater than or equal to 1",
         f"Value '' at 'serverName' {FAILED} satisfy regular expression pattern: "
         + SERVER_NAME_PATTERN],
    ),
    (
        "integer minimum", "DescribeServers", {"MaxResults": 0},
        [f"Value '0' at 'maxResults' {FAILED} have value greater than or equal to 1"],
    ),
    (
        "nested tag paths", "TagResource",
        {"ResourceArn": ARN, "Tags": [{"Key": "ok", "Value": "v"}, {"Key": "", "Value": "bad#"}]},
        [f"Value '' at 'tags.2.member.key' {FAILED} have length greater than or equal to 1",
         f"Value 'bad#' at 'tags.2.member.value' {FAILED} satisfy regular expression pattern: "
         + TAG_PATTERN],
    ),
    (
        "nested required", "TagResource", {"ResourceArn": ARN, "Tags": [{"Key": "k"}]},
        [f"Value null at 'tags.1.member.value' {FAILED} not be null"],
    ),
    (
        "null list element", "UntagResource", {"ResourceArn": ARN, "TagKeys": ["a", None]},
        [f"Value null at 'tagKeys.2.member' {FAILED} not be null"],
    ),
    (
        "list of strings too long", "UntagResource",
        {"ResourceArn": ARN, "TagKeys": [f"k{i}" for i in range(201)]},
        ["Value '[" + ", ".join(f"k{i}" for i in range(201)) + "]' at 'tagKeys' "
         f"{FAILED} have length less than or equal to 200"],
    ),
    (
        "list of structures too long", "TagResource",
        {"ResourceArn": ARN, "Tags": [{"Key": "k", "Value": "v"}] * 201},
        ["Value '[" + ", ".join(["{Key=k, Value=v}"] * 201) + "]' at 'tags' "
         f"{FAILED} have length less than or equal to 200"],
    ),
    (
        "arn pattern", "ListTagsForResource", {"ResourceArn": "arn:aws:s3:::bucket"},
        [(f"Value 'arn:aws:s3:::bucket' at 'resourceArn' {FAILED} satisfy regular expression "
         "pattern: arn:aws.*:opsworks-cm:.*:[0-9]{12}:.*")],
    ),
    # Wrong JSON types.
    (
        "string for integer", "DescribeServers", {"MaxResults": "5"},
        [f"Value '5' at 'maxResults' {FAILED} be of type integer"],
    ),
    (
        "float for integer", "DescribeServers", {"MaxResults": 1.5},
        [f"Value '1.5' at 'maxResults' {FAILED} be of type integer"],
    ),
    (
        "bool for integer", "DescribeServers", {"MaxResults": True},
        [f"Value 'true' at 'maxResults' {FAILED} be of type integer"],
    ),
    (
        "integer beyond 32 bits", "DescribeServers", {"MaxResults": 2**31},
        [f"Value '2147483648' at 'maxResults' {FAILED} be of type integer"],
    ),
    (
        "number for string", "DeleteServer", {"ServerName": 5},
        [f"Value '5' at 'serverName' {FAILED} be of type string"],
    ),
    (
        "string for boolean", "UpdateServer", {"ServerName": "s", "DisableAutomatedBackup": "no"},
        [f"Value 'no' at 'disableAutomatedBackup' {FAILED} be of type boolean"],
    ),
    (
        "object for list", "TagResource", {"ResourceArn": ARN, "Tags": {"a": "b"}},
        [f"Value '{{a=b}}' at 'tags' {FAILED} be of type list"],
    ),
    (
        "string for structure", "TagResource", {"ResourceArn": ARN, "Tags": ["x"]},
        [f"Value 'x' at 'tags.1.member' {FAILED} be of type structure"],
    ),
    (
        "types are collected with other violations", "CreateServer",
        {**CREATE_SERVER, "ServerName": "9", "AssociatePublicIpAddress": 1,
         "SubnetIds": "subnet-1", "BackupRetentionCount": 0},
        [f"Value '1' at 'associatePublicIpAddress' {FAILED} be of type boolean",
         f"Value '0' at 'backupRetentionCount' {FAILED} have value greater than or equal to 1",
         f"Value '9' at 'serverName' {FAILED} satisfy regular expression pattern: "
         + SERVER_NAME_PATTERN,
         f"Value 'subnet-1' at 'subnetIds' {FAILED} be of type list"],
    ),
    # Sensitive values are never printed.
    (
        "sensitive type", "AssociateNode",
        {"ServerName": "s", "NodeName": "n", "EngineAttributes": [{"Name": "X", "Value": 7}]},
        [f"Value at 'engineAttributes.1.member.value' {FAILED} be of type string"],
    ),
    (
        "sensitive length", "AssociateNode",
        {"ServerName": "s", "NodeName": "n",
         "EngineAttributes": [{"Name": "X", "Value": "s" * 10001}]},
        [(f"Value at 'engineAttributes.1.member.value' {FAILED} have length less than or equal "
         "to 10000")],
    ),
    (
        "sensitive pattern", "CreateServer", {**CREATE_SERVER, "CustomPrivateKey": "hunter2"},
        [f"Value at 'customPrivateKey' {FAILED} satisfy regular expression pattern: "
         + PRIVATE_KEY_PATTERN],
    ),
    (
        "container of a secret", "AssociateNode",
        {"ServerName": "s", "NodeName": "n", "EngineAttributes": {"Value": "hunter2"}},
        [f"Value at 'engineAttributes' {FAILED} be of type list"],
    ),
    (
        "node name is ascii", "AssociateNode",
        {"ServerName": "s", "NodeName": "nödé", "EngineAttributes": []},
        [(f"Value 'nödé' at 'nodeName' {FAILED} satisfy regular expression pattern: "
         r"^[\-\p{Alnum}_:.]+$")],
    ),
]


@pytest.mark.parametrize(
    ("operation", "body", "expected"),
    [pytest.param(op, body, exp, id=case_id) for case_id, op, body, exp in CASES],
)
def test_violations(operation: str, body: object, expected: list[str]) -> None:
    assert _violations(operation, body) == expected


def test_issue_example_message() -> None:
    messages = _violations("CreateServer", {**CREATE_SERVER, "ServerName": "1x"})
    assert format_violations(messages) == (
        "1 validation error detected: Value '1x' at 'serverName' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: [a-zA-Z][a-zA-Z0-9\-]*"
    )


def test_two_errors_are_joined() -> None:
    messages = _violations("DeleteServer", {"ServerName": ""})
    assert format_violations(messages) == (
        "2 validation errors detected: "
        "Value '' at 'serverName' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1; "
        "Value '' at 'serverName' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: [a-zA-Z][a-zA-Z0-9\-]*"
    )


def test_many_violations_are_all_counted() -> None:
    body = {"ServerName": "s", "SecurityGroupIds": list(range(150)), "Engine": "x",
            "InstanceType": "t", "InstanceProfileArn": CREATE_SERVER["InstanceProfileArn"],
            "ServiceRoleArn": CREATE_SERVER["ServiceRoleArn"]}
    messages = _violations("CreateServer", body)
    assert len(messages) == 150
    text = format_violations(messages)
    assert text.startswith("150 validation errors detected: Value '0' at 'securityGroupIds.1.member'")
    assert text.count("; ") == MAX_LISTED_VIOLATIONS - 1
    assert MAX_LISTED_VIOLATIONS >= 10
    twelve = format_violations(messages[:12])
    assert twelve.startswith("12 validation errors") and twelve.count("; ") == 11


def test_enum_violation() -> None:
    shape = Shape("Probe", "structure", members=(Member("BackupType", BACKUP_TYPE),))
    operation = Operation("Probe", shape, Shape("ProbeResponse", "structure"), ())
    assert validate_input(operation, {"BackupType": "FOO"}) == [
        ("Value 'FOO' at 'backupType' failed to satisfy constraint: "
        "Member must satisfy enum value set: [AUTOMATED, MANUAL]")
    ]
    assert validate_input(operation, {"BackupType": "MANUAL"}) == []


@pytest.mark.parametrize("body", [[], "x", 1, None, True])
def test_body_must_be_an_object(body: object) -> None:
    assert _violations("DescribeServers", body) == [NOT_AN_OBJECT]


def _nested(depth: int, leaf: object) -> object:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "body",
    [
        {"ServerName": _nested(100_000, "x")},
        {"ResourceArn": ARN, "Tags": _nested(100_000, {})},
        {"ResourceArn": ARN, "Tags": [{"Key": {"a": _nested(100_000, 1)}, "Value": "v"}]},
        {"ResourceArn": ARN, "Tags": [], "Deep": _nested(100_000, None)},
    ],
    ids=["string", "list", "inside-structure", "unknown-member"],
)
def test_deep_nesting_is_bounded(body: dict[str, object]) -> None:
    operation = "DeleteServer" if "ServerName" in body else "TagResource"
    messages = _violations(operation, body)
    assert len(messages) <= 1
    assert all(len(m) < 300 and "[...]" in m for m in messages)


# Java semantics of the model's patterns; each verdict was checked against java.util.regex
# `Pattern.compile(p).matcher(s).matches()`.
JAVA_VERDICTS: list[tuple[str, str, bool]] = [
    (r"^[\-\p{Alnum}_:.]+$", "node-1.example:a_b", True),
    (r"^[\-\p{Alnum}_:.]+$", "node\n", False),
    (r"^[\-\p{Alnum}_:.]+$", "nödé", False),
    (r".*", "a\u2028b", False),
    (r".*", "a\tb", True),
    (TAG_PATTERN, "é Ω٣\u00a0x", True),
    (TAG_PATTERN, "a\tb", False),
    (r"(?s)\s*-----BEGIN CERTIFICATE-----.+-----END CERTIFICATE-----\s*",
     "\u00a0-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", False),
    (r"(?s)\s*-----BEGIN CERTIFICATE-----.+-----END CERTIFICATE-----\s*",
     ("\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
     "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"), True),
    (PRIVATE_KEY_PATTERN,
     "-----BEGIN RSA PRIVATE KEY-----\r\nMIIE\r\n-----END RSA PRIVATE KEY-----\r\n", True),
    (PRIVATE_KEY_PATTERN, "-----BEGIN PRIVATE KEY----- MIIE -----END PRIVATE KEY-----", False),
    (PRIVATE_KEY_PATTERN,
     "-----BEGIN ENCRYPTED\nPRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n", False),
    (r"^(((?!-)[A-Za-z0-9-]{0,62}[A-Za-z0-9])\.)+((?!-)[A-Za-z0-9-]{1,62}[A-Za-z0-9])$",
     "chef.example.com", True),
    (r"^(((?!-)[A-Za-z0-9-]{0,62}[A-Za-z0-9])\.)+((?!-)[A-Za-z0-9-]{1,62}[A-Za-z0-9])$",
     "-chef.example.com", False),
    (r"^(((?!-)[A-Za-z0-9-]{0,62}[A-Za-z0-9])\.)+((?!-)[A-Za-z0-9-]{1,62}[A-Za-z0-9])$",
     "localhost", False),
    (r"^((Mon|Tue|Wed|Thu|Fri|Sat|Sun):)?([0-1][0-9]|2[0-3]):[0-5][0-9]$", "Mon:08:00", True),
    (r"^((Mon|Tue|Wed|Thu|Fri|Sat|Sun):)?([0-1][0-9]|2[0-3]):[0-5][0-9]$", "24:00", False),
    (r"arn:aws.*:opsworks-cm:.*:[0-9]{12}:.*", ARN, True),
    (r"arn:aws.*:opsworks-cm:.*:[0-9]{12}:.*", ARN + "\n", False),
]


@pytest.mark.parametrize(("pattern", "value", "matches"), JAVA_VERDICTS)
def test_patterns_follow_java(pattern: str, value: str, matches: bool) -> None:
    assert (compile_java_pattern(pattern).fullmatch(value) is not None) is matches


def test_every_model_pattern_compiles() -> None:
    for shape in SERVICE.shapes.values():
        if shape.pattern is not None:
            compile_java_pattern(shape.pattern)


@pytest.mark.parametrize("pattern", [r"(?i)a", r"\Qa\E", r"[a&&b]", r"[[a]]", r"\bx", r"(?#c)"])
def test_untranslatable_java_constructs_are_refused(pattern: str) -> None:
    # Better to fail at import than to match differently from the real service.
    with pytest.raises(UnsupportedPattern):
        compile_java_pattern(pattern)
