"""The database schema (SQLAlchemy Core tables); Alembic migrations create it."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Small key/value facts about this database: the master-key check, the virtual clock offset.
meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("account", String(12), primary_key=True),
    Column("server_limit", Integer, nullable=True),  # None: the process default
    Column("backup_limit", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
)

access_keys = Table(
    "access_keys",
    metadata,
    Column("access_key_id", String(128), primary_key=True),
    Column("account", String(12), nullable=False, index=True),
    Column("principal_arn", String(2048), nullable=False),
    Column("secret_enc", Text, nullable=False),  # encrypted with the master key
    Column("created_at", Float, nullable=False),
)

servers = Table(
    "servers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("name", String(40), nullable=False),
    Column("arn", String(256), nullable=False, unique=True),
    Column("engine", String(32), nullable=False),
    Column("engine_model", String(32), nullable=False),
    Column("engine_version", String(32), nullable=False),
    Column("driver", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("status_reason", Text, nullable=True),
    Column("maintenance_status", String(16), nullable=True),
    Column("endpoint", String(256), nullable=False),
    Column("cloudformation_stack_arn", String(512), nullable=False),
    Column("instance_type", Text, nullable=False),
    Column("instance_profile_arn", Text, nullable=False),
    Column("service_role_arn", Text, nullable=False),
    Column("key_pair", Text, nullable=True),
    Column("associate_public_ip_address", Boolean, nullable=False),
    Column("disable_automated_backup", Boolean, nullable=False),
    Column("backup_retention_count", Integer, nullable=False),
    Column("preferred_backup_window", String(16), nullable=False),
    Column("preferred_maintenance_window", String(16), nullable=False),
    Column("security_group_ids", JSON, nullable=True),
    Column("subnet_ids", JSON, nullable=True),
    Column("custom_domain", String(253), nullable=True),
    # Engine identity: public parts (certificates, public keys, password hashes) as JSON,
    # secret parts (CA private key, ...) encrypted with the master key.
    Column("engine_public", JSON, nullable=False),
    Column("engine_secrets_enc", Text, nullable=False),
    # Engine attributes DescribeServers shows (PUPPET_API_CA_CERT), kept ready to serve.
    Column("engine_attributes", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # Bumped by every write of the row (storage/repo.py): readers cache by (id, revision).
    Column("revision", Integer, nullable=False, server_default="0"),
    UniqueConstraint("account", "region", "name", name="uq_servers_account_region_name"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("server_id", String(36), nullable=False),
    Column("server_name", String(40), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("message", Text, nullable=False),
    # The blob key of the event's log (a backup's, or a step's: service/step_logs.py), not a
    # URL: DescribeEvents makes the signed LogUrl from it with the public URL of the moment.
    # The column keeps the name the first schema gave it.
    Column("log_url", Text, nullable=True, key="log_key"),
    Index("ix_events_server_time", "server_id", "created_at", "id"),
)

backups = Table(
    "backups",
    metadata,
    Column("id", String(79), primary_key=True),  # BackupId: <ServerName>-yyyyMMddHHmmssSSS
    Column("account", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("arn", String(256), nullable=False, unique=True),
    Column("server_id", String(36), nullable=True),
    Column("server_name", String(40), nullable=False),
    Column("backup_type", String(16), nullable=False),  # AUTOMATED | MANUAL
    Column("status", String(16), nullable=False),
    Column("status_description", Text, nullable=True),
    Column("description", Text, nullable=True),
    Column("user_arn", Text, nullable=True),
    Column("settings", JSON, nullable=False),  # the server's settings when the backup began
    Column("artifact_key", String(512), nullable=True),
    Column("artifact_sha256", String(64), nullable=True),
    Column("artifact_size", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    Index("ix_backups_account_region_time", "account", "region", "created_at"),
    Index("ix_backups_server_time", "server_id", "created_at"),
)

tags = Table(
    "tags",
    metadata,
    Column("resource_arn", String(256), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(256), nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),
    Column("server_id", String(36), nullable=True, index=True),
    Column("payload", JSON, nullable=False),
    Column("step", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # pending | done | failed
    Column("run_at", Float, nullable=False),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_jobs_due", "status", "run_at"),
)

# AssociateNode / DisassociateNode requests, found again by their token.
node_associations = Table(
    "node_associations",
    metadata,
    Column("token", String(64), primary_key=True),
    Column("server_id", String(36), nullable=False, index=True),
    Column("account", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("server_name", String(40), nullable=False),
    Column("node_name", Text, nullable=False),
    Column("action", String(16), nullable=False),  # associate | disassociate
    Column("status", String(16), nullable=False),  # IN_PROGRESS | SUCCESS | FAILED
    Column("attributes", JSON, nullable=False),  # the request's (public) engine attributes
    Column("result", JSON, nullable=False),  # attributes for DescribeNodeAssociationStatus
    Column("error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# One row per scheduled window that fired: the primary key makes each fire happen once,
# whichever worker (or process) gets there first.
schedule_fires = Table(
    "schedule_fires",
    metadata,
    Column("server_id", String(36), primary_key=True),
    Column("kind", String(16), primary_key=True),  # backup | maintenance
    Column("window_at", Float, primary_key=True),
    Column("fired_at", Float, nullable=False),
)

# Credentials made ahead of time by the workers (RSA keys, generated passwords with their
# hashes), taken once each by CreateServer so the request does not spend the CPU on them.
# An entry is deleted as it is taken; secrets are encrypted with the master key.
credential_pool = Table(
    "credential_pool",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # rsa-2048 | password-chef | password-puppet
    Column("secret_enc", Text, nullable=False),
    Column("public", Text, nullable=True),  # a password's scrypt hash
    Column("created_at", Float, nullable=False),
    Index("ix_credential_pool_kind_id", "kind", "id"),
)
