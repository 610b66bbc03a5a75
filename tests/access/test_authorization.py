"""Users' policies decide their calls, through boto3 against a cmhost: a read-only user, a user
confined to its team's servers, an explicit Deny, tag and IP conditions, the denial message
AWS gives, and a denied call spending no throttle token and changing nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.access.helpers import (
    allow,
    assert_denied,
    client_of,
    denied_message,
    deny,
    eventually,
    make_user,
    policy,
    policy_file,
    refused,
    user_client,
    user_key,
)
from tests.support import Cmhost, create_server, error_code

ACCOUNT = "210000000001"
SERVER = f"arn:aws:opsworks-cm:us-east-1:{ACCOUNT}:server"


@pytest.fixture(scope="module")
def root(cmhost: Cmhost) -> Any:
    """The account's root key (a key made with only --account) and its servers."""
    client = client_of(cmhost, user_key(cmhost, ACCOUNT))
    params = {"InstanceProfileArn": f"arn:aws:iam::{ACCOUNT}:instance-profile/x",
              "ServiceRoleArn": f"arn:aws:iam::{ACCOUNT}:role/x"}
    create_server(client, "team-a-web", Tags=[{"Key": "team", "Value": "a"}], **params)
    create_server(client, "team-b-web", Tags=[{"Key": "team", "Value": "b"}], **params)
    cmhost.advance(61)  # HEALTHY
    return client


def _arn(root: Any, name: str) -> str:
    return str(root.describe_servers(ServerName=name)["Servers"][0]["ServerArn"])


def test_a_read_only_user_describes_and_is_denied_changes(cmhost: Cmhost, root: Any) -> None:
    ro = user_client(cmhost, ACCOUNT, "monitor", managed=("AWSOpsWorksCMReadOnlyAccess",))
    assert {s["ServerName"] for s in ro.describe_servers()["Servers"]} == {"team-a-web",
                                                                          "team-b-web"}
    ro.describe_account_attributes()
    ro.list_tags_for_resource(ResourceArn=_arn(root, "team-a-web"))
    assert_denied(refused(ro.delete_server, ServerName="team-a-web"), denied_message(
        ACCOUNT, "monitor", "DeleteServer", _arn(root, "team-a-web")))
    assert_denied(refused(create_server, client=ro, name="ro-new"), denied_message(
        ACCOUNT, "monitor", "CreateServer", f"{SERVER}/ro-new/*"))
    # Nothing changed.
    assert root.describe_servers(ServerName="team-a-web")["Servers"][0]["Status"] == "HEALTHY"
    assert error_code(refused(root.describe_servers, ServerName="ro-new")) == \
        "ResourceNotFoundException"


def test_a_user_confined_to_its_teams_servers(cmhost: Cmhost, root: Any) -> None:
    team_a = user_client(cmhost, ACCOUNT, "team-a-admin", document=policy(
        allow("opsworks-cm:*", f"arn:aws:opsworks-cm:*:{ACCOUNT}:server/team-a-*"),
        allow("opsworks-cm:Describe*")))
    created = create_server(team_a, "team-a-db")
    assert created["ServerName"] == "team-a-db"
    team_a.update_server(ServerName="team-a-web", BackupRetentionCount=3)
    team_a.tag_resource(ResourceArn=_arn(root, "team-a-web"),
                        Tags=[{"Key": "owner", "Value": "a"}])
    assert_denied(refused(team_a.update_server, ServerName="team-b-web",
                          BackupRetentionCount=3),
                  denied_message(ACCOUNT, "team-a-admin", "UpdateServer",
                                 _arn(root, "team-b-web")))
    assert_denied(refused(team_a.tag_resource, ResourceArn=_arn(root, "team-b-web"),
                          Tags=[{"Key": "owner", "Value": "a"}]),
                  denied_message(ACCOUNT, "team-a-admin", "TagResource",
                                 _arn(root, "team-b-web")))
    assert_denied(refused(create_server, client=team_a, name="team-b-db"), denied_message(
        ACCOUNT, "team-a-admin", "CreateServer", f"{SERVER}/team-b-db/*"))
    # A team-b server that does not exist is denied, not found missing.
    assert error_code(refused(team_a.delete_server, ServerName="team-b-gone")) == \
        "AccessDeniedException"
    assert error_code(refused(team_a.delete_server, ServerName="team-a-gone")) == \
        "ResourceNotFoundException"
    cmhost.advance(61)
    team_a.delete_server(ServerName="team-a-db")
    assert root.describe_servers(ServerName="team-b-web")["Servers"][0][
        "BackupRetentionCount"] != 3


def test_an_explicit_deny_beats_an_allow(cmhost: Cmhost, root: Any) -> None:
    ops = user_client(cmhost, ACCOUNT, "operator", managed=("AWSOpsWorksCMFullAccess",),
                      document=policy(deny("opsworks-cm:DeleteServer")))
    ops.update_server(ServerName="team-b-web", PreferredBackupWindow="03:00")
    assert_denied(refused(ops.delete_server, ServerName="team-b-web"), denied_message(
        ACCOUNT, "operator", "DeleteServer", _arn(root, "team-b-web"), explicit=True))


