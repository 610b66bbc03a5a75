"""PostgreSQL: notify channel `cmhost_servers` whenever the servers table changes

Revision ID: 0006
Revises: 0005

Each API process caches its DescribeServers listings and drops them when any process changes
a server (storage/changes.py). Row triggers (and one for TRUNCATE) send the notice at commit,
whoever wrote: cmhost, another cmhost, or someone with psql. SQLite needs none (its reads are local,
and `PRAGMA data_version` tells a connection that another one committed).
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CHANNEL = "cmhost_servers"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"""
        CREATE FUNCTION cmhost_servers_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NULL;
        END $$
    """)
    # Per row, so that an UPDATE that matched nothing sends nothing (PostgreSQL folds the
    # same notice sent many times in one transaction into one); TRUNCATE has no rows.
    op.execute("""
        CREATE TRIGGER servers_changed
        AFTER INSERT OR UPDATE OR DELETE ON servers
        FOR EACH ROW EXECUTE FUNCTION cmhost_servers_changed()
    """)
    op.execute("""
        CREATE TRIGGER servers_truncated
        AFTER TRUNCATE ON servers
        FOR EACH STATEMENT EXECUTE FUNCTION cmhost_servers_changed()
    """)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER servers_truncated ON servers")
    op.execute("DROP TRIGGER servers_changed ON servers")
    op.execute("DROP FUNCTION cmhost_servers_changed()")
