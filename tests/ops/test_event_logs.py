"""DescribeEvents' LogUrl (issue 14 point 4): the events of a backup, a restore, a maintenance,
a failed creation and a failed node request link to a log an HTTP GET reads; the signature
is the capability; events of steps without a log have no LogUrl; a server's step logs go
with it. And the engine version a maintenance or a restore leaves, stored in full."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ops.helpers import (
    CREATING_SECONDS,
    artifact_path,
    associate,
    attribute,
    backup_now,
    chef_attributes,
    delete_server,
    disassociate,
    healthy_server,
    quiet_windows,
    server,
    settle,
)
from tests.support import Cmhost, blocked_backup_store, create_server

UPGRADE = "CHEF_MAJOR_UPGRADE"
# Enough virtual time for a failing step's five attempts and their back-off.
GIVE_UP_SECONDS = 200.0


def server_events(client: Any, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.describe_events(ServerName=name)["ServerEvents"]
    return found


def event(client: Any, name: str, starts: str) -> dict[str, Any]:
    """The newest event of `name` whose message starts with `starts`."""
    found = [e for e in server_events(client, name) if e["Message"].startswith(starts)]
    assert found, [e["Message"] for e in server_events(client, name)]
    return found[0]


def read(url: str) -> tuple[int, str]:
    """GET `url`: (status, body)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def log_of(found: dict[str, Any]) -> str:
    """The log an event links to, read over HTTP."""
    assert "LogUrl" in found, found
    status, body = read(found["LogUrl"])
    assert status == 200, (found, body)
    return body


@pytest.fixture(scope="module")
def chef(cmhost: Cmhost, client: Any) -> dict[str, Any]:
    """A Chef server with a node and a manual backup."""
    healthy_server(cmhost, client, "lg-chef")
    assert associate(cmhost, client, "lg-chef", "web-1",
                     chef_attributes())["NodeAssociationStatus"] == "SUCCESS"
    return backup_now(cmhost, client, "lg-chef")


def test_a_backup_event_links_to_the_backup_log(client: Any, chef: dict[str, Any]) -> None:
    done = event(client, "lg-chef", f"Backup {chef['BackupId']} completed")
    assert done["LogUrl"] == chef["S3LogUrl"]
    text = log_of(done)
    assert chef["BackupId"] in text and "completed: OK" in text
    assert "LogUrl" not in event(client, "lg-chef", f"Backup {chef['BackupId']} started")


def test_events_of_steps_without_a_log_have_no_log_url(client: Any,
                                                       chef: dict[str, Any]) -> None:
    for starts in ("Server lg-chef creation started", "Engine provisioned",
                   "Server lg-chef is online", "Node web-1 associated"):
        assert "LogUrl" not in event(client, "lg-chef", starts), starts


def test_a_restore_event_links_to_the_restore_log(cmhost: Cmhost, client: Any,
                                                  chef: dict[str, Any]) -> None:
    client.restore_server(ServerName="lg-chef", BackupId=chef["BackupId"],
                          InstanceType="m5.xlarge")
    settle(cmhost)
    text = log_of(event(client, "lg-chef", f"Server restored from backup {chef['BackupId']}"))
    assert "restore of server lg-chef" in text and chef["BackupId"] in text
    assert "instance type: m5.xlarge" in text and "the server is HEALTHY" in text
    assert "LogUrl" not in event(client, "lg-chef", "Restore from backup")  # its start


def test_a_maintenance_event_links_to_the_maintenance_log(cmhost: Cmhost, client: Any,
                                                          chef: dict[str, Any]) -> None:
    client.start_maintenance(ServerName="lg-chef")
    settle(cmhost)
    assert server(client, "lg-chef")["MaintenanceStatus"] == "SUCCESS"
    taken = client.describe_backups(ServerName="lg-chef")["Backups"][0]
    assert taken["BackupType"] == "AUTOMATED"
    backup_event = event(client, "lg-chef", f"Maintenance backup {taken['BackupId']}")
    assert backup_event["LogUrl"] == taken["S3LogUrl"]
    text = log_of(event(client, "lg-chef", "Maintenance completed successfully"))
    assert "maintenance of server lg-chef" in text and taken["BackupId"] in text
    assert "engine rebuilt from backup" in text and "SUCCESS" in text
    assert "LogUrl" not in event(client, "lg-chef", "Maintenance started")


