"""Migration 0007: servers and backups stored before issue 14 show security groups, subnets
and full engine versions after `cmhost db upgrade`, as new servers do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from cmhost.storage.db import MIGRATIONS
from cmhost.storage.migrate import standalone_engine
from tests.ops.helpers import CREATING_SECONDS, backup_now
from tests.support import Cmhost, create_server

OLD_VERSIONS = {"Chef": "2", "Puppet": "2019"}

_servers = sa.table("servers", sa.column("id", sa.String), sa.column("name", sa.String),
                    sa.column("engine", sa.String), sa.column("engine_version", sa.String),
                    sa.column("security_group_ids", sa.JSON), sa.column("subnet_ids", sa.JSON))
_backups = sa.table("backups", sa.column("id", sa.String), sa.column("settings", sa.JSON))


def _downgrade_to_0007(url: str) -> None:
    """Undo the migrations after 0007 (their tables), so the database is at 0007 again."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    engine = standalone_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
    engine.dispose()


def _as_before_0007(url: str, named: str) -> None:
    """Rewrite the rows the way cmhost stored them before: JSON null where CreateServer named
    no groups or subnets, the major engine version; the schema at revision 0006."""
    _downgrade_to_0007(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for row in conn.execute(sa.select(_servers)).all():
            values: dict[str, Any] = {"engine_version": OLD_VERSIONS[row.engine]}
            if row.name != named:
                values.update(security_group_ids=None, subnet_ids=None)
            conn.execute(sa.update(_servers).where(_servers.c.id == row.id).values(**values))
        for row in conn.execute(sa.select(_backups)).all():
            settings = {**row.settings, "SecurityGroupIds": None, "SubnetIds": None,
                        "EngineVersion": OLD_VERSIONS[row.settings["Engine"]]}
            conn.execute(sa.update(_backups).where(_backups.c.id == row.id)
                         .values(settings=settings))
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0006'"))
    engine.dispose()


def test_stored_servers_and_backups_are_filled_in(tmp_path: Path) -> None:
    cm = Cmhost(tmp_path).start()
    try:
        client = cm.client()
        create_server(client, "old-chef")
        create_server(client, "old-puppet", "Puppet")
        create_server(client, "old-named", SecurityGroupIds=["sg-1a24c270"],
                      SubnetIds=["subnet-49436a18"])
        cm.advance(CREATING_SECONDS + 1)
        backup_now(cm, client, "old-chef")
        before = {s["ServerName"]: s for s in client.describe_servers()["Servers"]}
    finally:
        cm.stop()
    _as_before_0007(cm.database_url, "old-named")
    cm.cli("db", "upgrade", *cm.storage_args())
    engine = sa.create_engine(cm.database_url)
    with engine.connect() as conn:  # stored in full, not only shown so
        stored = dict(conn.execute(sa.select(_servers.c.name, _servers.c.engine_version)).all())
    engine.dispose()
    assert stored == {"old-chef": "2020-07", "old-puppet": "2019-08", "old-named": "2020-07"}
    cm.start()
    try:
        client = cm.client()
        after = {s["ServerName"]: s for s in client.describe_servers()["Servers"]}
        # The values the servers had when they were made, derived again: the same.
        for name in before:
            for key in ("SecurityGroupIds", "SubnetIds", "EngineVersion"):
                assert after[name][key] == before[name][key], (name, key)
        assert after["old-chef"]["EngineVersion"] == "2020-07"
        assert after["old-puppet"]["EngineVersion"] == "2019-08"
        assert after["old-named"]["SecurityGroupIds"] == ["sg-1a24c270"]
        backup = client.describe_backups(ServerName="old-chef")["Backups"][0]
        assert (backup["SecurityGroupIds"], backup["SubnetIds"], backup["EngineVersion"]) == (
            after["old-chef"]["SecurityGroupIds"], after["old-chef"]["SubnetIds"], "2020-07")
        # A server made now shares the account's default subnet with the migrated ones.
        assert create_server(client, "new-chef")["SubnetIds"] == after["old-chef"]["SubnetIds"]
    finally:
        cm.stop()
