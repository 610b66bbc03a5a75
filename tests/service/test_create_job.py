"""The create job: with the provisioning time already over, a server is provisioned and
checked in one step; with time still to wait, the health check is a step of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cmhost.app import CmhostApp
from cmhost.config import Settings
from cmhost.service import states
from cmhost.service.context import Caller
from cmhost.service.servers import CreateServerInput, create_server
from cmhost.storage import repo
from tests.support import fresh_database_url

CALLER = Caller(account="111122223333", region="us-east-1",
                principal_arn="arn:aws:iam::111122223333:root")


MakeApp = Callable[[float], CmhostApp]


@pytest.fixture()
def make_app(tmp_path: Path) -> Iterator[MakeApp]:
    apps: list[CmhostApp] = []

    def make(provisioning_seconds: float) -> CmhostApp:
        app = CmhostApp(Settings(database_url=fresh_database_url(tmp_path),
                                 data_dir=tmp_path / "data", master_key_file=tmp_path / "mk",
                                 clock="virtual", credential_pool=0,
                                 provisioning_seconds=provisioning_seconds))
        apps.append(app)
        return app
    yield make
    for app in apps:
        app.db.dispose()


def create(app: CmhostApp) -> None:
    create_server(app.runtime, CALLER, CreateServerInput(
        server_name="one", engine="Puppet", disable_automated_backup=True,
        instance_profile_arn="arn:aws:iam::111122223333:instance-profile/p",
        instance_type="m5.large", service_role_arn="arn:aws:iam::111122223333:role/r"))


def status_and_messages(app: CmhostApp) -> tuple[str, list[str]]:
    with app.db.read() as conn:
        row = repo.get_server(conn, CALLER.account, CALLER.region, "one")
        assert row is not None
        found = repo.list_events(conn, row["id"], before=None, limit=50)
    return row["status"], [e["message"] for e in sorted(found, key=lambda e: e["id"])]


def test_no_provisioning_time_makes_the_server_healthy_in_one_step(make_app: MakeApp) -> None:
    app = make_app(0.0)
    create(app)
    assert app.worker.run_due(max_jobs=1) == 1
    status, messages = status_and_messages(app)
    assert status == states.HEALTHY
    assert [m.split(" ")[0:2] for m in messages] == [
        ["Server", "one"], ["Engine", "provisioned"], ["Server", "one"]]
    assert messages[-1] == "Server one is online and HEALTHY."
    assert app.worker.run_due() == 0  # nothing left: the job is done


def test_a_provisioning_time_still_waits_before_the_health_check(make_app: MakeApp) -> None:
    app = make_app(30.0)
    create(app)
    assert app.worker.run_due() == 1
    status, messages = status_and_messages(app)
    assert status == states.CREATING
    assert messages[-1].startswith("Engine provisioned")
    app.advance(30.0)
    status, messages = status_and_messages(app)
    assert status == states.HEALTHY
    assert messages[-1] == "Server one is online and HEALTHY."
