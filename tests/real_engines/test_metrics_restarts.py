"""A real goiardi killed with SIGKILL is counted once in cmhost_engine_restarts_total, and the
checks that follow its restart in cmhost_health_checks_total, under its engine and driver."""

from __future__ import annotations

from tests.ops.helpers import healthy_server, server_id
from tests.real_engines.test_engine_crash import _kill_and_watch, _pid, goiardi  # noqa: F401
from tests.scrape import scrape
from tests.support import Cmhost


def test_a_killed_goiardi_is_one_engine_restart(goiardi: Cmhost) -> None:  # noqa: F811
    client = goiardi.client()
    created = healthy_server(goiardi, client, "m-restart")
    state = goiardi.data_dir / "engines" / server_id(created["ServerArn"])
    pid = _pid(state / "goiardi.pid", state / "data")
    assert pid is not None
    before = scrape(goiardi)
    assert before.value("cmhost_servers", engine="Chef", driver="goiardi", status="HEALTHY") == 1
    _kill_and_watch(client, "m-restart", pid, timeout=60)
    after = scrape(goiardi)
    labels = {"engine": "Chef", "driver": "goiardi"}
    assert after.value("cmhost_engine_restarts_total", process="engine", **labels) - \
        before.value("cmhost_engine_restarts_total", process="engine", **labels) == 1
    assert after.value("cmhost_engine_restarts_total") - \
        before.value("cmhost_engine_restarts_total") == 1
    # Checked every second after the restart until it answered: HEALTHY at last.
    assert after.value("cmhost_health_checks_total", result="HEALTHY", **labels) > \
        before.value("cmhost_health_checks_total", result="HEALTHY", **labels)
    assert after.value("cmhost_servers", status="HEALTHY", **labels) == 1
