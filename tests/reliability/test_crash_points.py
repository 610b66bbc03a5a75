"""Crashes at exact points of a job: the worker SIGKILLs itself at a chosen call (see
faults/sitecustomize.py), a new worker takes over, and the operation must end as if the
crash had not happened: finished once, nothing half-done, nothing left behind.

The random harness (test_crash.py) finds these windows only by luck; here each is hit on
purpose. The API runs in its own process, so every request gets its answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.reliability import invariants
from tests.reliability.dbprobe import DbProbe
from tests.reliability.material import chef_public_key, puppet_csr
from tests.reliability.split import SplitCmhost, poll
from tests.support import create_server


@dataclass
class Setup:
    split: SplitCmhost
    client: Any
    probe: DbProbe
    reported: set[str] = field(default_factory=set)  # leftovers an earlier test reported

    def server(self, name: str) -> dict[str, Any]:
        return dict(self.client.describe_servers(ServerName=name)["Servers"][0])

    def crash_during(self, crash_at: str, action: Any) -> Any:
        """Run `action()` while the worker is armed to crash at `crash_at`; wait for the
        crash, start a clean worker and let everything finish. Returns what action returned."""
        self.split.stop_worker()
        self.split.start_worker(crash_at)
        result = action()
        self.split.wait_for_crash()
        self.split.start_worker()
        self.settle()
        return result

    def settle(self) -> None:
        # On PostgreSQL the dead worker's lease must run out (300 virtual seconds).
        self.split.cm.advance(400)

        def done() -> bool:
            servers = self.client.describe_servers()["Servers"]
            backups = self.client.describe_backups()["Backups"]
            return not invariants.settled_problems(servers, backups) and not self.probe.rows(
                "SELECT token FROM node_associations WHERE status = 'IN_PROGRESS'")
        poll(done)

    def check_clean(self) -> None:
        """Nothing stuck, damaged, doubled or left behind."""
        servers = self.client.describe_servers()["Servers"]
        problems = invariants.settled_problems(servers, self.client.describe_backups()["Backups"])
        for server in servers:
            events = self.client.describe_events(ServerName=server["ServerName"])["ServerEvents"]
            problems += invariants.event_problems(server, [e["Message"] for e in events])
        problems += self.probe.integrity_problems()
        problems += self.probe.artifact_problems()[0]
        left = {f"{kind}: {name}" for kind, names in self.probe.leftovers().items()
                for name in names}
        problems += sorted(left - self.reported)
        self.reported |= left
        assert not problems, problems


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    split = SplitCmhost(Path(tmp_path_factory.mktemp("crashpoints"))).start()
    cm = split.cm
    client = cm.client()
    probe = DbProbe(cm.database_url, cm.data_dir, cm.master_key_file)
    ready = Setup(split, client, probe)
    for name, engine in (("chef", "Chef"), ("puppet", "Puppet")):
        create_server(client, name, engine, DisableAutomatedBackup=True,
                      PreferredMaintenanceWindow=_far_window(cm.get("/_cmhost/clock")["now"]))
    ready.settle()
    assert {s["Status"] for s in client.describe_servers()["Servers"]} == {"HEALTHY"}
    yield ready
    probe.close()
    split.stop()


def _far_window(now: float) -> str:
    import datetime as dt

    moment = dt.datetime.fromtimestamp(now, dt.UTC) + dt.timedelta(days=3, hours=12)
    return f"{('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')[moment.weekday()]}:{moment:%H}:00"


def _node_status(setup: Setup, server: str, token: str) -> str:
    return str(setup.client.describe_node_association_status(
        ServerName=server, NodeAssociationStatusToken=token)["NodeAssociationStatus"])


def test_disassociate_killed_after_the_engine_forgot_the_node_reports_success(
        setup: Setup) -> None:
    """The node was removed, then the worker died before recording it: the retried step must
    not answer FAILED ("not associated") for a disassociation that took place."""
    client = setup.client
    token = client.associate_node(ServerName="chef", NodeName="gone-node", EngineAttributes=[
        {"Name": "CHEF_NODE_PUBLIC_KEY", "Value": chef_public_key(0)}])["NodeAssociationStatusToken"]
    setup.settle()
    assert _node_status(setup, "chef", token) == "SUCCESS"
    token = setup.crash_during(
        "cmhost.engines.embedded_nodes:disassociate:after:1",
        lambda: client.disassociate_node(ServerName="chef", NodeName="gone-node")[
            "NodeAssociationStatusToken"])
    assert _node_status(setup, "chef", token) == "SUCCESS"
    setup.check_clean()


@pytest.mark.slow
def test_puppet_association_killed_after_signing_gives_the_registered_certificate(
        setup: Setup) -> None:
    client = setup.client
    token = setup.crash_during(
        "cmhost.engines.embedded_nodes:associate_puppet:after:1",
        lambda: client.associate_node(ServerName="puppet", NodeName="agent-1", EngineAttributes=[
            {"Name": "PUPPET_NODE_CSR", "Value": puppet_csr("agent-1")}])[
            "NodeAssociationStatusToken"])
    answer = client.describe_node_association_status(ServerName="puppet",
                                                     NodeAssociationStatusToken=token)
    assert answer["NodeAssociationStatus"] == "SUCCESS"
    cert = next(a["Value"] for a in answer["EngineAttributes"] if a["Name"] == "PUPPET_NODE_CERT")
    server_id = setup.server("puppet")["ServerArn"].rsplit("/", 1)[-1]
    record = (setup.probe.engines / server_id / "nodes" / "agent-1.json").read_text()
    assert cert.strip() in record.replace("\\n", "\n")
    setup.check_clean()


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", [
    "cmhost.service.artifacts:store_artifact:after:1",  # stored, not yet recorded
    "cmhost.engines.embedded:EmbeddedDriver.backup:after:1",  # archived, not yet stored
])
def test_backup_killed_mid_job_completes_once(setup: Setup, crash_at: str) -> None:
    client = setup.client
    backup_id = setup.crash_during(
        crash_at, lambda: client.create_backup(ServerName="chef")["Backup"]["BackupId"])
    backup = client.describe_backups(BackupId=backup_id)["Backups"][0]
    assert backup["Status"] == "OK"
    setup.check_clean()


def test_backup_killed_before_its_artifact_is_renamed_leaves_no_temporary_blob(
        setup: Setup) -> None:
    """A crash inside the blob store's write (temporary file written, not yet renamed): the
    retried backup stores its artifact, and the half-done write must not stay behind."""
    client = setup.client
    backup_id = setup.crash_during(
        "os:replace:before:1:cmhost.storage.blobs",
        lambda: client.create_backup(ServerName="puppet")["Backup"]["BackupId"])
    assert client.describe_backups(BackupId=backup_id)["Backups"][0]["Status"] == "OK"
    setup.check_clean()  # includes: no temporary file left in the blob store


def _fresh_backup(setup: Setup, server: str) -> str:
    backup_id = str(setup.client.create_backup(ServerName=server)["Backup"]["BackupId"])
    setup.settle()
    return backup_id


@pytest.mark.parametrize("crash_at", [
    "os:rename:before:1:cmhost.engines.statedir",  # between the two renames: no state dir
    pytest.param("cmhost.engines.embedded:EmbeddedDriver.restore:after:1",  # not recorded
                 marks=pytest.mark.slow),
])
def test_restore_killed_mid_swap_recovers(setup: Setup, crash_at: str) -> None:
    client = setup.client
    backup_id = _fresh_backup(setup, "chef")
    setup.crash_during(crash_at, lambda: client.restore_server(ServerName="chef",
                                                               BackupId=backup_id))
    server = setup.server("chef")
    assert server["Status"] == "HEALTHY", server
    server_id = server["ServerArn"].rsplit("/", 1)[-1]
    assert (setup.probe.engines / server_id / "engine.json").is_file()
    setup.check_clean()


@pytest.mark.parametrize("crash_at", [
    "cmhost.engines.embedded:EmbeddedDriver.maintain:after:1",
    pytest.param("cmhost.service.artifacts:store_artifact:after:1", marks=pytest.mark.slow),
])
def test_maintenance_killed_mid_job_completes_once(setup: Setup, crash_at: str) -> None:
    client = setup.client
    before = {b["BackupId"] for b in client.describe_backups(ServerName="puppet")["Backups"]}
    setup.crash_during(crash_at, lambda: client.start_maintenance(ServerName="puppet"))
    server = setup.server("puppet")
    assert (server["Status"], server["MaintenanceStatus"]) == ("HEALTHY", "SUCCESS"), server
    added = [b for b in client.describe_backups(ServerName="puppet")["Backups"]
             if b["BackupId"] not in before]
    assert len(added) == 1 and added[0]["BackupType"] == "AUTOMATED", added
    setup.check_clean()


@pytest.mark.slow
def test_engine_attribute_update_killed_mid_job_completes_once(setup: Setup) -> None:
    client = setup.client
    setup.crash_during(
        "cmhost.engines.embedded:EmbeddedDriver.provision:after:1",
        lambda: client.update_server_engine_attributes(
            ServerName="chef", AttributeName="CHEF_PIVOTAL_KEY",
            AttributeValue=chef_public_key(1)))
    assert setup.server("chef")["Status"] == "HEALTHY"
    setup.check_clean()


@pytest.mark.slow
def test_create_and_delete_killed_mid_job_complete_once(setup: Setup) -> None:
    client = setup.client
    setup.crash_during(
        "cmhost.engines.embedded:EmbeddedDriver.provision:after:1",
        lambda: create_server(client, "short-lived", "Chef", DisableAutomatedBackup=True))
    server = setup.server("short-lived")
    assert server["Status"] == "HEALTHY"
    setup.check_clean()
    setup.crash_during("cmhost.engines.embedded:EmbeddedDriver.destroy:after:1",
                       lambda: client.delete_server(ServerName="short-lived"))
    assert "short-lived" not in {s["ServerName"] for s in client.describe_servers()["Servers"]}
    server_id = server["ServerArn"].rsplit("/", 1)[-1]
    assert not (setup.probe.engines / server_id).exists()
    setup.check_clean()
