"""What a Server and a Backup show, as on the original service (issue 14): SecurityGroupIds and
SubnetIds always (a group of the server's own, its account's default subnet in the region),
the full EngineVersion everywhere, and DisassociateNode as AWS's own example sends it."""

from __future__ import annotations

import base64
import io
import re
import zipfile
from typing import Any

import pytest

from tests.integration.helpers import client_for, issue_key
from tests.ops.helpers import (
    associate,
    attribute,
    backup_now,
    chef_attributes,
    disassociate,
    events,
    expect_error,
    healthy_server,
    public_pem,
    quiet_windows,
    rsa_key,
    server,
    settle,
)
from tests.support import Cmhost, create_server

SG = re.compile(r"sg-[0-9a-f]{17}")
SUBNET = re.compile(r"subnet-[0-9a-f]{17}")
NETWORK = ("SecurityGroupIds", "SubnetIds")


def _network(shown: dict[str, Any]) -> tuple[list[str], list[str]]:
    return shown["SecurityGroupIds"], shown["SubnetIds"]


def _own_network(shown: dict[str, Any]) -> tuple[str, str]:
    """The one group and the one subnet cmhost chose for a server that named none."""
    groups, subnets = _network(shown)
    assert len(groups) == 1 and SG.fullmatch(groups[0]), groups
    assert len(subnets) == 1 and SUBNET.fullmatch(subnets[0]), subnets
    return groups[0], subnets[0]


# --- SecurityGroupIds and SubnetIds ------------------------------------------------------


def test_a_server_that_named_none_shows_both_everywhere(cmhost: Cmhost, client: Any) -> None:
    created = healthy_server(cmhost, client, "nw-one")
    group, subnet = _own_network(created)
    for shown in (server(client, "nw-one"),
                  client.update_server(ServerName="nw-one", BackupRetentionCount=2)["Server"],
                  client.describe_servers()["Servers"][0]):
        assert _network(shown) == ([group], [subnet])
    backup = backup_now(cmhost, client, "nw-one")  # copied into its backups
    assert _network(backup) == ([group], [subnet])
    maintained = client.start_maintenance(ServerName="nw-one")["Server"]
    assert _network(maintained) == ([group], [subnet])
    settle(cmhost)

    # Another server of the account, same region: the same default subnet, its own group.
    other_group, other_subnet = _own_network(create_server(client, "nw-two"))
    assert (other_group != group, other_subnet) == (True, subnet)


def test_the_default_subnet_is_the_accounts_in_the_region(cmhost: Cmhost, client: Any) -> None:
    home = _own_network(server(client, "nw-one"))[1]
    west = cmhost.client(region="eu-west-1")
    first = _own_network(create_server(west, "nw-west-1"))[1]
    second = _own_network(create_server(west, "nw-west-2"))[1]
    assert first == second != home
    elsewhere = client_for(cmhost, issue_key(cmhost, "222222222222"))
    assert _own_network(create_server(elsewhere, "nw-one"))[1] not in (home, first)


@pytest.mark.parametrize(("named", "keeps"), [
    ({"SecurityGroupIds": ["sg-0123456789abcdef0", "sg-1a24c270"]}, "SecurityGroupIds"),
    ({"SubnetIds": ["subnet-49436a18"]}, "SubnetIds"),
    ({"SecurityGroupIds": ["sg-1a24c270"], "SubnetIds": ["subnet-49436a18"]}, None),
])
def test_named_ids_are_kept_each_default_on_its_own(client: Any, named: dict[str, list[str]],
                                                    keeps: str | None) -> None:
    """As the reference says: groups named without subnets go in the default subnet; subnets
    named without groups get a new group."""
    home_subnet = _own_network(server(client, "nw-one"))[1]
    name = f"nw-named-{len(named)}-{keeps or 'both'}".lower()
    created = create_server(client, name, **named)
    described = server(client, name)
    for key in NETWORK:
        assert described[key] == created[key], key
        if key in named:
            assert created[key] == named[key], key
    if "SubnetIds" not in named:
        assert created["SubnetIds"] == [home_subnet]
    if "SecurityGroupIds" not in named:
        assert len(created["SecurityGroupIds"]) == 1
        assert SG.fullmatch(created["SecurityGroupIds"][0])


def test_a_server_made_from_a_backup_gets_a_group_of_its_own(cmhost: Cmhost,
                                                             client: Any) -> None:
    backup = client.describe_backups(ServerName="nw-one")["Backups"][0]
    made = create_server(client, "nw-from-backup", BackupId=backup["BackupId"],
                         **quiet_windows(cmhost))
    group, subnet = _own_network(made)
    assert group not in backup["SecurityGroupIds"]
    assert [subnet] == backup["SubnetIds"]


# --- EngineVersion -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vclient(cmhost: Cmhost) -> Any:
    """A region of their own for these servers (an account has 10 per region)."""
    return cmhost.client(region="us-west-2")


