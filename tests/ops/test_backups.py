"""CreateBackup, DeleteBackup, DescribeBackups and DescribeAccountAttributes through boto3."""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.request
from typing import Any

import pytest

from tests.ops.helpers import (
    ACCOUNT,
    backup_now,
    delete_server,
    expect_error,
    healthy_server,
    server,
    settle,
)
from tests.support import Cmhost

NAME = "bk-chef"
TAGS = [{"Key": "team", "Value": "ops"}, {"Key": "stage", "Value": "test"}]
COPIED = ("Engine", "EngineModel", "EngineVersion", "InstanceProfileArn", "InstanceType",
          "KeyPair", "PreferredBackupWindow", "PreferredMaintenanceWindow", "ServiceRoleArn",
          "SecurityGroupIds", "SubnetIds")


@pytest.fixture(scope="module")
def chef(cmhost: Cmhost, client: Any) -> dict[str, Any]:
    healthy_server(cmhost, client, NAME, KeyPair="ops-key", Tags=TAGS,
                   PreferredBackupWindow="03:30", SubnetIds=["subnet-0a1b2c3d"],
                   SecurityGroupIds=["sg-0a1b2c3d", "sg-1a2b3c4d"])
    return server(client, NAME)


def _id_time(backup_id: str, name: str) -> dt.datetime:
    match = re.fullmatch(re.escape(name) + r"-(\d{17})", backup_id)
    assert match, backup_id
    return dt.datetime.strptime(match.group(1) + "000", "%Y%m%d%H%M%S%f").replace(tzinfo=dt.UTC)


def test_create_backup_snapshots_the_server(cmhost: Cmhost, client: Any,
                                            chef: dict[str, Any]) -> None:
    backup = client.create_backup(ServerName=NAME, Description="before upgrade",
                                  Tags=[{"Key": "kind", "Value": "manual"}])["Backup"]
    assert (backup["Status"], backup["BackupType"]) == ("IN_PROGRESS", "MANUAL")
    assert backup["Description"] == "before upgrade"
    assert backup["ServerName"] == NAME
    # <ServerName>-yyyyMMddHHmmssSSS, UTC, the moment the backup was made
    stamp = _id_time(backup["BackupId"], NAME)
    assert abs((backup["CreatedAt"] - stamp).total_seconds()) < 0.001
    assert backup["BackupArn"] == (
        f"arn:aws:opsworks-cm:us-east-1:{ACCOUNT}:backup/{backup['BackupId']}")
    assert backup["UserArn"] == f"arn:aws:iam::{ACCOUNT}:root"
    for field in COPIED:
        assert backup[field] == chef[field], field
    assert backup["KeyPair"] == "ops-key"
    assert backup["SubnetIds"] == ["subnet-0a1b2c3d"]

    settle(cmhost)
    done = client.describe_backups(BackupId=backup["BackupId"])["Backups"]
    assert [b["Status"] for b in done] == ["OK"]
    assert server(client, NAME)["Status"] == "HEALTHY"

    with urllib.request.urlopen(done[0]["S3LogUrl"], timeout=10) as resp:
        assert resp.status == 200
        log = resp.read().decode()
    assert backup["BackupId"] in log

    tags = client.list_tags_for_resource(ResourceArn=backup["BackupArn"])["Tags"]
    expected = [*TAGS, {"Key": "kind", "Value": "manual"}]
    assert sorted(tags, key=lambda t: t["Key"]) == sorted(expected, key=lambda t: t["Key"])


def test_user_arn_is_the_callers_principal(cmhost: Cmhost, chef: dict[str, Any]) -> None:
    cmhost.cli("users", "create", "alice", "--account", ACCOUNT,
               "--managed", "AWSOpsWorksCMFullAccess", *cmhost.storage_args())
    out = cmhost.cli("keys", "create", "--account", ACCOUNT, "--user", "alice",
                     *cmhost.storage_args())
    key = json.loads(out.stdout)
    alice = cmhost.client(key=key["AccessKeyId"], secret=key["SecretAccessKey"])
    backup = alice.create_backup(ServerName=NAME)["Backup"]
    assert backup["UserArn"] == f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert "Description" not in backup
    settle(cmhost)


def test_create_backup_of_unknown_server(client: Any) -> None:
    expect_error(client.create_backup, "ResourceNotFoundException", ServerName="no-such")


@pytest.fixture(scope="module")
def history(cmhost: Cmhost, client: Any, chef: dict[str, Any]) -> dict[str, Any]:
    """Three more backups of the Chef server, one of a Puppet server; returns that one."""
    healthy_server(cmhost, client, "bk-other", "Puppet")
    other = backup_now(cmhost, client, "bk-other")
    for _ in range(3):
        backup_now(cmhost, client, NAME)
        cmhost.advance(2)  # distinct CreatedAt values
    return other


def test_describe_backups_newest_first_and_filters(client: Any,
                                                   history: dict[str, Any]) -> None:
    other = history
    mine = client.describe_backups(ServerName=NAME)["Backups"]
    assert len(mine) >= 3 and {b["ServerName"] for b in mine} == {NAME}
    created = [b["CreatedAt"] for b in mine]
    assert created == sorted(created, reverse=True)
    assert "NextToken" not in client.describe_backups(ServerName=NAME)

    everything = client.describe_backups()["Backups"]
    assert {b["BackupId"] for b in mine} | {other["BackupId"]} <= {
        b["BackupId"] for b in everything}
    assert [b["CreatedAt"] for b in everything] == sorted(
        (b["CreatedAt"] for b in everything), reverse=True)

    one = client.describe_backups(BackupId=other["BackupId"])["Backups"]
    assert [(b["BackupId"], b["Engine"]) for b in one] == [(other["BackupId"], "Puppet")]


