"""DescribeServers (with real pagination), the server limit, UpdateServer and DeleteServer."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.helpers import (
    DELETING_SECONDS,
    SERVER_NAME_PATTERN,
    WINDOW_PATTERN,
    create_many,
    events_of,
    expect_error,
    finish_deletions,
    make_healthy,
    one_violation,
    quick_server,
    status_of,
    unchecked_client,
    violation,
)
from tests.support import Cmhost, create_server, error_code

FULL = [f"srv-{i:02d}" for i in range(10)]
SETTINGS = ("DisableAutomatedBackup", "BackupRetentionCount", "PreferredBackupWindow",
            "PreferredMaintenanceWindow")


@pytest.fixture(scope="module")
def full_region(cmhost: Cmhost, region_pool: Iterator[str]) -> str:
    """A region in which the development account has exactly ten servers: its limit."""
    region = next(region_pool)
    create_many(cmhost.client(region=region), FULL)
    return region


@pytest.fixture(scope="module")
def full(cmhost: Cmhost, full_region: str) -> Any:
    return cmhost.client(region=full_region)


@pytest.fixture(scope="module")
def healthy(cmhost: Cmhost, client: Any) -> str:
    quick_server(client, "settings")
    make_healthy(cmhost)
    assert status_of(client, "settings") == "HEALTHY"
    return "settings"


def usage_of(client: Any) -> int:
    found = client.describe_account_attributes()["Attributes"]
    used: int = next(a["Used"] for a in found if a["Name"] == "ServerLimit")
    return used


def names(servers: list[dict[str, Any]]) -> list[str]:
    return [s["ServerName"] for s in servers]


# --- DescribeServers -------------------------------------------------------------------------


def test_describe_all_and_by_name(full: Any) -> None:
    listed = full.describe_servers()
    assert sorted(names(listed["Servers"])) == FULL
    assert "NextToken" not in listed
    one = full.describe_servers(ServerName="srv-03")["Servers"]
    assert names(one) == ["srv-03"]
    assert one[0] == next(s for s in listed["Servers"] if s["ServerName"] == "srv-03")


def test_describe_unknown_or_invalid_name(full: Any) -> None:
    err = expect_error(full.describe_servers, "ResourceNotFoundException", ServerName="srv-99")
    assert "srv-99" in err.response["Error"]["Message"]
    expect_error(full.describe_servers, "ValidationException", one_violation(violation(
        "srv_03", "serverName", f"satisfy regular expression pattern: {SERVER_NAME_PATTERN}")),
        ServerName="srv_03")


@pytest.mark.parametrize("size", range(1, 12))
def test_pages_cover_every_server_exactly_once(full: Any, size: int) -> None:
    seen: list[str] = []
    pages = 0
    token: str | None = None
    while True:
        params: dict[str, Any] = {"MaxResults": size}
        if token:
            params["NextToken"] = token
        page = full.describe_servers(**params)
        pages += 1
        assert 1 <= len(page["Servers"]) <= size
        seen += names(page["Servers"])
        token = page.get("NextToken")
        if token is None:
            break
        assert pages < 20
    assert sorted(seen) == FULL and len(seen) == len(set(seen))
    assert pages == -(-len(FULL) // size)


def test_paginator(full: Any) -> None:
    paginator = full.get_paginator("describe_servers")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 3}))
    assert [len(p["Servers"]) for p in pages] == [3, 3, 3, 1]
    assert sorted(n for p in pages for n in names(p["Servers"])) == FULL
    first = paginator.paginate(PaginationConfig={"MaxItems": 4, "PageSize": 3}).build_full_result()
    assert len(first["Servers"]) == 4 and first["NextToken"]
    rest = paginator.paginate(PaginationConfig={"StartingToken": first["NextToken"],
                                                "PageSize": 3}).build_full_result()
    assert sorted(names(first["Servers"]) + names(rest["Servers"])) == FULL


def test_invalid_next_tokens(cmhost: Cmhost, client: Any, full: Any, healthy: str) -> None:
    token = full.describe_servers(MaxResults=2)["NextToken"]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    events_token = client.describe_events(ServerName=healthy, MaxResults=1)["NextToken"]
    for bad in ("garbage", "x" * 200, tampered, events_token):
        expect_error(full.describe_servers, "InvalidNextTokenException", NextToken=bad)
    # A token belongs to the query it came from: not another region, nor one server's query.
    expect_error(client.describe_servers, "InvalidNextTokenException", NextToken=token)
    expect_error(full.describe_servers, "InvalidNextTokenException", ServerName="srv-00",
                 NextToken=token)
    # The real token still works.
    assert full.describe_servers(MaxResults=2, NextToken=token)["Servers"]


def test_max_results_must_be_positive(cmhost: Cmhost, full_region: str) -> None:
    raw = unchecked_client(cmhost, full_region)
    expect_error(raw.describe_servers, "ValidationException", one_violation(violation(
        0, "maxResults", "have value greater than or equal to 1")), MaxResults=0)


def test_server_limit_and_usage(full: Any) -> None:
    err = expect_error(create_server, "LimitExceededException", client=full, name="srv-10",
                       engine="Puppet")
    assert err.response["Error"]["Message"]
    expect_error(full.describe_servers, "ResourceNotFoundException", ServerName="srv-10")
    usage = {a["Name"]: a for a in full.describe_account_attributes()["Attributes"]}
    assert usage["ServerLimit"]["Maximum"] == 10 and usage_of(full) == 10


# --- UpdateServer ----------------------------------------------------------------------------


def test_update_each_setting(client: Any, healthy: str) -> None:
    changes: list[tuple[str, Any]] = [
        ("DisableAutomatedBackup", True), ("DisableAutomatedBackup", False),
        ("BackupRetentionCount", 30), ("BackupRetentionCount", 1),
        ("BackupRetentionCount", 7), ("PreferredBackupWindow", "00:00"),
        ("PreferredBackupWindow", "Sun:23:59"), ("PreferredMaintenanceWindow", "Thu:03:00"),
    ]
    for field, value in changes:
        before = client.describe_servers(ServerName=healthy)["Servers"][0]
        updated = client.update_server(ServerName=healthy, **{field: value})["Server"]
        described = client.describe_servers(ServerName=healthy)["Servers"][0]
        assert updated[field] == value and described[field] == value, field
        for other in set(SETTINGS) - {field}:
            assert described[other] == before[other], (field, other)
        assert described["Status"] == "HEALTHY"


def test_update_several_settings_at_once(client: Any, healthy: str) -> None:
    wanted = {"DisableAutomatedBackup": True, "BackupRetentionCount": 12,
              "PreferredBackupWindow": "Fri:01:15", "PreferredMaintenanceWindow": "Wed:22:00"}
    server = client.update_server(ServerName=healthy, **wanted)["Server"]
    described = client.describe_servers(ServerName=healthy)["Servers"][0]
    for field, value in wanted.items():
        assert server[field] == value and described[field] == value
    unchanged = client.update_server(ServerName=healthy)["Server"]
    assert {f: unchanged[f] for f in SETTINGS} == wanted


def test_update_validation(cmhost: Cmhost, client: Any, healthy: str) -> None:
    before = client.describe_servers(ServerName=healthy)["Servers"][0]
    for value, rule in ((0, "greater than or equal to 1"), (-1, "greater than or equal to 1"),
                        (31, "less than or equal to 30")):
        expect_error(client.update_server, "ValidationException", one_violation(violation(
            value, "backupRetentionCount", f"have value {rule}")),
            ServerName=healthy, BackupRetentionCount=value)
    for field in ("PreferredBackupWindow", "PreferredMaintenanceWindow"):
        path = field[0].lower() + field[1:]
        expect_error(client.update_server, "ValidationException", one_violation(violation(
            "Tue:24:00", path, f"satisfy regular expression pattern: {WINDOW_PATTERN}")),
            ServerName=healthy, **{field: "Tue:24:00"})
    raw = unchecked_client(cmhost)
    expect_error(raw.update_server, "ValidationException", one_violation(violation(
        None, "serverName", "not be null")), BackupRetentionCount=2)
    expect_error(raw.update_server, "ValidationException", one_violation(violation(
        "2", "backupRetentionCount", "be of type integer")),
        ServerName=healthy, BackupRetentionCount="2")
    assert client.describe_servers(ServerName=healthy)["Servers"][0] == before


def test_update_unknown_server(client: Any) -> None:
    err = expect_error(client.update_server, "ResourceNotFoundException", ServerName="nobody",
                       BackupRetentionCount=2)
    assert "nobody" in err.response["Error"]["Message"]


def test_update_refused_while_creating(client: Any) -> None:
    before = quick_server(client, "upd-creating")
    expect_error(client.update_server, "InvalidStateException", ServerName="upd-creating",
                 BackupRetentionCount=5)
    after = client.describe_servers(ServerName="upd-creating")["Servers"][0]
    assert after["Status"] == "CREATING"
    assert after["BackupRetentionCount"] == before["BackupRetentionCount"] == 1


def test_update_refused_while_deleting(cmhost: Cmhost, client: Any) -> None:
    quick_server(client, "upd-deleting")
    make_healthy(cmhost)
    client.delete_server(ServerName="upd-deleting")
    expect_error(client.update_server, "InvalidStateException", ServerName="upd-deleting",
                 DisableAutomatedBackup=True)
    assert status_of(client, "upd-deleting") == "DELETING"
    finish_deletions(cmhost)


# --- DeleteServer ----------------------------------------------------------------------------


def test_delete_lifecycle(cmhost: Cmhost, client: Any) -> None:
    arn = quick_server(client, "doomed", Tags=[{"Key": "k", "Value": "v"}])["ServerArn"]
    make_healthy(cmhost)
    response = client.delete_server(ServerName="doomed")
    assert set(response) == {"ResponseMetadata"}
    assert status_of(client, "doomed") == "DELETING"
    newest = [e["Message"].lower() for e in events_of(client, "doomed")]
    assert any("deletion started" in m for m in newest[:newest.index(
        next(m for m in newest if "online" in m))])
    expect_error(client.delete_server, "InvalidStateException", ServerName="doomed")
    cmhost.advance(DELETING_SECONDS / 2)
    assert status_of(client, "doomed") == "DELETING"
    cmhost.advance(DELETING_SECONDS / 2 + 1)
    expect_error(client.describe_servers, "ResourceNotFoundException", ServerName="doomed")
    assert "doomed" not in names(client.describe_servers()["Servers"])
    expect_error(client.describe_events, "ResourceNotFoundException", ServerName="doomed")
    expect_error(client.list_tags_for_resource, "ResourceNotFoundException", ResourceArn=arn)
    expect_error(client.delete_server, "ResourceNotFoundException", ServerName="doomed")


def test_delete_while_creating(cmhost: Cmhost, client: Any) -> None:
    quick_server(client, "too-early")
    expect_error(client.delete_server, "ValidationException",
                 "Cannot delete the server 'too-early'. The current operation on the server is "
                 "still in progress.", ServerName="too-early")
    assert status_of(client, "too-early") == "CREATING"
    make_healthy(cmhost)
    client.delete_server(ServerName="too-early")
    finish_deletions(cmhost)
    expect_error(client.describe_servers, "ResourceNotFoundException", ServerName="too-early")


def test_delete_unknown_or_invalid(cmhost: Cmhost, client: Any) -> None:
    err = expect_error(client.delete_server, "ResourceNotFoundException", ServerName="ghost")
    assert "ghost" in err.response["Error"]["Message"]
    expect_error(client.delete_server, "ValidationException", one_violation(violation(
        "9lives", "serverName", f"satisfy regular expression pattern: {SERVER_NAME_PATTERN}")),
        ServerName="9lives")
    expect_error(unchecked_client(cmhost).delete_server, "ValidationException",
                 one_violation(violation(None, "serverName", "not be null")))


def test_name_reused_after_deletion(cmhost: Cmhost, client: Any) -> None:
    old = quick_server(client, "phoenix", Tags=[{"Key": "generation", "Value": "1"}])
    make_healthy(cmhost)
    client.delete_server(ServerName="phoenix")
    expect_error(create_server, "ResourceAlreadyExistsException", client=client, name="phoenix")
    finish_deletions(cmhost)
    new = create_server(client, "phoenix", "Puppet")
    assert new["ServerArn"] != old["ServerArn"] and new["Endpoint"] != old["Endpoint"]
    assert new["Status"] == "CREATING" and new["Engine"] == "Puppet"
    assert client.list_tags_for_resource(ResourceArn=new["ServerArn"])["Tags"] == []
    messages = [e["Message"].lower() for e in events_of(client, "phoenix")]
    assert not any("deletion" in m or "online" in m for m in messages), messages


def test_limit_frees_up_after_a_deletion(cmhost: Cmhost, full: Any) -> None:
    make_healthy(cmhost)
    full.delete_server(ServerName="srv-04")
    finish_deletions(cmhost)
    usage = {a["Name"]: a for a in full.describe_account_attributes()["Attributes"]}
    assert usage["ServerLimit"]["Used"] == 9

    # Three users race for the one free place: exactly one gets it.
    def attempt(name: str) -> str:
        try:
            quick_server(full, name)
        except ClientError as exc:
            return error_code(exc)
        return name

    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(attempt, ["race-a", "race-b", "race-c"]))
    winners = [o for o in outcomes if o.startswith("race-")]
    assert len(winners) == 1 and outcomes.count("LimitExceededException") == 2, outcomes
    assert sorted(names(full.describe_servers()["Servers"])) == sorted(
        [n for n in FULL if n != "srv-04"] + winners)
    assert usage_of(full) == 10
