"""CreateServer through boto3: defaults, identifiers, engines, limits and every documented error."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from tests.integration.helpers import (
    CREATING_SECONDS,
    DEV_ACCOUNT,
    SERVER_NAME_PATTERN,
    WINDOW_PATTERN,
    clock_now,
    expect_error,
    make_healthy,
    one_violation,
    quick_server,
    server_arn_re,
    status_of,
    unchecked_client,
    violation,
)
from tests.support import SERVER_DEFAULTS, Cmhost, create_server, error_code

DAILY = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
MAINTENANCE_DEFAULT = re.compile(r"(Tue|Wed|Fri):([01][0-9]|2[0-3]):[0-5][0-9]")


# --- success ---------------------------------------------------------------------------------


def test_defaults_and_identifiers(cmhost: Cmhost, rclient: Any, region: str) -> None:
    before = clock_now(cmhost)
    server = create_server(rclient, "Chef-Defaults")
    after = clock_now(cmhost)

    assert server["ServerName"] == "Chef-Defaults"
    assert server["Status"] == "CREATING"
    assert server["Engine"] == "Chef"
    assert server["EngineModel"] == "Single"
    assert server["EngineVersion"] == "2020-07"  # Chef Automate 2, shown in full
    assert server["AssociatePublicIpAddress"] is True
    assert server["DisableAutomatedBackup"] is False
    assert server["BackupRetentionCount"] == 1
    assert DAILY.fullmatch(server["PreferredBackupWindow"])
    assert MAINTENANCE_DEFAULT.fullmatch(server["PreferredMaintenanceWindow"])
    assert server["InstanceProfileArn"] == SERVER_DEFAULTS["InstanceProfileArn"]
    assert server["InstanceType"] == SERVER_DEFAULTS["InstanceType"]
    assert server["ServiceRoleArn"] == SERVER_DEFAULTS["ServiceRoleArn"]
    for absent in ("KeyPair", "CustomDomain", "MaintenanceStatus", "StatusReason"):
        assert absent not in server

    assert server_arn_re(region, DEV_ACCOUNT, "Chef-Defaults").fullmatch(server["ServerArn"])
    uuid.UUID(server["ServerArn"].rsplit("/", 1)[1])
    assert re.fullmatch(rf"chef-defaults-[a-z0-9]{{16}}\.{region}\.opsworks-cm\.io",
                        server["Endpoint"])
    stack = re.fullmatch(
        rf"arn:aws:cloudformation:{region}:{DEV_ACCOUNT}:stack/"
        rf"aws-opsworks-cm-instance-Chef-Defaults-(\d{{13}})/"
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        server["CloudFormationStackArn"])
    assert stack, server["CloudFormationStackArn"]
    created = server["CreatedAt"].timestamp()
    assert before - 1 <= created <= after + 1
    assert abs(int(stack.group(1)) / 1000 - created) < 2

    described = rclient.describe_servers(ServerName="Chef-Defaults")["Servers"]
    assert len(described) == 1
    for key, value in server.items():
        if key != "EngineAttributes":
            assert described[0][key] == value, key


def test_explicit_settings_are_kept(rclient: Any) -> None:
    settings = {
        "EngineModel": "Single", "EngineVersion": "2", "AssociatePublicIpAddress": False,
        "DisableAutomatedBackup": True, "BackupRetentionCount": 30,
        "PreferredBackupWindow": "Sun:02:30", "PreferredMaintenanceWindow": "Mon:08:00",
        "KeyPair": "my-ssh-key", "SecurityGroupIds": ["sg-0123456789abcdef0", "sg-1"],
        "SubnetIds": ["subnet-0123abcd"], "InstanceType": "c5.xlarge",
    }
    server = create_server(rclient, "explicit", **settings)
    described = rclient.describe_servers(ServerName="explicit")["Servers"][0]
    for key, value in settings.items():
        if key == "EngineVersion":
            assert server[key] == "2020-07"
        else:
            assert server[key] == value, key
        assert described[key] == server[key], key


def test_puppet_defaults_then_healthy_only_when_the_clock_moves(cmhost: Cmhost, rclient: Any) -> None:
    server = create_server(rclient, "slow-one", "Puppet")
    assert server["EngineModel"] == "Monolithic"
    assert server["EngineVersion"] == "2019-08"
    assert status_of(rclient, "slow-one") == "CREATING"
    cmhost.advance(CREATING_SECONDS / 2)
    assert status_of(rclient, "slow-one") == "CREATING"
    cmhost.advance(CREATING_SECONDS / 2 + 1)
    assert status_of(rclient, "slow-one") == "HEALTHY"


def test_forty_character_name_is_accepted(rclient: Any, region: str) -> None:
    name = "a" + "B9-" * 13
    assert len(name) == 40
    server = create_server(rclient, name, "Puppet")
    assert server["ServerName"] == name
    assert server["Endpoint"].startswith(name.lower() + "-")


@pytest.mark.parametrize(("engine", "version", "model", "full"), [
    ("Chef", "12", "Single", "12.11.1"),
    ("Puppet", "2017", "Monolithic", "2017-03"),
    ("Puppet", "2019", "Monolithic", "2019-08"),
    ("ChefAutomate", "2", "Single", "2020-07"),
])
def test_engine_versions_and_default_models(rclient: Any, engine: str, version: str | None,
                                            model: str, full: str) -> None:
    extra = {} if version is None else {"EngineVersion": version}
    server = create_server(rclient, "engine-check", engine, **extra)
    assert server["Engine"] == engine
    assert server["EngineModel"] == model
    assert server["EngineVersion"] == full
    assert rclient.describe_servers(ServerName="engine-check")["Servers"][0]["EngineModel"] == model


@pytest.mark.parametrize(("engine", "extra", "bad"), [
    ("Ansible", {}, "Ansible"),
    ("chef", {}, "chef"),
    ("", {}, ""),
    ("Chef", {"EngineModel": "Monolithic"}, "Monolithic"),
    ("Puppet", {"EngineModel": "Single"}, "Single"),
    ("Chef", {"EngineModel": "Cluster"}, "Cluster"),
    ("Chef", {"EngineVersion": "11"}, "11"),
    ("Chef", {"EngineVersion": "2019"}, "2019"),
    ("Chef", {"EngineVersion": "3"}, "3"),
    ("Puppet", {"EngineVersion": "2018"}, "2018"),
    ("Puppet", {"EngineVersion": "2"}, "2"),
    ("Puppet", {"EngineVersion": "12"}, "12"),
    ("Puppet", {"EngineVersion": ""}, ""),
])
def test_bad_engine_model_or_version(client: Any, engine: str, extra: dict[str, str],
                                     bad: str) -> None:
    err = expect_error(create_server, "ValidationException", client=client, name="eng-bad",
                       engine=engine, **extra)
    assert f"'{bad}'" in err.response["Error"]["Message"] or bad in err.response["Error"]["Message"]
    expect_error(client.describe_servers, "ResourceNotFoundException", ServerName="eng-bad")


# --- names, limits and backups ---------------------------------------------------------------


def test_duplicate_names(cmhost: Cmhost, rclient: Any, region_pool: Iterator[str]) -> None:
    first = quick_server(rclient, "dup")
    err = expect_error(create_server, "ResourceAlreadyExistsException", client=rclient,
                       name="dup", engine="Puppet")
    assert "dup" in err.response["Error"]["Message"]
    other_region = cmhost.client(region=next(region_pool))
    elsewhere = quick_server(other_region, "dup")
    assert elsewhere["ServerArn"] != first["ServerArn"]
    assert [s["ServerArn"] for s in other_region.describe_servers()["Servers"]] \
        == [elsewhere["ServerArn"]]
    make_healthy(cmhost)
    assert status_of(rclient, "dup") == "HEALTHY"
    expect_error(create_server, "ResourceAlreadyExistsException", client=rclient, name="dup")
    assert rclient.describe_servers(ServerName="dup")["Servers"][0]["ServerArn"] \
        == first["ServerArn"]


def test_concurrent_creates_of_one_name(rclient: Any) -> None:
    def attempt(_: int) -> str:
        try:
            quick_server(rclient, "racy")
        except ClientError as exc:
            return error_code(exc)
        return "created"

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(attempt, range(4)))
    assert outcomes == ["ResourceAlreadyExistsException"] * 3 + ["created"]
    assert [s["ServerName"] for s in rclient.describe_servers()["Servers"]] == ["racy"]


def test_unknown_backup_id(client: Any) -> None:
    err = expect_error(create_server, "ResourceNotFoundException", client=client,
                       name="from-backup", BackupId="nosuch-20240101000000000")
    assert "nosuch-20240101000000000" in err.response["Error"]["Message"]
    expect_error(client.describe_servers, "ResourceNotFoundException", ServerName="from-backup")
    expect_error(create_server, "ValidationException", one_violation(violation(
        "1-20240101000000000", "backupId",
        r"satisfy regular expression pattern: [a-zA-Z][a-zA-Z0-9\-\.\:]*")),
        client=client, name="from-backup", BackupId="1-20240101000000000")
    expect_error(create_server, "ValidationException", one_violation(violation(
        "b" * 80, "backupId", "have length less than or equal to 79")),
        client=client, name="from-backup", BackupId="b" * 80)


# --- request validation (exact AWS messages) ------------------------------------------------


@pytest.mark.parametrize("name", ["1chef", "chef_server", "chef server", "-chef", "chef.io",
                                  "chéf"])
def test_server_name_pattern(client: Any, name: str) -> None:
    expect_error(create_server, "ValidationException", one_violation(violation(
        name, "serverName", f"satisfy regular expression pattern: {SERVER_NAME_PATTERN}")),
        client=client, name=name)


def test_server_name_too_long(client: Any) -> None:
    name = "a" * 41
    expect_error(create_server, "ValidationException", one_violation(violation(
        name, "serverName", "have length less than or equal to 40")), client=client, name=name)


@pytest.mark.parametrize(("member", "value", "pattern"), [
    ("InstanceProfileArn", "arn:aws:iam::123:instance-profile/x",
     "arn:aws:iam::[0-9]{12}:instance-profile/.*"),
    ("InstanceProfileArn", "arn:aws:iam::000000000000:role/aws-opsworks-cm-service-role",
     "arn:aws:iam::[0-9]{12}:instance-profile/.*"),
    ("ServiceRoleArn", "arn:aws:iam::000000000000:instance-profile/x",
     "arn:aws:iam::[0-9]{12}:role/.*"),
    ("ServiceRoleArn", "aws-opsworks-cm-service-role", "arn:aws:iam::[0-9]{12}:role/.*"),
    ("PreferredBackupWindow", "24:00", WINDOW_PATTERN),
    ("PreferredBackupWindow", "Mon:8:00", WINDOW_PATTERN),
    ("PreferredBackupWindow", "Thr:08:00", WINDOW_PATTERN),
    ("PreferredMaintenanceWindow", "monday:08:00", WINDOW_PATTERN),
    ("PreferredMaintenanceWindow", "Mon:08:60", WINDOW_PATTERN),
    ("PreferredMaintenanceWindow", "Mon08:00", WINDOW_PATTERN),
])
def test_pattern_violations(client: Any, member: str, value: str, pattern: str) -> None:
    path = member[0].lower() + member[1:]
    expect_error(create_server, "ValidationException", one_violation(violation(
        value, path, f"satisfy regular expression pattern: {pattern}")),
        client=client, name="pattern", **{member: value})


@pytest.mark.parametrize("window", ["08:00", "Mon:08:30"])
def test_maintenance_window_is_weekly_on_the_hour(client: Any, window: str) -> None:
    # CreateServer documents PreferredMaintenanceWindow as "DDD:HH:MM" and, in the SDK model,
    # "MM must be specified as 00".
    name = "maint-" + window.replace(":", "")
    expect_error(create_server, "ValidationException", client=client, name=name,
                 PreferredMaintenanceWindow=window)
    expect_error(client.describe_servers, "ResourceNotFoundException", ServerName=name)


def test_backup_retention_count_range(cmhost: Cmhost, client: Any) -> None:
    expect_error(create_server, "ValidationException", one_violation(violation(
        31, "backupRetentionCount", "have value less than or equal to 30")),
        client=client, name="retention", BackupRetentionCount=31)
    # botocore refuses 0 itself; the service must too.
    raw = unchecked_client(cmhost)
    for value in (0, -1):
        expect_error(create_server, "ValidationException", one_violation(violation(
            value, "backupRetentionCount", "have value greater than or equal to 1")),
            client=raw, name="retention", BackupRetentionCount=value)
    expect_error(client.describe_servers, "ResourceNotFoundException", ServerName="retention")


def test_several_violations_are_all_listed(client: Any) -> None:
    err = expect_error(create_server, "ValidationException", client=client, name="1bad",
                       ServiceRoleArn="nope")
    message = err.response["Error"]["Message"]
    prefix = "2 validation errors detected: "
    assert message.startswith(prefix)
    assert set(message[len(prefix):].split("; ")) == {
        violation("1bad", "serverName",
                  f"satisfy regular expression pattern: {SERVER_NAME_PATTERN}"),
        violation("nope", "serviceRoleArn",
                  "satisfy regular expression pattern: arn:aws:iam::[0-9]{12}:role/.*"),
    }


def test_missing_required_members_caught_by_botocore(client: Any) -> None:
    for member in ("ServerName", "Engine", "InstanceProfileArn", "InstanceType",
                   "ServiceRoleArn"):
        params = {**SERVER_DEFAULTS, "ServerName": "nameless", "Engine": "Chef"}
        del params[member]
        with pytest.raises(ParamValidationError, match=f"Missing required parameter.*{member}"):
            client.create_server(**params)


def test_missing_required_members_checked_by_the_service(cmhost: Cmhost) -> None:
    raw = unchecked_client(cmhost)
    params = {**SERVER_DEFAULTS, "ServerName": "nameless", "Engine": "Chef"}
    for member in ("ServerName", "Engine", "InstanceProfileArn", "InstanceType",
                   "ServiceRoleArn"):
        path = member[0].lower() + member[1:]
        partial = {k: v for k, v in params.items() if k != member}
        expect_error(raw.create_server, "ValidationException",
                     one_violation(violation(None, path, "not be null")), **partial)
    err = expect_error(raw.create_server, "ValidationException")
    message = err.response["Error"]["Message"]
    prefix = "5 validation errors detected: "
    assert message.startswith(prefix)
    assert set(message[len(prefix):].split("; ")) == {
        violation(None, p, "not be null") for p in
        ("engine", "serverName", "instanceProfileArn", "instanceType", "serviceRoleArn")}


@pytest.mark.parametrize(("member", "value", "path", "kind"), [
    ("BackupRetentionCount", "3", "backupRetentionCount", "integer"),
    ("AssociatePublicIpAddress", "yes", "associatePublicIpAddress", "boolean"),
    ("DisableAutomatedBackup", 1, "disableAutomatedBackup", "boolean"),
    ("InstanceType", 5, "instanceType", "string"),
])
def test_wrong_types_checked_by_the_service(cmhost: Cmhost, member: str, value: object,
                                            path: str, kind: str) -> None:
    raw = unchecked_client(cmhost)
    expect_error(create_server, "ValidationException", one_violation(violation(
        value, path, f"be of type {kind}")), client=raw, name="typed", **{member: value})


def test_secret_values_are_not_repeated_in_messages(cmhost: Cmhost) -> None:
    raw = unchecked_client(cmhost)
    expect_error(create_server, "ValidationException", one_violation(
        "Value at 'engineAttributes.1.member.value' failed to satisfy constraint: "
        "Member must be of type string"), client=raw, name="typed",
        EngineAttributes=[{"Name": "CHEF_DELIVERY_ADMIN_PASSWORD", "Value": 12345678}])
