"""The users, user_policies and key_owners tables (migration 0010) and their queries: IAM-style
users of an account, the policies attached to them, and who each access key belongs to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Float,
    Index,
    RowMapping,
    String,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)

from cmhost.storage.tables import access_keys, backups, metadata, servers, tags

users = Table(
    "users",
    metadata,
    Column("account", String(12), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("user_id", String(32), nullable=False),  # AIDA..., the principalId of its calls
    Column("created_at", Float, nullable=False),
)

# A user's policies: inline ones with their document (as given, so `users list` shows what
# was attached), managed ones by name (their documents ship with cmhost).
user_policies = Table(
    "user_policies",
    metadata,
    Column("account", String(12), primary_key=True),
    Column("user_name", String(64), primary_key=True),
    Column("kind", String(8), primary_key=True),  # inline | managed
    Column("policy_name", String(128), primary_key=True),
    Column("document", Text, nullable=True),  # inline only
    Column("attached_at", Float, nullable=False),
)

# Every access key's owner and state. user_name None: the account's root key. A key issued
# before migration 0010 has a row made by it (root, Active).
key_owners = Table(
    "key_owners",
    metadata,
    Column("access_key_id", String(128), primary_key=True),
    Column("account", String(12), nullable=False),
    Column("user_name", String(64), nullable=True),
    Column("status", String(16), nullable=False),  # Active | Inactive
    Column("last_used_at", Float, nullable=True),
    Index("ix_key_owners_account_user", "account", "user_name"),
)


def insert_user(conn: Connection, **values: Any) -> None:
    conn.execute(insert(users).values(**values))


def get_user(conn: Connection, account: str, name: str) -> RowMapping | None:
    return conn.execute(select(users).where(users.c.account == account,
                                            users.c.name == name)).mappings().first()


def list_users(conn: Connection, account: str | None) -> Sequence[RowMapping]:
    query = select(users).order_by(users.c.account, users.c.name)
    if account is not None:
        query = query.where(users.c.account == account)
    return conn.execute(query).mappings().all()


def delete_user(conn: Connection, account: str, name: str) -> bool:
    """The user, its policies and its keys; whether there was one."""
    conn.execute(delete(user_policies).where(user_policies.c.account == account,
                                             user_policies.c.user_name == name))
    key_ids = [r[0] for r in conn.execute(select(key_owners.c.access_key_id).where(
        key_owners.c.account == account, key_owners.c.user_name == name))]
    if key_ids:
        conn.execute(delete(access_keys).where(access_keys.c.access_key_id.in_(key_ids)))
        conn.execute(delete(key_owners).where(key_owners.c.access_key_id.in_(key_ids)))
    return conn.execute(delete(users).where(users.c.account == account,
                                            users.c.name == name)).rowcount > 0


def user_policy_rows(conn: Connection, account: str, name: str) -> Sequence[RowMapping]:
    return conn.execute(select(user_policies).where(
        user_policies.c.account == account, user_policies.c.user_name == name
    ).order_by(user_policies.c.kind, user_policies.c.policy_name)).mappings().all()


def policies_of_users(conn: Connection, account: str | None) -> Sequence[RowMapping]:
    query = select(user_policies).order_by(user_policies.c.account, user_policies.c.user_name,
                                           user_policies.c.kind, user_policies.c.policy_name)
    if account is not None:
        query = query.where(user_policies.c.account == account)
    return conn.execute(query).mappings().all()


def put_user_policy(conn: Connection, *, account: str, user_name: str, kind: str,
                    policy_name: str, document: str | None, now: float) -> bool:
    """Attach (or replace) a policy; whether it replaced one of the same name."""
    where = and_(user_policies.c.account == account, user_policies.c.user_name == user_name,
                 user_policies.c.kind == kind, user_policies.c.policy_name == policy_name)
    replaced = conn.execute(update(user_policies).where(where).values(
        document=document, attached_at=now)).rowcount > 0
    if not replaced:
        conn.execute(insert(user_policies).values(
            account=account, user_name=user_name, kind=kind, policy_name=policy_name,
            document=document, attached_at=now))
    return replaced


def delete_user_policy(conn: Connection, *, account: str, user_name: str, kind: str,
                       policy_name: str) -> bool:
    return conn.execute(delete(user_policies).where(
        user_policies.c.account == account, user_policies.c.user_name == user_name,
        user_policies.c.kind == kind, user_policies.c.policy_name == policy_name)).rowcount > 0


def insert_key_owner(conn: Connection, **values: Any) -> None:
    conn.execute(insert(key_owners).values(**values))


def count_user_keys(conn: Connection, account: str, user_name: str) -> int:
    return int(conn.execute(select(func.count()).select_from(key_owners).where(
        key_owners.c.account == account, key_owners.c.user_name == user_name)).scalar_one())


_KEY = select(access_keys.c.access_key_id, access_keys.c.account, access_keys.c.principal_arn,
              access_keys.c.secret_enc, access_keys.c.created_at, key_owners.c.user_name,
              key_owners.c.status, key_owners.c.last_used_at).select_from(
    access_keys.outerjoin(key_owners,
                          key_owners.c.access_key_id == access_keys.c.access_key_id))


def get_key(conn: Connection, access_key_id: str) -> RowMapping | None:
    """An access key with its owner and state (status None: a key without an owner row)."""
    return conn.execute(_KEY.where(access_keys.c.access_key_id == access_key_id)
                        ).mappings().first()


def list_keys(conn: Connection, account: str | None) -> Sequence[RowMapping]:
    query = _KEY.order_by(access_keys.c.created_at)
    if account is not None:
        query = query.where(access_keys.c.account == account)
    return conn.execute(query).mappings().all()


def set_key_status(conn: Connection, access_key_id: str, status: str) -> bool:
    return conn.execute(update(key_owners).where(
        key_owners.c.access_key_id == access_key_id).values(status=status)).rowcount > 0


def delete_key(conn: Connection, access_key_id: str) -> bool:
    conn.execute(delete(key_owners).where(key_owners.c.access_key_id == access_key_id))
    return conn.execute(delete(access_keys).where(
        access_keys.c.access_key_id == access_key_id)).rowcount > 0


def set_keys_last_used(conn: Connection, used: dict[str, float]) -> None:
    """Each key's last use, never moved back (another process may have written a later one)."""
    for access_key_id, at in used.items():
        conn.execute(update(key_owners).where(
            key_owners.c.access_key_id == access_key_id,
            (key_owners.c.last_used_at.is_(None)) | (key_owners.c.last_used_at < at),
        ).values(last_used_at=at))


# --- what authorization checks a call against -------------------------------------------

# Reads the servers table only: Database.fetch(cached=True) may keep its rows.
SERVER_ARN_BY_NAME = select(servers.c.arn).where(servers.c.account == bindparam("account"),
                                                 servers.c.region == bindparam("region"),
                                                 servers.c.name == bindparam("name"))


def backup_arn(conn: Connection, account: str, region: str, backup_id: str) -> str | None:
    return conn.execute(select(backups.c.arn).where(
        backups.c.id == backup_id, backups.c.account == account,
        backups.c.region == region)).scalar()


def tags_of(conn: Connection, resource_arn: str) -> dict[str, str]:
    return {r[0]: r[1] for r in conn.execute(select(tags.c.key, tags.c.value).where(
        tags.c.resource_arn == resource_arn))}
