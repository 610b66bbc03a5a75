"""users and their policies, access key owners and states, and the audit trail

Keys issued before this revision become their account's root keys (as they could do
everything): each gets an Active key_owners row, and its principal (and that of console
sessions signed in with it) becomes arn:aws:iam::<account>:root.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("account", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("account", "name"),
    )
    op.create_table(
        "user_policies",
        sa.Column("account", sa.String(length=12), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("policy_name", sa.String(length=128), nullable=False),
        sa.Column("document", sa.Text(), nullable=True),
        sa.Column("attached_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("account", "user_name", "kind", "policy_name"),
    )
    op.create_table(
        "key_owners",
        sa.Column("access_key_id", sa.String(length=128), nullable=False),
        sa.Column("account", sa.String(length=12), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_used_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("access_key_id"),
    )
    op.create_index("ix_key_owners_account_user", "key_owners", ["account", "user_name"])
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("account", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("event_time", sa.Float(), nullable=False),
        sa.Column("event_source", sa.String(length=64), nullable=False),
        sa.Column("event_name", sa.String(length=128), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=True),
        sa.Column("access_key_id", sa.String(length=128), nullable=True),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=True),
        sa.Column("resource_name", sa.Text(), nullable=True),
        sa.Column("principal_arn", sa.Text(), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("source_ip", sa.Text(), nullable=False),
        sa.Column("user_agent", sa.Text(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("error_code", sa.String(length=128), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("request_parameters", sa.Text(), nullable=True),
        sa.Column("response_elements", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("delivery_key", sa.Text(), nullable=True),
        sa.Column("claimed_at", sa.Float(), nullable=True),
        sa.Column("delivered_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_audit_events_account_time", "audit_events",
                    ["account", "region", "event_time"])
    op.create_index("ix_audit_events_pending", "audit_events", ["delivery_key"],
                    sqlite_where=sa.text("delivered_at IS NULL"),
                    postgresql_where=sa.text("delivered_at IS NULL"))
    op.execute("INSERT INTO key_owners (access_key_id, account, user_name, status, "
               "last_used_at) SELECT access_key_id, account, NULL, 'Active', NULL "
               "FROM access_keys")
    root = {"head": "arn:aws:iam::", "tail": ":root"}
    op.execute(sa.text("UPDATE access_keys SET principal_arn = :head || account || :tail")
               .bindparams(**root))
    op.execute(sa.text("UPDATE console_sessions SET principal_arn = :head || account || :tail "
                       "WHERE principal_arn IS NOT NULL AND account IS NOT NULL")
               .bindparams(**root))

def downgrade() -> None:
    op.drop_index("ix_audit_events_pending", table_name="audit_events")
    op.drop_index("ix_audit_events_account_time", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_index("ix_key_owners_account_user", table_name="key_owners")
    op.drop_table("key_owners")
    op.drop_table("user_policies")
    op.drop_table("users")
