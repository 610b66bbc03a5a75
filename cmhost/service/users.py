"""Users of an account and their policies: created, listed, deleted, policies attached and
detached (`cmhost users`). Every change is recorded in the audit trail in its transaction."""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from cmhost.service.access_managed import ARN_PREFIX, managed_name
from cmhost.service.audit import user_arn
from cmhost.service.audit_changes import record_change, user_resource
from cmhost.service.policies import PolicyError, read_policy
from cmhost.storage import iam
from cmhost.storage.db import Database

# IAM's rule for user names; policy names likewise (128 characters).
_USER_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
_POLICY_NAME = re.compile(r"[\w+=,.@-]{1,128}", re.ASCII)
INLINE, MANAGED = "inline", "managed"


class UserProblem(ValueError):
    """A user operation that cannot be done (said in one line; a policy's with its line)."""


@dataclass(frozen=True)
class InlinePolicy:
    name: str
    text: str


def check_user_name(name: str) -> str:
    if not _USER_NAME.fullmatch(name):
        raise UserProblem(f"{name!r} is not a user name (1 to 64 letters, digits and "
                          "+=,.@_-, as in IAM)")
    return name


def check_policy(policy: InlinePolicy) -> None:
    """UserProblem naming the policy, the line and the reason when it is malformed."""
    if not _POLICY_NAME.fullmatch(policy.name):
        raise UserProblem(f"{policy.name!r} is not a policy name (1 to 128 letters, digits "
                          "and +=,.@_-)")
    try:
        read_policy(policy.text, policy.name)
    except PolicyError as exc:
        raise UserProblem(f"policy {policy.name} is malformed: line {exc.line}: "
                          f"{exc.reason}") from None


def _user_id() -> str:
    return "AIDA" + "".join(secrets.choice(string.ascii_uppercase + "234567")
                            for _ in range(17))


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_user(db: Database, *, account: str, name: str, policies: Sequence[InlinePolicy],
                managed: Sequence[str], now: float) -> dict[str, Any]:
    check_user_name(name)
    for policy in policies:
        check_policy(policy)
    names = [managed_name(m) for m in managed]
    with db.write() as conn:
        if iam.get_user(conn, account, name) is not None:
            raise UserProblem(f"user {name} exists already in account {account}")
        user_id = _user_id()
        iam.insert_user(conn, account=account, name=name, user_id=user_id, created_at=now)
        record_change(conn, account=account, event_name="CreateUser", now=now,
                      params={"userName": name}, resource=user_resource(account, name),
                      response={"user": {"userName": name, "userId": user_id,
                                         "arn": user_arn(account, name), "path": "/",
                                         "createDate": _iso(now)}})
        for policy in policies:
            _put_inline(conn, account, name, policy, now)
        for managed_policy in names:
            _put_managed(conn, account, name, managed_policy, now)
    return describe_user(db, account, name)


def _put_inline(conn: Connection, account: str, user: str, policy: InlinePolicy,
                now: float) -> None:
    iam.put_user_policy(conn, account=account, user_name=user, kind=INLINE,
                        policy_name=policy.name, document=policy.text, now=now)
    record_change(conn, account=account, event_name="PutUserPolicy", now=now,
                  params={"userName": user, "policyName": policy.name,
                          "policyDocument": policy.text},
                  resource=user_resource(account, user))


def _put_managed(conn: Connection, account: str, user: str, name: str, now: float) -> None:
    iam.put_user_policy(conn, account=account, user_name=user, kind=MANAGED,
                        policy_name=name, document=None, now=now)
    record_change(conn, account=account, event_name="AttachUserPolicy", now=now,
                  params={"userName": user, "policyArn": ARN_PREFIX + name},
                  resource=user_resource(account, user))


def _existing(conn: Connection, account: str, name: str) -> None:
    if iam.get_user(conn, account, name) is None:
        raise UserProblem(f"no user {name} in account {account}")


