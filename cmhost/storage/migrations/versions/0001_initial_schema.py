"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 17:19:38.557737
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "access_keys",
        sa.Column("access_key_id", sa.String(length=128), nullable=False),
        sa.Column("account", sa.String(length=12), nullable=False),
        sa.Column("principal_arn", sa.String(length=2048), nullable=False),
        sa.Column("secret_enc", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("access_key_id"),
    )
    with op.batch_alter_table("access_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_keys_account"), ["account"], unique=False)

    op.create_table(
        "accounts",
        sa.Column("account", sa.String(length=12), nullable=False),
        sa.Column("server_limit", sa.Integer(), nullable=True),
        sa.Column("backup_limit", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("account"),
    )
    op.create_table(
        "backups",
        sa.Column("id", sa.String(length=79), nullable=False),
        sa.Column("account", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("arn", sa.String(length=256), nullable=False),
        sa.Column("server_id", sa.String(length=36), nullable=True),
        sa.Column("server_name", sa.String(length=40), nullable=False),
        sa.Column("backup_type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_description", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("user_arn", sa.String(length=2048), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("artifact_key", sa.String(length=512), nullable=True),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=True),
        sa.Column("artifact_size", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("arn"),
    )
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.create_index(
            "ix_backups_account_region_time", ["account", "region", "created_at"], unique=False
        )
        batch_op.create_index("ix_backups_server_time", ["server_id", "created_at"], unique=False)

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("server_name", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("log_url", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_events_server_time", ["server_id", "created_at", "id"], unique=False
        )

    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("server_id", sa.String(length=36), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("run_at", sa.Float(), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_due", ["status", "run_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_server_id"), ["server_id"], unique=False)

    op.create_table(
        "meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "servers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("arn", sa.String(length=256), nullable=False),
        sa.Column("engine", sa.String(length=32), nullable=False),
        sa.Column("engine_model", sa.String(length=32), nullable=False),
        sa.Column("engine_version", sa.String(length=32), nullable=False),
        sa.Column("driver", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("maintenance_status", sa.String(length=16), nullable=True),
        sa.Column("endpoint", sa.String(length=256), nullable=False),
        sa.Column("cloudformation_stack_arn", sa.String(length=512), nullable=False),
        sa.Column("instance_type", sa.String(length=64), nullable=False),
        sa.Column("instance_profile_arn", sa.String(length=2048), nullable=False),
        sa.Column("service_role_arn", sa.String(length=2048), nullable=False),
        sa.Column("key_pair", sa.String(length=1024), nullable=True),
        sa.Column("associate_public_ip_address", sa.Boolean(), nullable=False),
        sa.Column("disable_automated_backup", sa.Boolean(), nullable=False),
        sa.Column("backup_retention_count", sa.Integer(), nullable=False),
        sa.Column("preferred_backup_window", sa.String(length=16), nullable=False),
        sa.Column("preferred_maintenance_window", sa.String(length=16), nullable=False),
        sa.Column("security_group_ids", sa.JSON(), nullable=True),
        sa.Column("subnet_ids", sa.JSON(), nullable=True),
        sa.Column("custom_domain", sa.String(length=253), nullable=True),
        sa.Column("engine_public", sa.JSON(), nullable=False),
        sa.Column("engine_secrets_enc", sa.Text(), nullable=False),
        sa.Column("engine_attributes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account", "region", "name", name="uq_servers_account_region_name"),
        sa.UniqueConstraint("arn"),
    )
    op.create_table(
        "tags",
        sa.Column("resource_arn", sa.String(length=256), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("resource_arn", "key"),
    )


def downgrade() -> None:

    op.drop_table("tags")
    op.drop_table("servers")
    op.drop_table("meta")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_server_id"))
        batch_op.drop_index("ix_jobs_due")

    op.drop_table("jobs")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_server_time")

    op.drop_table("events")
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.drop_index("ix_backups_server_time")
        batch_op.drop_index("ix_backups_account_region_time")

    op.drop_table("backups")
    op.drop_table("accounts")
    with op.batch_alter_table("access_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_keys_account"))

    op.drop_table("access_keys")
