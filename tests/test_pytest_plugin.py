"""The pytest plugin (entry point pytest11 `cmhost`), run through pytester from projects that
hold nothing but their test files (and, where said, a pytest.ini or a conftest.py): the
README's example against a cmhost the plugin starts, the fixtures against a running cmhost
given by --cmhost-url, the ini options, and a session that uses no fixture starts nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cmhost.testing.sdk import export_sdk_model, sdk_session
from tests.support import Cmhost

# The subject is not the database: CI runs it in its SQLite pass only (.ci/run).
pytestmark = pytest.mark.once

pytest_plugins = ["pytester"]

# The README's example, as it is printed there.
README_EXAMPLE = '''
def test_a_failed_backup_is_reported(opsworkscm, wait_until_healthy, cmhost_faults, cmhost_clock):
    opsworkscm.create_server(ServerName="web", Engine="Puppet", InstanceType="m5.large",
                             InstanceProfileArn="arn:aws:iam::111122223333:instance-profile/cm",
                             ServiceRoleArn="arn:aws:iam::111122223333:role/cm")
    wait_until_healthy("web")
    cmhost_faults.fail_job("backup", "S3 upload failed")
    backup_id = opsworkscm.create_backup(ServerName="web")["Backup"]["BackupId"]
    cmhost_clock.advance(1)
    [backup] = opsworkscm.describe_backups(BackupId=backup_id)["Backups"]
    assert (backup["Status"], backup["StatusDescription"]) == ("FAILED", "S3 upload failed")
'''

SERVER = '''
SERVER = dict(Engine="Chef", InstanceType="m5.large",
              InstanceProfileArn="arn:aws:iam::111122223333:instance-profile/cm",
              ServiceRoleArn="arn:aws:iam::111122223333:role/cm")
'''

FIXTURES = SERVER + '''
import os
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

LEFT = []


def test_each_test_has_an_account_of_its_own(opsworkscm, cmhost_account):
    assert len(cmhost_account.id) == 12 and cmhost_account.id != "000000000000"
    assert opsworkscm.describe_servers()["Servers"] == []
    opsworkscm.create_server(ServerName="mine", **SERVER)


def test_the_next_test_sees_none_of_it(opsworkscm):
    assert opsworkscm.describe_servers()["Servers"] == []


def test_the_clock_moves_on_command(cmhost_clock):
    before = cmhost_clock.now()
    assert cmhost_clock.mode == "virtual"
    assert cmhost_clock.advance(86400) - before >= 86400


def test_faults_apply_to_the_test_s_account(opsworkscm, cmhost_faults, cmhost_server):
    fault = cmhost_faults.error("ThrottlingException", "Slow down",
                                operation="DescribeServers")
    assert fault["account"] == cmhost_faults.account
    assert [f["id"] for f in cmhost_faults.list()] == [fault["id"]]
    cmhost_server.new_account().client().describe_servers()  # another account
    with pytest.raises(ClientError) as info:
        opsworkscm.describe_servers()
    assert info.value.response["Error"]["Code"] == "ThrottlingException"
    LEFT.append(cmhost_faults.latency(5, operation="DescribeBackups")["id"])


def test_a_test_s_faults_are_gone_after_it(cmhost_faults):
    assert LEFT and not [f for f in cmhost_faults.list() if f["id"] in LEFT]


def test_wait_until_healthy_moves_the_clock(opsworkscm, wait_until_healthy, cmhost_faults,
                                            cmhost_clock):
    started = time.monotonic()
    opsworkscm.create_server(ServerName="held", **SERVER)
    assert wait_until_healthy("held")["Status"] == "HEALTHY"
    cmhost_faults.hold_status("CONNECTION_LOST", 7200, server_name="held")
    assert opsworkscm.describe_servers()["Servers"][0]["Status"] == "CONNECTION_LOST"
    before = cmhost_clock.now()
    assert wait_until_healthy("held")["Status"] == "HEALTHY"
    assert cmhost_clock.now() - before >= 7000
    assert time.monotonic() - started < 60


def test_failed_creation_is_reported_by_wait_until_healthy(opsworkscm, wait_until_healthy,
                                                           cmhost_faults):
    cmhost_faults.fail_job("create_server", "no capacity")
    opsworkscm.create_server(ServerName="doomed", **SERVER)
    with pytest.raises(AssertionError, match="doomed is FAILED.*no capacity"):
        wait_until_healthy("doomed")


def test_the_clients_use_cmhost_s_model(opsworkscm):
    # conftest.py says botocore has no opsworkscm model: the plugin exported cmhost's.
    first = os.environ["AWS_DATA_PATH"].split(os.pathsep)[0]
    assert (Path(first) / "opsworkscm" / "2016-11-01" / "service-2.json").is_file()
    assert opsworkscm.can_paginate("describe_events")
'''

NO_MODEL_CONFTEST = '''
import cmhost.testing.sdk

cmhost.testing.sdk.botocore_has_opsworkscm = lambda: False
'''

INI_OPTIONS = SERVER + '''
import pytest


def test_the_ini_options_reach_the_started_cmhost(opsworkscm, wait_until_healthy,
                                                  cmhost_clock, cmhost_server):
    opsworkscm.create_server(ServerName="slow", **SERVER)
    cmhost_clock.advance(300)
    assert opsworkscm.describe_servers()["Servers"][0]["Status"] == "CREATING"
    assert wait_until_healthy("slow")["Status"] == "HEALTHY"
    with pytest.raises(opsworkscm.exceptions.LimitExceededException):
        opsworkscm.create_server(ServerName="second", **SERVER)
    assert (cmhost_server.workdir / "cmhost.log").is_file()
'''


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmhost]:
    """A cmhost the inner sessions reach by --cmhost-url, shared by them."""
    started = Cmhost(Path(tmp_path_factory.mktemp("external"))).start()
    yield started
    started.stop()


def test_the_readme_example_runs_in_a_project_of_one_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_backups=README_EXAMPLE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=1)


def test_the_fixtures_against_a_running_cmhost(pytester: pytest.Pytester,
                                               running: Cmhost) -> None:
    pytester.makepyfile(test_fixtures=FIXTURES)
    pytester.makeconftest(NO_MODEL_CONFTEST)
    # The provisioning time is the running cmhost's (tests.support's 60 s, not cmhost's 5):
    # wait_until_healthy moves the clock to its end.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cmhost-url",
                                           running.url, "--cmhost-provisioning-seconds", "60",
                                           timeout=300)
    result.assert_outcomes(passed=8)
    assert running.proc is not None and running.proc.poll() is None  # not stopped by them


def test_ini_options_shape_the_started_cmhost(pytester: pytest.Pytester,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMHOST_CLOCK", "real")  # the shell's settings do not reach it
    pytester.makeini("[pytest]\ncmhost_provisioning_seconds = 600\n"
                     "cmhost_serve_args = --server-limit 1\n")
    pytester.makepyfile(test_ini=INI_OPTIONS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=1)


def test_a_session_without_the_fixtures_starts_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain(request):\n"
                                   "    assert request.config.pluginmanager.has_plugin("
                                   "'cmhost')\n")
    basetemp = pytester.path / "basetemp"
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--basetemp",
                                          str(basetemp))
    result.assert_outcomes(passed=1)
    assert not basetemp.exists() or not list(basetemp.glob("cmhost*"))


def test_an_exported_model_serves_a_session(tmp_path: Path, running: Cmhost) -> None:
    """What the plugin does when botocore has no opsworkscm: its session loads cmhost's."""
    session = sdk_session(export_sdk_model(tmp_path))
    loader = session._session.get_component("data_loader")
    _, path = loader.load_data_with_path("opsworkscm/2016-11-01/service-2")
    assert Path(path + ".json").resolve() == (
        tmp_path / "opsworkscm" / "2016-11-01" / "service-2.json").resolve()
    client = session.client("opsworkscm", region_name="us-east-1", endpoint_url=running.url,
                            aws_access_key_id="test", aws_secret_access_key="test")
    assert "Servers" in client.describe_servers()
