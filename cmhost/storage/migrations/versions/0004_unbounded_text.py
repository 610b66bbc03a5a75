"""text columns for members the model allows up to 10000 characters

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

WIDENED = {
    "servers": [("instance_type", 64, False), ("instance_profile_arn", 2048, False),
                ("service_role_arn", 2048, False), ("key_pair", 1024, True)],
    "node_associations": [("node_name", 1024, False)],
    "backups": [("user_arn", 2048, True)],
}


def upgrade() -> None:
    for table, columns in WIDENED.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, length, nullable in columns:
                batch_op.alter_column(name, existing_type=sa.String(length=length),
                                      type_=sa.Text(), existing_nullable=nullable)


def downgrade() -> None:
    for table, columns in WIDENED.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, length, nullable in columns:
                batch_op.alter_column(name, existing_type=sa.Text(),
                                      type_=sa.String(length=length), existing_nullable=nullable)
