"""armed faults (/_cmhost/faults) and the servers they hold in a status

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "faults",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("job", sa.String(length=32), nullable=True),
        sa.Column("operation", sa.String(length=64), nullable=True),
        sa.Column("account", sa.String(length=12), nullable=True),
        sa.Column("server_name", sa.Text(), nullable=True),
        sa.Column("remaining", sa.Integer(), nullable=True),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("fired", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "fault_holds",
        sa.Column("fault_id", sa.String(length=40), nullable=False),
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("previous_status", sa.String(length=32), nullable=False),
        sa.Column("previous_reason", sa.Text(), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("until", sa.Float(), nullable=False),
        sa.Column("ended", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("fault_id", "server_id"),
    )
    op.create_index("ix_fault_holds_server", "fault_holds", ["server_id", "ended"])
    op.create_index("ix_fault_holds_until", "fault_holds", ["ended", "until"])


def downgrade() -> None:
    op.drop_index("ix_fault_holds_until", table_name="fault_holds")
    op.drop_index("ix_fault_holds_server", table_name="fault_holds")
    op.drop_table("fault_holds")
    op.drop_table("faults")