def attach_policy(db: Database, *, account: str, name: str,
                  policy: InlinePolicy | None = None, managed: str | None = None,
                  now: float) -> dict[str, Any]:
    """Attach an inline policy (a malformed one is refused with its line and reason; one
    of the same name is replaced) or a managed one."""
    if policy is not None:
        check_policy(policy)
    managed_policy = managed_name(managed) if managed is not None else None
    with db.write() as conn:
        _existing(conn, account, name)
        if policy is not None:
            _put_inline(conn, account, name, policy, now)
        if managed_policy is not None:
            _put_managed(conn, account, name, managed_policy, now)
    return describe_user(db, account, name)


def detach_policy(db: Database, *, account: str, name: str, policy_name: str | None = None,
                  managed: str | None = None, now: float) -> dict[str, Any]:
    with db.write() as conn:
        _existing(conn, account, name)
        if policy_name is not None:
            if not iam.delete_user_policy(conn, account=account, user_name=name, kind=INLINE,
                                          policy_name=policy_name):
                raise UserProblem(f"user {name} has no inline policy {policy_name}")
            record_change(conn, account=account, event_name="DeleteUserPolicy", now=now,
                          params={"userName": name, "policyName": policy_name},
                          resource=user_resource(account, name))
        if managed is not None:
            managed_policy = managed.removeprefix(ARN_PREFIX)
            if not iam.delete_user_policy(conn, account=account, user_name=name,
                                          kind=MANAGED, policy_name=managed_policy):
                raise UserProblem(f"user {name} has no managed policy {managed_policy}")
            record_change(conn, account=account, event_name="DetachUserPolicy", now=now,
                          params={"userName": name, "policyArn": ARN_PREFIX + managed_policy},
                          resource=user_resource(account, name))
    return describe_user(db, account, name)


def delete_user(db: Database, *, account: str, name: str, now: float) -> None:
    """The user, its policies and its keys (which stop working within seconds)."""
    with db.write() as conn:
        _existing(conn, account, name)
        keys = [r["access_key_id"] for r in iam.list_keys(conn, account)
                if r["user_name"] == name]
        policies = [f"{r['kind']}:{r['policy_name']}"
                    for r in iam.user_policy_rows(conn, account, name)]
        iam.delete_user(conn, account, name)
        record_change(conn, account=account, event_name="DeleteUser", now=now,
                      params={"userName": name}, resource=user_resource(account, name),
                      extra={"deletedAccessKeys": keys, "removedPolicies": policies})


def _described(user: Any, policies: Sequence[Any], keys: Sequence[Any]) -> dict[str, Any]:
    return {"UserName": user["name"], "Account": user["account"],
            "Arn": user_arn(user["account"], user["name"]), "UserId": user["user_id"],
            "CreatedAt": _iso(user["created_at"]),
            "InlinePolicies": [p["policy_name"] for p in policies if p["kind"] == INLINE],
            "ManagedPolicies": [p["policy_name"] for p in policies if p["kind"] == MANAGED],
            "AccessKeys": [{"AccessKeyId": k["access_key_id"], "Status": k["status"]}
                           for k in keys]}


def describe_user(db: Database, account: str, name: str) -> dict[str, Any]:
    with db.read() as conn:
        user = iam.get_user(conn, account, name)
        if user is None:
            raise UserProblem(f"no user {name} in account {account}")
        policies = iam.user_policy_rows(conn, account, name)
        keys = [k for k in iam.list_keys(conn, account) if k["user_name"] == name]
    return _described(user, policies, keys)


def list_users(db: Database, account: str | None = None) -> list[dict[str, Any]]:
    with db.read() as conn:
        found = iam.list_users(conn, account)
        policies = iam.policies_of_users(conn, account)
        keys = iam.list_keys(conn, account)
    return [_described(
        u, [p for p in policies if (p["account"], p["user_name"]) == (u["account"], u["name"])],
        [k for k in keys if (k["account"], k["user_name"]) == (u["account"], u["name"])])
        for u in found]