def test_a_failed_node_request_links_to_its_log(cmhost: Cmhost, client: Any,
                                                chef: dict[str, Any]) -> None:
    gone = disassociate(cmhost, client, "lg-chef", "no-such-node",
                        [{"Name": "CHEF_ORGANIZATION", "Value": "default"}])
    assert gone["NodeAssociationStatus"] == "FAILED"
    text = log_of(event(client, "lg-chef", "Node no-such-node: disassociate failed"))
    assert "disassociate node no-such-node" in text and "not associated" in text
    assert "CHEF_ORGANIZATION" in text


def test_a_tampered_link_is_refused(client: Any, chef: dict[str, Any]) -> None:
    url = event(client, "lg-chef", "Maintenance completed")["LogUrl"]
    other = event(client, "lg-chef", "Server restored")["LogUrl"]
    parts = urllib.parse.urlsplit(url)
    signature = urllib.parse.parse_qs(parts.query)["sig"][0]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    base = urllib.parse.urlunsplit(parts._replace(query=""))
    other_sig = urllib.parse.parse_qs(urllib.parse.urlsplit(other).query)["sig"][0]
    for bad in (f"{base}?sig={flipped}", base, f"{base}?sig=", f"{base}?sig={other_sig}",
                f"{base.removesuffix('.log')}x.log?sig={signature}", f"{base}?sig=%C3%A9"):
        status, body = read(bad)
        assert status == 404 and "maintenance" not in body.lower(), bad


