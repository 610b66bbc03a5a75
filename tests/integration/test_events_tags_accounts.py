"""DescribeEvents, DescribeAccountAttributes and TagResource/UntagResource/ListTagsForResource."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.helpers import (
    ARN_PATTERN,
    CREATING_SECONDS,
    DEV_ACCOUNT,
    SERVER_NAME_PATTERN,
    TAG_PATTERN,
    all_tags,
    events_of,
    expect_error,
    finish_deletions,
    make_healthy,
    one_violation,
    quick_server,
    unchecked_client,
    violation,
)
from tests.support import Cmhost


@pytest.fixture(scope="module")
def tagged(cmhost: Cmhost, client: Any) -> str:
    """The ARN of a HEALTHY server whose tags the tests change."""
    arn: str = quick_server(client, "tagged")["ServerArn"]
    make_healthy(cmhost)
    return arn


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def reset_tags(client: Any, arn: str, tags: dict[str, str]) -> None:
    existing = list(all_tags(client, arn))
    if existing:
        client.untag_resource(ResourceArn=arn, TagKeys=existing)
    if tags:
        client.tag_resource(ResourceArn=arn, Tags=tag_list(tags))
    assert all_tags(client, arn) == tags


def walk_events(client: Any, name: str, size: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    token = None
    while True:
        params: dict[str, Any] = {"ServerName": name, "MaxResults": size}
        if token:
            params["NextToken"] = token
        page = client.describe_events(**params)
        assert len(page["ServerEvents"]) <= size
        found += page["ServerEvents"]
        token = page.get("NextToken")
        if not token:
            return found


# --- DescribeEvents --------------------------------------------------------------------------


def test_events_at_each_step_newest_first(cmhost: Cmhost, rclient: Any) -> None:
    server = quick_server(rclient, "evented")
    created = events_of(rclient, "evented")
    assert created and "creation started" in created[-1]["Message"].lower()
    make_healthy(cmhost)
    rclient.delete_server(ServerName="evented")
    events = events_of(rclient, "evented")
    assert all(e["ServerName"] == "evented" and e["Message"] for e in events)
    times = [e["CreatedAt"] for e in events]
    assert times == sorted(times, reverse=True)
    messages = [e["Message"].lower() for e in events]
    creation = next(i for i, m in enumerate(messages) if "creation started" in m)
    online = next(i for i, m in enumerate(messages) if "online" in m)
    deletion = next(i for i, m in enumerate(messages) if "deletion started" in m)
    assert deletion < online < creation == len(events) - 1
    assert abs((events[creation]["CreatedAt"] - server["CreatedAt"]).total_seconds()) < 1
    # The server came online on the virtual clock, a provisioning time after it was created.
    waited = (events[online]["CreatedAt"] - events[creation]["CreatedAt"]).total_seconds()
    assert CREATING_SECONDS <= waited < CREATING_SECONDS + 5
    finish_deletions(cmhost)
    expect_error(rclient.describe_events, "ResourceNotFoundException", ServerName="evented")


def test_events_pagination(cmhost: Cmhost, client: Any, tagged: str) -> None:
    everything = events_of(client, "tagged")
    assert len(everything) >= 2
    for size in (1, 2, len(everything), len(everything) + 1):
        assert walk_events(client, "tagged", size) == everything
    first = client.describe_events(ServerName="tagged", MaxResults=1)
    assert len(first["ServerEvents"]) == 1 and first["NextToken"]
    paginated = client.get_paginator("describe_events").paginate(
        ServerName="tagged", PaginationConfig={"PageSize": 1})
    assert [e for page in paginated for e in page["ServerEvents"]] == everything


def test_events_invalid_tokens(cmhost: Cmhost, client: Any, tagged: str) -> None:
    quick_server(client, "other-events")
    make_healthy(cmhost)  # a few events, so that there is a second page
    other = client.describe_events(ServerName="other-events", MaxResults=1)["NextToken"]
    servers_token = client.describe_servers(MaxResults=1)["NextToken"]
    for bad in ("garbage", other, servers_token):
        expect_error(client.describe_events, "InvalidNextTokenException", ServerName="tagged",
                     NextToken=bad)


def test_events_errors(cmhost: Cmhost, client: Any) -> None:
    err = expect_error(client.describe_events, "ResourceNotFoundException", ServerName="nothing")
    assert "nothing" in err.response["Error"]["Message"]
    expect_error(client.describe_events, "ValidationException", one_violation(violation(
        "no_thing", "serverName", f"satisfy regular expression pattern: {SERVER_NAME_PATTERN}")),
        ServerName="no_thing")
    raw = unchecked_client(cmhost)
    expect_error(raw.describe_events, "ValidationException", one_violation(violation(
        None, "serverName", "not be null")))
    expect_error(raw.describe_events, "ValidationException", one_violation(violation(
        0, "maxResults", "have value greater than or equal to 1")),
        ServerName="tagged", MaxResults=0)


# --- DescribeAccountAttributes ---------------------------------------------------------------


def usage(client: Any) -> dict[str, tuple[int, int]]:
    found = client.describe_account_attributes()["Attributes"]
    return {a["Name"]: (a["Maximum"], a["Used"]) for a in found}


def test_account_attributes(cmhost: Cmhost, rclient: Any, region_pool: Iterator[str]) -> None:
    assert usage(rclient) == {"ServerLimit": (10, 0), "ManualBackupLimit": (50, 0)}
    quick_server(rclient, "counted-1")
    quick_server(rclient, "counted-2")
    assert usage(rclient)["ServerLimit"] == (10, 2)
    assert usage(cmhost.client(region=next(region_pool)))["ServerLimit"] == (10, 0)
    make_healthy(cmhost)
    rclient.delete_server(ServerName="counted-1")
    finish_deletions(cmhost)
    assert usage(rclient) == {"ServerLimit": (10, 1), "ManualBackupLimit": (50, 0)}


# --- tags ------------------------------------------------------------------------------------


def test_tag_overwrite_untag(client: Any, tagged: str) -> None:
    reset_tags(client, tagged, {})
    assert client.list_tags_for_resource(ResourceArn=tagged)["Tags"] == []
    response = client.tag_resource(ResourceArn=tagged, Tags=tag_list({"a": "1", "b": "2"}))
    assert set(response) == {"ResponseMetadata"}
    assert all_tags(client, tagged) == {"a": "1", "b": "2"}
    client.tag_resource(ResourceArn=tagged, Tags=tag_list({"a": "10", "c": "3"}))
    assert all_tags(client, tagged) == {"a": "10", "b": "2", "c": "3"}
    response = client.untag_resource(ResourceArn=tagged, TagKeys=["b", "never-there"])
    assert set(response) == {"ResponseMetadata"}
    assert all_tags(client, tagged) == {"a": "10", "c": "3"}
    client.untag_resource(ResourceArn=tagged, TagKeys=[])
    client.tag_resource(ResourceArn=tagged, Tags=tag_list({
        "empty": "", "Équipe 1/x=y+z-@_.:": "Kosten stelle:42 / ä"}))
    assert all_tags(client, tagged) == {"a": "10", "c": "3", "empty": "",
                                        "Équipe 1/x=y+z-@_.:": "Kosten stelle:42 / ä"}


def test_tags_are_trimmed(client: Any, tagged: str) -> None:
    # The SDK documents: "Leading and trailing white spaces are trimmed from both the key and
    # value."
    reset_tags(client, tagged, {})
    client.tag_resource(ResourceArn=tagged, Tags=[{"Key": " team ", "Value": "  blue "}])
    assert all_tags(client, tagged) == {"team": "blue"}


def test_tag_limit_of_fifty(client: Any, tagged: str) -> None:
    fifty = {f"key-{i:02d}": str(i) for i in range(50)}
    reset_tags(client, tagged, fifty)
    expect_error(client.tag_resource, "ValidationException", ResourceArn=tagged,
                 Tags=tag_list({"one-more": "x"}))
    # Overwriting a key is not a new tag.
    client.tag_resource(ResourceArn=tagged, Tags=tag_list({"key-00": "changed"}))
    fifty["key-00"] = "changed"
    assert all_tags(client, tagged) == fifty
    reset_tags(client, tagged, {})
    expect_error(client.tag_resource, "ValidationException", ResourceArn=tagged,
                 Tags=tag_list({f"k{i}": "v" for i in range(51)}))
    assert all_tags(client, tagged) == {}


def test_tag_validation(cmhost: Cmhost, client: Any, tagged: str) -> None:
    reset_tags(client, tagged, {"keep": "me"})
    for key in ("aws:owner", "aws:cloudformation:stack-id"):
        expect_error(client.tag_resource, "ValidationException", ResourceArn=tagged,
                     Tags=tag_list({key: "x"}))
    expect_error(client.tag_resource, "ValidationException", one_violation(violation(
        "bad#key", "tags.1.member.key", f"satisfy regular expression pattern: {TAG_PATTERN}")),
        ResourceArn=tagged, Tags=tag_list({"bad#key": "x"}))
    expect_error(client.tag_resource, "ValidationException", one_violation(violation(
        "v" * 257, "tags.2.member.value", "have length less than or equal to 256")),
        ResourceArn=tagged, Tags=tag_list({"ok": "x", "long": "v" * 257}))
    expect_error(client.untag_resource, "ValidationException", one_violation(violation(
        "k" * 129, "tagKeys.1.member", "have length less than or equal to 128")),
        ResourceArn=tagged, TagKeys=["k" * 129])
    raw = unchecked_client(cmhost)
    expect_error(raw.tag_resource, "ValidationException", one_violation(violation(
        None, "tags", "not be null")), ResourceArn=tagged)
    expect_error(raw.untag_resource, "ValidationException", one_violation(violation(
        None, "tagKeys", "not be null")), ResourceArn=tagged)
    expect_error(raw.list_tags_for_resource, "ValidationException", one_violation(violation(
        None, "resourceArn", "not be null")))
    assert all_tags(client, tagged) == {"keep": "me"}


@pytest.mark.parametrize("arn", ["not-an-arn", "arn:aws:ec2:us-east-1:000000000000:instance/i-1",
                                 "arn:aws:opsworks-cm:us-east-1:0000:server/tagged/x"])
def test_malformed_arns(client: Any, arn: str) -> None:
    message = one_violation(violation(arn, "resourceArn",
                                      f"satisfy regular expression pattern: {ARN_PATTERN}"))
    expect_error(client.tag_resource, "ValidationException", message, ResourceArn=arn,
                 Tags=tag_list({"a": "b"}))
    expect_error(client.untag_resource, "ValidationException", message, ResourceArn=arn,
                 TagKeys=["a"])
    expect_error(client.list_tags_for_resource, "ValidationException", message, ResourceArn=arn)


def test_unknown_resources(client: Any, tagged: str) -> None:
    right_name_wrong_id = tagged.rsplit("/", 1)[0] + f"/{uuid.uuid4()}"
    arns = [
        f"arn:aws:opsworks-cm:us-east-1:{DEV_ACCOUNT}:server/nobody/{uuid.uuid4()}",
        right_name_wrong_id,
        tagged.replace(":us-east-1:", ":eu-west-1:"),
        f"arn:aws:opsworks-cm:us-east-1:{DEV_ACCOUNT}:backup/tagged-20240101000000000",
    ]
    for arn in arns:
        expect_error(client.tag_resource, "ResourceNotFoundException", ResourceArn=arn,
                     Tags=tag_list({"a": "b"}))
        expect_error(client.untag_resource, "ResourceNotFoundException", ResourceArn=arn,
                     TagKeys=["a"])
        expect_error(client.list_tags_for_resource, "ResourceNotFoundException", ResourceArn=arn)


def test_list_tags_pagination(client: Any, tagged: str) -> None:
    tags = {f"page-{i:02d}": f"v{i}" for i in range(23)}
    reset_tags(client, tagged, tags)
    for size in (1, 7, 22, 23, 50):
        seen: list[str] = []
        token = None
        while True:
            params: dict[str, Any] = {"ResourceArn": tagged, "MaxResults": size}
            if token:
                params["NextToken"] = token
            page = client.list_tags_for_resource(**params)
            assert len(page["Tags"]) <= size
            seen += [t["Key"] for t in page["Tags"]]
            token = page.get("NextToken")
            if not token:
                break
        assert sorted(seen) == sorted(tags) and len(seen) == len(tags), size
    pages = client.get_paginator("list_tags_for_resource").paginate(
        ResourceArn=tagged, PaginationConfig={"PageSize": 10})
    assert [len(p["Tags"]) for p in pages] == [10, 10, 3]
    token = client.list_tags_for_resource(ResourceArn=tagged, MaxResults=5)["NextToken"]
    # ListTagsForResource's model declares no InvalidNextTokenException: ValidationException.
    expect_error(client.list_tags_for_resource, "ValidationException",
                 ResourceArn=tagged, NextToken="garbage")
    other = quick_server(client, "other-tags")["ServerArn"]
    expect_error(client.list_tags_for_resource, "ValidationException",
                 ResourceArn=other, NextToken=token)


def test_tags_while_deleting(cmhost: Cmhost, client: Any) -> None:
    arn = quick_server(client, "tag-deleting", Tags=tag_list({"a": "1"}))["ServerArn"]
    make_healthy(cmhost)
    client.delete_server(ServerName="tag-deleting")
    expect_error(client.tag_resource, "InvalidStateException", ResourceArn=arn,
                 Tags=tag_list({"b": "2"}))
    expect_error(client.untag_resource, "InvalidStateException", ResourceArn=arn,
                 TagKeys=["a"])
    assert all_tags(client, arn) == {"a": "1"}
    finish_deletions(cmhost)
    expect_error(client.list_tags_for_resource, "ResourceNotFoundException", ResourceArn=arn)