def _kit_readme(created: dict[str, Any]) -> str:
    kit = attribute(created["EngineAttributes"], "CHEF_STARTER_KIT") or attribute(
        created["EngineAttributes"], "PUPPET_STARTER_KIT")
    assert kit
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(kit)))
    return archive.read(next(n for n in archive.namelist() if n.endswith("README.md"))).decode()


@pytest.mark.parametrize(("engine", "version", "full"), [
    ("Chef", None, "2020-07"),
    ("ChefAutomate", "2", "2020-07"),
    ("Puppet", None, "2019-08"),
    ("Puppet", "2019", "2019-08"),
    ("Puppet", "2017", "2017-03"),
    ("Chef", "12", "12.11.1"),
])
def test_the_full_engine_version_is_shown_everywhere(cmhost: Cmhost, vclient: Any, engine: str,
                                                     version: str | None, full: str) -> None:
    name = f"ver-{engine}-{version or 'default'}".lower()
    extra = {"EngineVersion": version} if version else {}
    created = healthy_server(cmhost, vclient, name, engine, **extra)
    assert created["EngineVersion"] == full
    assert re.search(rf"engine {engine}\s+{re.escape(full)}\)", _kit_readme(created))
    assert server(vclient, name)["EngineVersion"] == full
    assert backup_now(cmhost, vclient, name)["EngineVersion"] == full
    assert any(f"({engine} {full}, " in m for m in events(vclient, name))


def test_chef_12_backups_major_upgrade_and_servers_made_from_backups_agree(
        cmhost: Cmhost, vclient: Any) -> None:
    twelve = backup_now(cmhost, vclient, "ver-chef-12")
    assert twelve["EngineVersion"] == "12.11.1"
    # A server made from a Chef 12 backup is a Chef 12 server, unless told otherwise...
    made = create_server(vclient, "ver-from-12", BackupId=twelve["BackupId"],
                         **quiet_windows(cmhost))
    assert made["EngineVersion"] == "12.11.1"
    assert create_server(vclient, "ver-from-12-named", BackupId=twelve["BackupId"],
                         EngineVersion="12")["EngineVersion"] == "12.11.1"
    # ...and it cannot be told to be another (StartMaintenance upgrades it).
    message = expect_error(create_server, "ValidationException", client=vclient,
                           name="ver-from-12-as-2", BackupId=twelve["BackupId"],
                           EngineVersion="2")["Message"]
    assert "12.11.1" in message
    expect_error(vclient.describe_servers, "ResourceNotFoundException",
                 ServerName="ver-from-12-as-2")

    vclient.start_maintenance(ServerName="ver-chef-12",
                             EngineAttributes=[{"Name": "CHEF_MAJOR_UPGRADE", "Value": "true"}])
    settle(cmhost)
    upgraded = server(vclient, "ver-chef-12")
    assert (upgraded["Status"], upgraded["EngineVersion"]) == ("HEALTHY", "2020-07")
    assert not attribute(upgraded["EngineAttributes"], "CHEF_MAJOR_UPGRADE_AVAILABLE")
    after = backup_now(cmhost, vclient, "ver-chef-12")
    assert after["EngineVersion"] == "2020-07"
    assert create_server(vclient, "ver-from-upgraded", BackupId=after["BackupId"])[
        "EngineVersion"] == "2020-07"


# --- DisassociateNode as in AWS's example ---------------------------------------------------


@pytest.mark.parametrize("spelling", ["CHEF_NODE_PUBLIC_KEY", "CHEF_AUTOMATE_NODE_PUBLIC_KEY"])
def test_disassociate_node_takes_the_nodes_public_key(cmhost: Cmhost, client: Any,
                                                      spelling: str) -> None:
    node = f"web-{spelling.count('AUTOMATE')}"
    key = public_pem(rsa_key())
    with_key = [{"Name": "CHEF_ORGANIZATION", "Value": "default"},
                {"Name": "CHEF_NODE_PUBLIC_KEY", "Value": key}]
    assert associate(cmhost, client, "nw-one", node, with_key)["NodeAssociationStatus"] == \
        "SUCCESS"
    # A value that is no public key is refused, and the node stays.
    bad = [with_key[0], {"Name": spelling, "Value": "Public_key_contents"}]
    message = expect_error(client.disassociate_node, "ValidationException", ServerName="nw-one",
                           NodeName=node, EngineAttributes=bad)["Message"]
    assert spelling in message and "public key" in message
    # As the example sends it: the organization and the node's key.
    gone = disassociate(cmhost, client, "nw-one", node,
                        [with_key[0], {"Name": spelling, "Value": key}])
    assert gone["NodeAssociationStatus"] == "SUCCESS"
    # Really gone: disassociating it again fails.
    again = disassociate(cmhost, client, "nw-one", node, chef_attributes()[:1])
    assert again["NodeAssociationStatus"] == "FAILED"
