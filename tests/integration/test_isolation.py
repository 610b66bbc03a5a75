"""Two accounts on one cmhost: neither can see, change or even name the other's servers."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.integration.helpers import (
    DEV_ACCOUNT,
    OTHER_ACCOUNT,
    all_tags,
    expect_error,
    finish_deletions,
    make_healthy,
    quick_server,
    server_arn_re,
    status_of,
)
from tests.support import Cmhost, create_server

DEV_SERVERS = ("shared-name", "dev-only")
OTHER_SERVERS = ("shared-name", "other-only")


@pytest.fixture(scope="module")
def servers(cmhost: Cmhost, client: Any, other_client: Any) -> dict[str, dict[str, Any]]:
    """Both accounts' servers in us-east-1, HEALTHY, keyed by "<account>/<name>"."""
    made: dict[str, dict[str, Any]] = {}
    for account, boto, names in ((DEV_ACCOUNT, client, DEV_SERVERS),
                                 (OTHER_ACCOUNT, other_client, OTHER_SERVERS)):
        for name in names:
            made[f"{account}/{name}"] = quick_server(
                boto, name, Tags=[{"Key": "owner", "Value": account}])
    make_healthy(cmhost)
    return made


def names(boto: Any) -> set[str]:
    return {s["ServerName"] for s in boto.describe_servers()["Servers"]}


def test_key_belongs_to_the_other_account(other_key: dict[str, str]) -> None:
    assert other_key["Account"] == OTHER_ACCOUNT
    assert re.fullmatch(r"AKIA[A-Z2-7]{16}", other_key["AccessKeyId"])
    assert other_key["SecretAccessKey"]


def test_same_name_in_both_accounts(client: Any, other_client: Any,
                                    servers: dict[str, dict[str, Any]]) -> None:
    mine = servers[f"{DEV_ACCOUNT}/shared-name"]
    theirs = servers[f"{OTHER_ACCOUNT}/shared-name"]
    assert server_arn_re("us-east-1", DEV_ACCOUNT, "shared-name").fullmatch(mine["ServerArn"])
    assert server_arn_re("us-east-1", OTHER_ACCOUNT, "shared-name").fullmatch(
        theirs["ServerArn"])
    assert f":{OTHER_ACCOUNT}:stack/" in theirs["CloudFormationStackArn"]
    assert mine["Endpoint"] != theirs["Endpoint"]
    assert client.describe_servers(ServerName="shared-name")["Servers"][0]["ServerArn"] \
        == mine["ServerArn"]
    assert other_client.describe_servers(ServerName="shared-name")["Servers"][0]["ServerArn"] \
        == theirs["ServerArn"]
    assert all_tags(client, mine["ServerArn"]) == {"owner": DEV_ACCOUNT}
    assert all_tags(other_client, theirs["ServerArn"]) == {"owner": OTHER_ACCOUNT}


def test_listings_are_per_account(client: Any, other_client: Any,
                                  servers: dict[str, dict[str, Any]]) -> None:
    assert names(client) >= set(DEV_SERVERS) and "other-only" not in names(client)
    assert names(other_client) == set(OTHER_SERVERS)
    assert {a["Name"]: a["Used"] for a in
            other_client.describe_account_attributes()["Attributes"]} == {
        "ServerLimit": 2, "ManualBackupLimit": 0}


