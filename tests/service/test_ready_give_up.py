"""A restore or a maintenance whose engine was rebuilt, then whose health checks failed for
good in the "ready" step: the rebuilt engine is kept, so the server settles on the engine's
last health with an event saying it did not become ready — never "Restore … failed" or
"Maintenance failed and was rolled back"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cmhost.app import CmhostApp
from cmhost.config import Settings
from cmhost.engines.base import EngineError, EngineMaterial, Health, ServerSpec
from cmhost.service import states
from cmhost.service.backups import create_backup
from cmhost.service.maintenance import start_maintenance
from cmhost.service.restore import restore_server
from cmhost.storage import repo
from tests.service.test_create_job import CALLER, create, status_and_messages
from tests.support import fresh_database_url


@pytest.fixture()
def app(tmp_path: Path) -> Iterator[CmhostApp]:
    app = CmhostApp(Settings(database_url=fresh_database_url(tmp_path),
                             data_dir=tmp_path / "data", master_key_file=tmp_path / "mk",
                             clock="virtual", credential_pool=0, provisioning_seconds=0.0))
    create(app)
    app.worker.run_due()
    assert status_and_messages(app)[0] == states.HEALTHY
    yield app
    app.db.dispose()


def _starting_then_silent(app: CmhostApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine answers UNHEALTHY once (it is starting), then every check fails."""
    driver = app.runtime.drivers.for_server("Puppet", "embedded")
    answers: list[Health] = [Health("UNHEALTHY", "starting")]

    def check_health(spec: ServerSpec, material: EngineMaterial) -> Health:
        if answers:
            return answers.pop()
        raise EngineError("the engine does not answer")
    monkeypatch.setattr(driver, "check_health", check_health)


def _backup(app: CmhostApp) -> str:
    backup = create_backup(app.runtime, CALLER, server_name="one", description=None, tags=[])
    app.worker.run_due()
    return backup.id


def _reason(app: CmhostApp) -> str | None:
    with app.db.read() as conn:
        row = repo.get_server(conn, CALLER.account, CALLER.region, "one")
        assert row is not None
        return row["status_reason"]


def test_a_restore_whose_engine_never_answers_is_not_a_failed_restore(
        app: CmhostApp, monkeypatch: pytest.MonkeyPatch) -> None:
    backup_id = _backup(app)
    _starting_then_silent(app, monkeypatch)
    restore_server(app.runtime, CALLER, server_name="one", backup_id=backup_id,
                   instance_type=None, key_pair=None)
    app.advance(200.0)
    status, messages = status_and_messages(app)
    assert status == states.UNHEALTHY
    assert f"Engine restored from backup {backup_id}; waiting for it to be ready." in messages
    assert ("The engine did not become ready: EngineError: the engine does not answer"
            in messages)
    assert messages[-1] == f"Server restored from backup {backup_id}; it is UNHEALTHY."
    assert not [m for m in messages if "failed" in m]
    assert _reason(app) == ("The engine did not become ready: EngineError: the engine does "
                            "not answer")


def test_a_maintenance_whose_engine_never_answers_is_not_rolled_back(
        app: CmhostApp, monkeypatch: pytest.MonkeyPatch) -> None:
    _starting_then_silent(app, monkeypatch)
    start_maintenance(app.runtime, CALLER, server_name="one", attributes=[])
    app.advance(200.0)
    status, messages = status_and_messages(app)
    assert status == states.UNHEALTHY
    assert "Engine rebuilt by maintenance; waiting for it to be ready." in messages
    assert ("The engine did not become ready: EngineError: the engine does not answer"
            in messages)
    assert messages[-1] == "Maintenance completed successfully."
    assert not [m for m in messages if "rolled back" in m or "failed" in m]
    with app.db.read() as conn:
        row = repo.get_server(conn, CALLER.account, CALLER.region, "one")
        assert row is not None and row["maintenance_status"] == "SUCCESS"
