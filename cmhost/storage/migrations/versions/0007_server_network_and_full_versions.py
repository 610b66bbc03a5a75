"""servers and backups: security groups, subnets and full engine versions filled in

Revision ID: 0007
Revises: 0006

Servers created before CreateServer gave every server a security group of its own and the
account's default subnet (when the request named none) get them now, and so do the backups
taken of them; an engine version stored as its major (2, 2019, 2017) becomes the full one
the server shows (2020-07, 2019-08, 2017-03). The derivations are copied here, frozen as they
were when this revision was written (cmhost.service.network and engine_options then): they
give the values new servers get, so old and new servers of one account and region share one
default subnet, and a later change to the service cannot change what this revision does. A
changed server row gets a new revision, as every write of one does. Nothing to undo: the
downgrade leaves the values.
"""

import hashlib
import hmac
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Frozen copies of cmhost.service.engine_options.VERSIONS and full_version and of
# cmhost.service.network's derivations, as of this revision.
_FULL_VERSIONS = {
    "Chef": {"2": "2020-07", "12": "12.11.1"},
    "ChefAutomate": {"2": "2020-07"},
    "Puppet": {"2019": "2019-08", "2017": "2017-03"},
}


def full_version(engine: str, version: str) -> str:
    """The full version a major `version` of `engine` stands for; any other value as it is."""
    return _FULL_VERSIONS.get(engine, {}).get(version, version)


def _id_digits(label: bytes, value: str) -> str:
    """17 lower-case hex digits, as EC2's long resource ids (which start with a 0)."""
    return "0" + hmac.new(label, value.encode(), hashlib.sha256).hexdigest()[:16]


def default_subnet_id(account: str, region: str) -> str:
    return "subnet-" + _id_digits(b"cmhost default subnet", f"{account}/{region}")


def security_group_id(server_id: str) -> str:
    return "sg-" + _id_digits(b"cmhost server security group", server_id)


_servers = sa.table(
    "servers",
    sa.column("id", sa.String), sa.column("account", sa.String), sa.column("region", sa.String),
    sa.column("engine", sa.String), sa.column("engine_version", sa.String),
    sa.column("security_group_ids", sa.JSON), sa.column("subnet_ids", sa.JSON),
    sa.column("revision", sa.Integer),
)
_backups = sa.table(
    "backups",
    sa.column("id", sa.String), sa.column("account", sa.String), sa.column("region", sa.String),
    sa.column("server_id", sa.String), sa.column("settings", sa.JSON),
)


def _filled_settings(backup: Any) -> dict[str, Any] | None:
    """The backup's settings with what they lack, or None when they lack nothing."""
    settings = dict(backup.settings or {})
    before = dict(settings)
    if not settings.get("SecurityGroupIds"):
        # The server had no group of its own when the backup was taken: the one it has now.
        settings["SecurityGroupIds"] = [security_group_id(backup.server_id or backup.id)]
    if not settings.get("SubnetIds"):
        settings["SubnetIds"] = [default_subnet_id(backup.account, backup.region)]
    if settings.get("EngineVersion") is not None:
        settings["EngineVersion"] = full_version(str(settings.get("Engine")),
                                                 str(settings["EngineVersion"]))
    return settings if settings != before else None


def upgrade() -> None:
    conn = op.get_bind()
    for server in conn.execute(sa.select(_servers)).all():
        values: dict[str, Any] = {}
        if not server.security_group_ids:
            values["security_group_ids"] = [security_group_id(server.id)]
        if not server.subnet_ids:
            values["subnet_ids"] = [default_subnet_id(server.account, server.region)]
        version = full_version(server.engine, server.engine_version)
        if version != server.engine_version:
            values["engine_version"] = version
        if values:
            conn.execute(sa.update(_servers).where(_servers.c.id == server.id)
                         .values(revision=_servers.c.revision + 1, **values))
    for backup in conn.execute(sa.select(_backups)).all():
        settings = _filled_settings(backup)
        if settings is not None:
            conn.execute(sa.update(_backups).where(_backups.c.id == backup.id)
                         .values(settings=settings))


def downgrade() -> None:
    """The filled-in values are valid under 0006 too: nothing to undo."""