@pytest.mark.parametrize(("me", "owner", "name"), [
    ("other", DEV_ACCOUNT, "dev-only"),
    ("dev", OTHER_ACCOUNT, "other-only"),
])
def test_foreign_servers_are_not_found(client: Any, other_client: Any,
                                       servers: dict[str, dict[str, Any]], me: str, owner: str,
                                       name: str) -> None:
    boto = other_client if me == "other" else client
    arn = servers[f"{owner}/{name}"]["ServerArn"]
    not_found = "ResourceNotFoundException"
    expect_error(boto.describe_servers, not_found, ServerName=name)
    expect_error(boto.update_server, not_found, ServerName=name, BackupRetentionCount=5)
    expect_error(boto.delete_server, not_found, ServerName=name)
    expect_error(boto.describe_events, not_found, ServerName=name)
    expect_error(boto.tag_resource, not_found, ResourceArn=arn,
                 Tags=[{"Key": "owner", "Value": "me"}])
    expect_error(boto.untag_resource, not_found, ResourceArn=arn, TagKeys=["owner"])
    expect_error(boto.list_tags_for_resource, not_found, ResourceArn=arn)
    # Nothing changed for the owner.
    owner_client = client if owner == DEV_ACCOUNT else other_client
    server = owner_client.describe_servers(ServerName=name)["Servers"][0]
    assert server["Status"] == "HEALTHY" and server["BackupRetentionCount"] == 1
    assert all_tags(owner_client, arn) == {"owner": owner}


def test_same_name_arn_of_the_other_account_is_not_found(
        client: Any, other_client: Any, servers: dict[str, dict[str, Any]]) -> None:
    # Both accounts have "shared-name": each must still refuse the other's ARN.
    for boto, owner in ((client, OTHER_ACCOUNT), (other_client, DEV_ACCOUNT)):
        arn = servers[f"{owner}/shared-name"]["ServerArn"]
        expect_error(boto.list_tags_for_resource, "ResourceNotFoundException", ResourceArn=arn)
        expect_error(boto.tag_resource, "ResourceNotFoundException", ResourceArn=arn,
                     Tags=[{"Key": "owner", "Value": "me"}])


def test_tokens_do_not_cross_accounts(client: Any, other_client: Any,
                                      servers: dict[str, dict[str, Any]]) -> None:
    token = other_client.describe_servers(MaxResults=1)["NextToken"]
    expect_error(client.describe_servers, "InvalidNextTokenException", MaxResults=1,
                 NextToken=token)
    events_token = client.describe_events(ServerName="shared-name", MaxResults=1)["NextToken"]
    expect_error(other_client.describe_events, "InvalidNextTokenException",
                 ServerName="shared-name", NextToken=events_token)


def test_changes_stay_in_their_account(cmhost: Cmhost, client: Any, other_client: Any,
                                       servers: dict[str, dict[str, Any]]) -> None:
    client.update_server(ServerName="shared-name", BackupRetentionCount=9)
    client.tag_resource(ResourceArn=servers[f"{DEV_ACCOUNT}/shared-name"]["ServerArn"],
                        Tags=[{"Key": "color", "Value": "red"}])
    theirs = other_client.describe_servers(ServerName="shared-name")["Servers"][0]
    assert theirs["BackupRetentionCount"] == 1
    assert all_tags(other_client, theirs["ServerArn"]) == {"owner": OTHER_ACCOUNT}
    client.delete_server(ServerName="shared-name")
    assert status_of(other_client, "shared-name") == "HEALTHY"
    finish_deletions(cmhost)
    expect_error(client.describe_servers, "ResourceNotFoundException", ServerName="shared-name")
    assert status_of(other_client, "shared-name") == "HEALTHY"
    assert other_client.describe_events(ServerName="shared-name")["ServerEvents"]
    # The other account's server does not keep the name from being used again here.
    create_server(client, "shared-name", "Puppet")


def test_a_second_account_has_its_own_limit(cmhost: Cmhost, other_key: dict[str, str]) -> None:
    boto = cmhost.client(region="eu-north-1", key=other_key["AccessKeyId"],
                         secret=other_key["SecretAccessKey"])
    assert {a["Name"]: (a["Maximum"], a["Used"]) for a in
            boto.describe_account_attributes()["Attributes"]} == {
        "ServerLimit": (10, 0), "ManualBackupLimit": (50, 0)}
    expect_error(boto.describe_servers, "ResourceNotFoundException", ServerName="dev-only")
    assert boto.describe_servers()["Servers"] == []