def test_failed_restore_and_creation_link_to_their_logs(cmhost: Cmhost, client: Any) -> None:
    healthy_server(cmhost, client, "lg-bad")
    backup = backup_now(cmhost, client, "lg-bad")
    path = artifact_path(cmhost, backup["BackupId"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    client.restore_server(ServerName="lg-bad", BackupId=backup["BackupId"])
    settle(cmhost)
    text = log_of(event(client, "lg-bad", f"Restore from backup {backup['BackupId']} failed"))
    assert "checksum mismatch" in text and "the server returns to HEALTHY" in text

    create_server(client, "lg-bad-copy", BackupId=backup["BackupId"], **quiet_windows(cmhost))
    cmhost.advance(CREATING_SECONDS + 1)
    assert server(client, "lg-bad-copy")["Status"] == "FAILED"
    text = log_of(event(client, "lg-bad-copy", "Server creation failed"))
    assert "creation of server lg-bad-copy started" in text
    assert f"from backup {backup['BackupId']}" in text and "checksum mismatch" in text


def test_a_failed_backup_has_a_log(cmhost: Cmhost, client: Any) -> None:
    healthy_server(cmhost, client, "lg-blocked")
    with blocked_backup_store(cmhost):
        backup = client.create_backup(ServerName="lg-blocked")["Backup"]
        cmhost.advance(GIVE_UP_SECONDS)
    failed = client.describe_backups(BackupId=backup["BackupId"])["Backups"][0]
    assert failed["Status"] == "FAILED"
    found = event(client, "lg-blocked", f"Backup {backup['BackupId']} failed")
    assert found["LogUrl"] == failed["S3LogUrl"]
    text = log_of(found)
    assert f"backup {backup['BackupId']} failed" in text and "/tmp" not in text


def test_a_deleted_servers_step_logs_go_with_it(cmhost: Cmhost, client: Any) -> None:
    server_id = healthy_server(cmhost, client, "lg-gone")["ServerArn"].rsplit("/", 1)[1]
    manual = backup_now(cmhost, client, "lg-gone")
    client.restore_server(ServerName="lg-gone", BackupId=manual["BackupId"])
    settle(cmhost)
    restore_url = event(client, "lg-gone", "Server restored")["LogUrl"]
    backup_url = event(client, "lg-gone", f"Backup {manual['BackupId']} completed")["LogUrl"]
    step_logs = (cmhost.data_dir / "blobs" / "logs" / "000000000000" / "us-east-1" / "servers"
                 / server_id)
    assert read(restore_url)[0] == 200 and any(step_logs.iterdir())
    delete_server(cmhost, client, "lg-gone")
    # Nobody can describe the server now: its step logs are gone, while the manual backup
    # (which outlives its server) still shows its log.
    assert read(restore_url)[0] == 404
    assert read(backup_url)[0] == 200
    assert client.describe_backups(BackupId=manual["BackupId"])["Backups"][0][
        "S3LogUrl"] == backup_url
    assert not [p for p in step_logs.rglob("*") if p.is_file()]


# --- engine versions after a maintenance and a restore -----------------------------------


@pytest.fixture(scope="module")
def upgraded(cmhost: Cmhost, client: Any) -> Iterator[dict[str, Any]]:
    """A Chef 12 server with a backup of it, then upgraded to Chef 2."""
    healthy_server(cmhost, client, "lg-chef12", EngineVersion="12")
    old = backup_now(cmhost, client, "lg-chef12")
    client.start_maintenance(ServerName="lg-chef12",
                             EngineAttributes=[{"Name": UPGRADE, "Value": "true"}])
    settle(cmhost)
    yield old


def test_a_major_upgrade_stores_and_tells_the_full_version(cmhost: Cmhost, client: Any,
                                                           upgraded: dict[str, Any]) -> None:
    after = server(client, "lg-chef12")
    assert (after["MaintenanceStatus"], after["EngineVersion"]) == ("SUCCESS", "2020-07")
    done = event(client, "lg-chef12", "Maintenance completed successfully")
    assert done["Message"].endswith("the engine is now version 2020-07.")
    assert "engine upgraded: 12.11.1 -> 2020-07" in log_of(done)
    # Backups taken now carry the full version the server stores.
    assert backup_now(cmhost, client, "lg-chef12")["EngineVersion"] == "2020-07"


def test_restoring_a_chef_12_backup_makes_the_server_chef_12_again(
        cmhost: Cmhost, client: Any, upgraded: dict[str, Any]) -> None:
    assert upgraded["EngineVersion"] == "12.11.1"
    client.restore_server(ServerName="lg-chef12", BackupId=upgraded["BackupId"])
    settle(cmhost)
    after = server(client, "lg-chef12")
    assert (after["Status"], after["EngineVersion"]) == ("HEALTHY", "12.11.1")
    assert attribute(after["EngineAttributes"], "CHEF_MAJOR_UPGRADE_AVAILABLE") == "true"
    assert "engine version 2020-07 -> 12.11.1, the backup's" in log_of(
        event(client, "lg-chef12", "Server restored"))
    # ... and a Chef 12 server can be upgraded again.
    client.start_maintenance(ServerName="lg-chef12",
                             EngineAttributes=[{"Name": UPGRADE, "Value": "true"}])
    settle(cmhost)
    assert server(client, "lg-chef12")["EngineVersion"] == "2020-07"


def test_restoring_a_backup_of_the_same_version_keeps_it(cmhost: Cmhost, client: Any,
                                                         upgraded: dict[str, Any]) -> None:
    current = backup_now(cmhost, client, "lg-chef12")
    assert current["EngineVersion"] == "2020-07"
    client.restore_server(ServerName="lg-chef12", BackupId=current["BackupId"])
    settle(cmhost)
    after = server(client, "lg-chef12")
    assert after["EngineVersion"] == "2020-07"
    assert "engine version" not in log_of(event(client, "lg-chef12", "Server restored"))
