"""Queries only the console and the dashboards make: servers by name across accounts (a
dashboard's sign-in), a server's node requests, newest per node."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, RowMapping, select

from cmhost.storage.tables import node_associations, servers


def servers_named(conn: Connection, name: str, limit: int) -> Sequence[RowMapping]:
    """Servers called `name` in any account and region, oldest first (at most `limit`)."""
    return conn.execute(select(servers).where(servers.c.name == name)
                        .order_by(servers.c.created_at, servers.c.id).limit(limit)
                        ).mappings().all()


def latest_node_requests(conn: Connection, server_id: str) -> dict[str, RowMapping]:
    """node name -> its newest AssociateNode/DisassociateNode request on the server."""
    rows: Sequence[RowMapping] = conn.execute(
        select(node_associations.c.node_name, node_associations.c.action,
               node_associations.c.status, node_associations.c.error,
               node_associations.c.created_at, node_associations.c.updated_at)
        .where(node_associations.c.server_id == server_id)
        .order_by(node_associations.c.created_at, node_associations.c.token)).mappings().all()
    latest: dict[str, RowMapping] = {}
    for row in rows:
        latest[row["node_name"]] = row  # oldest first: the newest one stays
    return latest
