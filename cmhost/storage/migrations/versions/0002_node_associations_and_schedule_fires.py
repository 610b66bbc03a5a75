"""node associations and schedule fires

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 17:33:50.377617
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "node_associations",
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("account", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("server_name", sa.String(length=40), nullable=False),
        sa.Column("node_name", sa.String(length=1024), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("token"),
    )
    with op.batch_alter_table("node_associations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_node_associations_server_id"), ["server_id"], unique=False
        )

    op.create_table(
        "schedule_fires",
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("window_at", sa.Float(), nullable=False),
        sa.Column("fired_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("server_id", "kind", "window_at"),
    )


def downgrade() -> None:

    op.drop_table("schedule_fires")
    with op.batch_alter_table("node_associations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_node_associations_server_id"))

    op.drop_table("node_associations")