def test_describe_backups_pages(client: Any, history: dict[str, Any]) -> None:
    full = [b["BackupId"] for b in client.describe_backups(ServerName=NAME)["Backups"]]
    assert len(full) >= 3
    seen: list[str] = []
    token = None
    while True:
        page = client.describe_backups(ServerName=NAME, MaxResults=2,
                                       **({"NextToken": token} if token else {}))
        assert len(page["Backups"]) <= 2
        seen += [b["BackupId"] for b in page["Backups"]]
        token = page.get("NextToken")
        if token is None:
            break
    assert seen == full

    paginator = client.get_paginator("describe_backups")
    pages = list(paginator.paginate(ServerName=NAME, PaginationConfig={"PageSize": 1}))
    assert len(pages) >= len(full)
    assert [b["BackupId"] for p in pages for b in p["Backups"]] == full
    built = paginator.paginate(ServerName=NAME, PaginationConfig={"PageSize": 2}).build_full_result()
    assert [b["BackupId"] for b in built["Backups"]] == full


def test_describe_backups_errors(client: Any, history: dict[str, Any]) -> None:
    expect_error(client.describe_backups, "InvalidNextTokenException", NextToken="bogus")
    first = client.describe_backups(ServerName=NAME, MaxResults=1)
    expect_error(client.describe_backups, "InvalidNextTokenException", ServerName="bk-other",
                 NextToken=first["NextToken"])
    token = first["NextToken"]
    tampered = ("B" if token[0] == "A" else "A") + token[1:]
    expect_error(client.describe_backups, "InvalidNextTokenException", NextToken=tampered,
                 ServerName=NAME)
    expect_error(client.describe_backups, "ResourceNotFoundException",
                 BackupId=f"{NAME}-20200101000000000")
    expect_error(client.describe_backups, "ResourceNotFoundException", ServerName="no-such")


def test_delete_backup(cmhost: Cmhost, client: Any, chef: dict[str, Any]) -> None:
    backup = backup_now(cmhost, client, NAME)
    assert client.delete_backup(BackupId=backup["BackupId"])["ResponseMetadata"][
        "HTTPStatusCode"] == 200
    settle(cmhost)
    expect_error(client.describe_backups, "ResourceNotFoundException",
                 BackupId=backup["BackupId"])
    assert backup["BackupId"] not in [
        b["BackupId"] for b in client.describe_backups(ServerName=NAME)["Backups"]]
    expect_error(client.delete_backup, "ResourceNotFoundException", BackupId=backup["BackupId"])
    expect_error(client.delete_backup, "ResourceNotFoundException",
                 BackupId=f"{NAME}-19990101000000000")


def _manual_used(client: Any) -> int:
    attrs = client.describe_account_attributes()["Attributes"]
    return int(next(a["Used"] for a in attrs if a["Name"] == "ManualBackupLimit"))


def test_manual_backup_limit_counts_manual_backups(cmhost: Cmhost) -> None:
    regional = cmhost.client(region="eu-west-1")  # an empty view of the account
    assert _manual_used(regional) == 0
    healthy_server(cmhost, regional, "bk-count")
    first = backup_now(cmhost, regional, "bk-count")
    backup_now(cmhost, regional, "bk-count")
    assert _manual_used(regional) == 2
    regional.start_maintenance(ServerName="bk-count")  # its backup is not a manual one
    settle(cmhost)
    kinds = [b["BackupType"] for b in regional.describe_backups(ServerName="bk-count")["Backups"]]
    assert sorted(kinds) == ["AUTOMATED", "MANUAL", "MANUAL"]
    assert _manual_used(regional) == 2
    regional.delete_backup(BackupId=first["BackupId"])
    settle(cmhost)
    assert _manual_used(regional) == 1


def test_manual_backups_outlive_their_server(cmhost: Cmhost) -> None:
    regional = cmhost.client(region="eu-west-2")
    healthy_server(cmhost, regional, "bk-gone", "Puppet")
    manual = backup_now(cmhost, regional, "bk-gone", Description="keep me")
    regional.start_maintenance(ServerName="bk-gone")
    settle(cmhost)
    automated = [b for b in regional.describe_backups(ServerName="bk-gone")["Backups"]
                 if b["BackupType"] == "AUTOMATED"]
    assert len(automated) == 1

    delete_server(cmhost, regional, "bk-gone")
    settle(cmhost)
    left = regional.describe_backups(ServerName="bk-gone")["Backups"]
    assert [(b["BackupId"], b["Status"]) for b in left] == [(manual["BackupId"], "OK")]
    expect_error(regional.describe_backups, "ResourceNotFoundException",
                 BackupId=automated[0]["BackupId"])

    reborn = healthy_server(cmhost, regional, "bk-reborn", "Puppet",
                            BackupId=manual["BackupId"])
    assert reborn["ServerName"] == "bk-reborn"
    assert regional.describe_backups(BackupId=manual["BackupId"])["Backups"][0]["Status"] == "OK"
    expect_error(regional.create_server, "ResourceNotFoundException",
                 **{**_server_params("bk-nothing"), "BackupId": "bk-gone-20200101000000000"})


def _server_params(name: str) -> dict[str, Any]:
    from tests.support import SERVER_DEFAULTS

    return {**SERVER_DEFAULTS, "ServerName": name, "Engine": "Puppet"}