def test_a_tag_condition_allows_only_servers_tagged_team_a(cmhost: Cmhost, root: Any) -> None:
    tagged = user_client(cmhost, ACCOUNT, "tagged", document=policy(
        allow("opsworks-cm:UpdateServer",
              Condition={"StringEquals": {"aws:ResourceTag/team": "a"}}),
        allow("opsworks-cm:CreateServer",
              Condition={"StringEquals": {"aws:RequestTag/team": "a"},
                         "ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}})))
    tagged.update_server(ServerName="team-a-web", PreferredMaintenanceWindow="Mon:04:00")
    assert_denied(refused(tagged.update_server, ServerName="team-b-web",
                          PreferredMaintenanceWindow="Mon:04:00"),
                  denied_message(ACCOUNT, "tagged", "UpdateServer", _arn(root, "team-b-web")))
    create_server(tagged, "tagged-a", Tags=[{"Key": "team", "Value": "a"}])
    for tags in ([{"Key": "team", "Value": "b"}], [],
                 [{"Key": "team", "Value": "a"}, {"Key": "cost", "Value": "x"}]):
        assert error_code(refused(create_server, client=tagged, name="tagged-b",
                                  Tags=tags)) == "AccessDeniedException", tags


def test_an_ip_address_condition(cmhost: Cmhost, root: Any) -> None:
    local = user_client(cmhost, ACCOUNT, "from-loopback", document=policy(
        allow("opsworks-cm:DescribeServers",
              Condition={"IpAddress": {"aws:SourceIp": ["127.0.0.0/8", "::1/128"]}})))
    assert local.describe_servers()["Servers"]
    office = user_client(cmhost, ACCOUNT, "from-office", document=policy(
        allow("opsworks-cm:DescribeServers",
              Condition={"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}})))
    assert error_code(refused(office.describe_servers)) == "AccessDeniedException"
    not_office = user_client(cmhost, ACCOUNT, "not-office", document=policy(
        allow("opsworks-cm:DescribeServers",
              Condition={"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}})))
    assert not_office.describe_servers()["Servers"]


def test_an_inactive_key_is_refused_and_an_active_one_works_again(cmhost: Cmhost,
                                                                  root: Any) -> None:
    make_user(cmhost, ACCOUNT, "ci", managed=("AWSOpsWorksCMReadOnlyAccess",))
    key = user_key(cmhost, ACCOUNT, "ci")
    ci = client_of(cmhost, key)
    ci.describe_servers()
    cmhost.cli("keys", "deactivate", key["AccessKeyId"], *cmhost.storage_args())
    eventually(lambda: _code(ci.describe_servers) == "UnrecognizedClientException")
    listed = json.loads(cmhost.cli("keys", "list", "--account", ACCOUNT,
                                   *cmhost.storage_args()).stdout)
    mine = next(k for k in listed if k["AccessKeyId"] == key["AccessKeyId"])
    assert mine["Status"] == "Inactive" and mine["UserName"] == "ci"
    assert mine["CreatedAt"] and mine["LastUsedAt"]  # used once: written within a second
    assert "SecretAccessKey" not in json.dumps(listed)
    cmhost.cli("keys", "activate", key["AccessKeyId"], *cmhost.storage_args())
    eventually(lambda: _code(ci.describe_servers) is None)


def _code(call: Any) -> str | None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - ClientError, in the words of the test
        return error_code(exc)
    return None


def test_a_deleted_users_keys_stop_within_seconds(cmhost: Cmhost, root: Any) -> None:
    gone = user_client(cmhost, ACCOUNT, "leaver", managed=("AWSOpsWorksCMFullAccess",))
    gone.describe_servers()
    cmhost.cli("users", "delete", "leaver", "--account", ACCOUNT, *cmhost.storage_args())
    eventually(lambda: _code(gone.describe_servers) == "UnrecognizedClientException",
               seconds=8)
    users = json.loads(cmhost.cli("users", "list", "--account", ACCOUNT,
                                  *cmhost.storage_args()).stdout)
    assert "leaver" not in {u["UserName"] for u in users}


def test_a_policy_change_takes_effect_within_seconds(cmhost: Cmhost, root: Any) -> None:
    late = user_client(cmhost, ACCOUNT, "late")
    assert error_code(refused(late.describe_servers)) == "AccessDeniedException"
    cmhost.cli("users", "attach-policy", "late", "--account", ACCOUNT, "--managed",
               "AWSOpsWorksCMReadOnlyAccess", *cmhost.storage_args())
    eventually(lambda: _code(late.describe_servers) is None, seconds=5)
    cmhost.cli("users", "detach-policy", "late", "--account", ACCOUNT, "--managed",
               "AWSOpsWorksCMReadOnlyAccess", *cmhost.storage_args())
    eventually(lambda: _code(late.describe_servers) == "AccessDeniedException", seconds=5)


def test_a_malformed_policy_is_refused_with_its_line_and_reason(cmhost: Cmhost) -> None:
    bad = policy_file(cmhost, "bad", '{\n  "Version": "2012-10-17",\n  "Statement": [{\n'
                                     '    "Effect": "Allow",\n    "Action": "opsworks-cm:*",\n'
                                     '    "Resource": "server/*"\n  }]\n}\n')
    made = cmhost.cli("users", "create", "badpolicy", "--account", ACCOUNT, "--policy",
                      str(bad), *cmhost.storage_args(), check=False)
    assert made.returncode == 2, made
    assert "policy bad is malformed: line 6: 'server/*' is not * or an ARN" in made.stderr
    users = json.loads(cmhost.cli("users", "list", "--account", ACCOUNT,
                                  *cmhost.storage_args()).stdout)
    assert "badpolicy" not in {u["UserName"] for u in users}  # nothing was created
    make_user(cmhost, ACCOUNT, "attachee")
    not_json = policy_file(cmhost, "broken", '{"Version": "2012-10-17",\n "Statement": [}')
    attached = cmhost.cli("users", "attach-policy", "attachee", "--account", ACCOUNT,
                          "--policy", str(not_json), *cmhost.storage_args(), check=False)
    assert attached.returncode == 2
    assert "policy broken is malformed: line 2: the policy is not valid JSON" in \
        attached.stderr
    unknown = cmhost.cli("users", "attach-policy", "attachee", "--account", ACCOUNT,
                         "--managed", "AdministratorAccess", *cmhost.storage_args(),
                         check=False)
    assert unknown.returncode == 2 and "no managed policy 'AdministratorAccess'" in \
        unknown.stderr


def test_at_most_two_keys_per_user_and_none_for_a_missing_user(cmhost: Cmhost) -> None:
    make_user(cmhost, ACCOUNT, "twokeys")
    first, _ = user_key(cmhost, ACCOUNT, "twokeys"), user_key(cmhost, ACCOUNT, "twokeys")
    assert first["UserName"] == "twokeys"
    third = cmhost.cli("keys", "create", "--account", ACCOUNT, "--user", "twokeys",
                       *cmhost.storage_args(), check=False)
    assert third.returncode == 2 and "has 2 access keys already" in third.stderr
    missing = cmhost.cli("keys", "create", "--account", ACCOUNT, "--user", "nobody",
                         *cmhost.storage_args(), check=False)
    assert missing.returncode == 2 and "no user nobody" in missing.stderr


def test_lookup_events_needs_cloudtrail_rights(cmhost: Cmhost, root: Any) -> None:
    make_user(cmhost, ACCOUNT, "auditor", managed=("AWSCloudTrail_ReadOnlyAccess",))
    make_user(cmhost, ACCOUNT, "ops-only", managed=("AWSOpsWorksCMFullAccess",))
    auditor = client_of(cmhost, user_key(cmhost, ACCOUNT, "auditor"), "cloudtrail")
    ops = client_of(cmhost, user_key(cmhost, ACCOUNT, "ops-only"), "cloudtrail")
    assert "Events" in auditor.lookup_events(MaxResults=1)
    exc = refused(ops.lookup_events, MaxResults=1)
    assert error_code(exc) == "AccessDeniedException"
    assert exc.response["Error"]["Message"] == (
        f"User: arn:aws:iam::{ACCOUNT}:user/ops-only is not authorized to perform: "
        "cloudtrail:LookupEvents on resource: * because no identity-based policy allows the "
        "cloudtrail:LookupEvents action")


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmhost]:
    server = Cmhost(Path(tmp_path_factory.mktemp("throttled-access")), throttle=True).start()
    yield server
    server.stop()


def test_a_denied_call_spends_no_throttle_token(throttled: Cmhost) -> None:
    account = "210000000002"
    root = client_of(throttled, user_key(throttled, account))
    create_server(root, "kept", InstanceProfileArn=f"arn:aws:iam::{account}:instance-profile/x",
                  ServiceRoleArn=f"arn:aws:iam::{account}:role/x")
    throttled.advance(61)
    ro = user_client(throttled, account, "reader", managed=("AWSOpsWorksCMReadOnlyAccess",))
    for _ in range(25):  # far past the burst of 10
        assert error_code(refused(ro.update_server, ServerName="kept",
                                  BackupRetentionCount=2)) == "AccessDeniedException"
    for _ in range(5):  # the account's UpdateServer bucket is still full
        root.update_server(ServerName="kept", BackupRetentionCount=4)
    assert root.describe_servers(ServerName="kept")["Servers"][0]["BackupRetentionCount"] == 4
