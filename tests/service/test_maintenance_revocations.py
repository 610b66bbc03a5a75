"""Maintenance restores the engine from the backup it just took: whatever that restore
revoked is recorded in an event, as RestoreServer does, and not left behind in the driver."""

from __future__ import annotations

import pytest

from cmhost.app import CmhostApp
from cmhost.engines.base import EngineMaterial, ServerSpec
from cmhost.engines.embedded import EmbeddedDriver
from cmhost.engines.issuance import Issued
from cmhost.service.maintenance import start_maintenance
from tests.service.test_create_job import CALLER, status_and_messages
from tests.service.test_ready_give_up import app

__all__ = ["app"]  # the fixture: a HEALTHY embedded Puppet server "one"


def test_what_a_maintenance_restore_revoked_is_an_event(
        app: CmhostApp, monkeypatch: pytest.MonkeyPatch) -> None:
    # The app's drivers are wrapped (fault injection's held health checks): patch the driver.
    wrapped = app.runtime.drivers.for_server("Puppet", "embedded")
    driver = getattr(wrapped, "_driver", wrapped)
    assert isinstance(driver, EmbeddedDriver)
    restore = driver.restore
    late = Issued(0x2A, "late-node", "2026-01-01T00:00:00+00:00")
    server_ids: list[str] = []

    def restore_revoking_one(spec: ServerSpec, artifact: bytes) -> EngineMaterial:
        # As if the CA had issued a certificate after the maintenance backup was taken.
        material = restore(spec, artifact)
        driver._restore_revoked[spec.server_id] = [late]
        server_ids.append(spec.server_id)
        return material
    monkeypatch.setattr(driver, "restore", restore_revoking_one)
    start_maintenance(app.runtime, CALLER, server_name="one", attributes=[])
    app.advance(60.0)
    status, messages = status_and_messages(app)
    assert status == "HEALTHY"
    assert messages[-1] == "Maintenance completed successfully."
    assert ("Restore revoked 1 certificate issued after the backup: late-node (serial 0x2a)."
            in messages)
    assert server_ids and driver.take_restore_revocations(server_ids[0]) == []
