"""Authorization: whether a caller may make a call, decided as IAM decides it from the policies
of the calling user (an account's root may do everything).

Each operation is checked against one resource (see RESOURCES and the README's table): the
server's ARN for an operation on a server (looked up by name in the caller's account and
region; a server that does not exist is checked as `arn:aws:opsworks-cm:<region>:<account>:
server/<name>/*`, so a policy for `server/team-a-*` decides a CreateServer of `team-a-web`
and a missing team-b server is denied rather than found missing), the backup's ARN for a
backup, the ResourceArn for the tag operations, and `*` for the calls on no one resource.

A user's policies are read from the database at most every `ttl` seconds: a change (a
policy attached, a user deleted) takes effect within that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cmhost.service.access_managed import POLICIES as MANAGED
from cmhost.service.context import Caller
from cmhost.service.errors import ServiceError
from cmhost.service.policies import (
    ContextValue,
    Decision,
    Policy,
    PolicyError,
    Statement,
    decide,
    denial_message,
    read_policy,
    statements_for,
)
from cmhost.storage import iam
from cmhost.storage.db import Database

# How each operation names its resource: the kind and the input member holding it. "server?":
# the server when the member is given, `*` otherwise; DescribeBackups names a backup or a
# server or neither.
RESOURCES: dict[str, tuple[str, str]] = {
    "CreateServer": ("server", "ServerName"),
    "DeleteServer": ("server", "ServerName"),
    "UpdateServer": ("server", "ServerName"),
    "DescribeEvents": ("server", "ServerName"),
    "StartMaintenance": ("server", "ServerName"),
    "RestoreServer": ("server", "ServerName"),
    "CreateBackup": ("server", "ServerName"),
    "AssociateNode": ("server", "ServerName"),
    "DisassociateNode": ("server", "ServerName"),
    "DescribeNodeAssociationStatus": ("server", "ServerName"),
    "ExportServerEngineAttribute": ("server", "ServerName"),
    "UpdateServerEngineAttributes": ("server", "ServerName"),
    "DescribeServers": ("server?", "ServerName"),
    "DeleteBackup": ("backup", "BackupId"),
    "DescribeBackups": ("backup?", "BackupId"),
    "TagResource": ("arn", "ResourceArn"),
    "UntagResource": ("arn", "ResourceArn"),
    "ListTagsForResource": ("arn", "ResourceArn"),
    "DescribeAccountAttributes": ("*", ""),
    "LookupEvents": ("*", ""),
}
# Tags a call asks to put on a resource (aws:RequestTag/KEY and aws:TagKeys).
REQUEST_TAGS = {"CreateServer": "Tags", "CreateBackup": "Tags", "TagResource": "Tags"}


class AccessDeniedException(ServiceError):
    code = "AccessDeniedException"


@dataclass(frozen=True)
class Plan:
    """What can decide a call of one action: the statements covering it, and whether their
    verdict can depend on the resource (a Resource other than `*`, a NotResource, a resource
    tag or a policy variable), on its tags, on the request's condition keys. What nothing
    depends on is not looked up."""

    entries: tuple[tuple[Statement, bool], ...]
    uses_resource: bool
    uses_resource_tags: bool
    uses_context: bool


def _plan(policies: Sequence[Policy], action: str) -> Plan:
    entries = tuple(statements_for(policies, action))
    uses_resource = uses_tags = uses_context = False
    for statement, variables in entries:
        has_variables = variables and "${" in repr(statement)
        if statement.not_resource or any(r != "*" for r in statement.resources) \
                or has_variables:
            uses_resource = True
        if statement.conditions or has_variables:
            uses_context = True
        if any(c.key.startswith("aws:resourcetag/") for c in statement.conditions):
            uses_tags = uses_resource = True
    return Plan(entries, uses_resource, uses_tags, uses_context)


@dataclass(frozen=True)
class Principal:
    """What authorization knows of a caller: the account's root, or a user and its policies."""

    account: str
    user_name: str | None  # None: the root
    user_id: str | None = None
    exists: bool = True  # False: a user ARN whose user was deleted
    policies: tuple[Policy, ...] = ()
    # Plans by action, made on first use (a Principal lives as long as its cache entry).
    plans: dict[str, Plan] = field(default_factory=dict, compare=False, repr=False)

    @property
    def root(self) -> bool:
        return self.user_name is None

    def plan(self, action: str) -> Plan:
        found = self.plans.get(action)
        if found is None:
            found = self.plans[action] = _plan(self.policies, action)
        return found


@dataclass
class Target:
    """The resource a call is checked against, as far as it was looked up."""

    arn: str  # "*" for calls on no one resource
    kind: str  # server | backup | arn | *
    name: str | None = None  # the server's name or the backup's id, as given
    tags: dict[str, str] | None = None  # the resource's tags, once read
    request_tags: dict[str, str] = field(default_factory=dict)
    tag_keys: list[str] | None = None  # aws:TagKeys


def _principal(account: str, user_name: str, user_id: str, policies: Sequence[Policy]
               ) -> Principal:
    return Principal(account=account, user_name=user_name, user_id=user_id,
                     policies=tuple(policies))


def user_name_of(principal_arn: str, account: str) -> str | None:
    """The user an ARN names in `account`; None for the root. ValueError for anything else."""
    prefix = f"arn:aws:iam::{account}:"
    if not principal_arn.startswith(prefix):
        raise ValueError(f"{principal_arn} is not a principal of account {account}")
    rest = principal_arn[len(prefix):]
    if rest == "root":
        return None
    if rest.startswith("user/") and len(rest) > 5:
        return rest.rsplit("/", 1)[1]
    raise ValueError(f"{principal_arn} is neither the root nor a user")


def load_policies(rows: Sequence[Any]) -> list[Policy]:
    """A user's policy rows as policies (stored documents were checked when attached)."""
    out: list[Policy] = []
    for row in rows:
        if row["kind"] == "managed":
            managed = MANAGED.get(row["policy_name"])
            if managed is not None:
                out.append(managed)
        else:
            try:
                out.append(read_policy(row["document"], row["policy_name"]))
            except PolicyError:
                continue  # cannot happen for a document checked at attach time: grants nothing
    return out


class Access:
    """Decides calls; users' policies are cached for `ttl` seconds."""

    def __init__(self, db: Database, now: Callable[[], float], *, ttl: float = 2.0) -> None:
        self.db = db
        self.now = now  # cmhost's clock: aws:CurrentTime
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, Principal]] = {}
        self._lock = threading.Lock()
        self._time_text: tuple[int, str] = (0, "")

    # --- who ------------------------------------------------------------------------

    @staticmethod
    def root_caller(caller: Caller) -> bool:
        """Whether the caller is its account's root (which may do everything)."""
        arn = caller.principal_arn
        return arn.endswith(":root") and arn == f"arn:aws:iam::{caller.account}:root"

    def principal(self, caller: Caller) -> Principal:
        try:
            user = user_name_of(caller.principal_arn, caller.account)
        except ValueError:
            return Principal(account=caller.account, user_name="?", exists=False)
        if user is None:
            return Principal(account=caller.account, user_name=None)
        key = (caller.account, user)
        stamp = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > stamp:
            return hit[1]
        with self.db.read() as conn:
            row = iam.get_user(conn, caller.account, user)
            rows = iam.user_policy_rows(conn, caller.account, user) if row else []
        if row is None:
            found = Principal(account=caller.account, user_name=user, exists=False)
        else:
            found = _principal(caller.account, user, row["user_id"], load_policies(rows))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (stamp + self.ttl, found)
        return found

    # --- the decision ---------------------------------------------------------------

    def authorize(self, caller: Caller, action: str, operation: str,
                  params: Mapping[str, Any]) -> tuple[Principal, Target | None]:
        """The caller's principal and the target looked up (None when none was needed);
        AccessDeniedException with IAM's message when the call is not allowed."""
        principal = self.principal(caller)
        if principal.root:
            return principal, None
        if not principal.exists:
            missing = self.target(caller, operation, params, tags=False)
            raise AccessDeniedException(denial_message(
                caller.principal_arn, action, missing.arn,
                Decision(allowed=False, explicit_deny=False)))
        plan = principal.plan(action)
        target: Target | None = None
        resource = "*"
        if plan.uses_resource:
            target = self.target(caller, operation, params, tags=plan.uses_resource_tags)
            resource = target.arn
        context: dict[str, ContextValue] = {}
        if plan.uses_context:
            if target is None:
                target = self.target(caller, operation, params, tags=False)
            context = self.context(caller, principal, target, plan.uses_resource_tags)
        decision = decide(plan.entries, resource, context)
        if not decision.allowed:
            if target is None:
                target = self.target(caller, operation, params, tags=False)
            raise AccessDeniedException(denial_message(caller.principal_arn, action,
                                                       target.arn, decision))
        return principal, target

    def context(self, caller: Caller, principal: Principal, target: Target,
                resource_tags: bool) -> dict[str, ContextValue]:
        """The condition keys of a call (names as policies.context_key makes them)."""
        now = self.now()
        second = int(now)
        if self._time_text[0] != second:
            self._time_text = (second, datetime.fromtimestamp(second, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"))
        out: dict[str, ContextValue] = {
            "aws:currenttime": self._time_text[1], "aws:epochtime": str(second),
            "aws:securetransport": "true" if caller.secure_transport else "false",
            "aws:principalarn": caller.principal_arn, "aws:principalaccount": caller.account,
            "aws:principaltype": "User" if principal.user_name else "Account",
            "aws:requestedregion": caller.region,
        }
        if caller.source_ip:
            out["aws:sourceip"] = caller.source_ip
        if principal.user_name is not None:
            out["aws:username"] = principal.user_name
            out["aws:userid"] = principal.user_id or principal.user_name
        for key, value in target.request_tags.items():
            out[f"aws:requesttag/{key}"] = value
        if target.tag_keys is not None:
            out["aws:tagkeys"] = list(target.tag_keys)
        if target.tags is None and resource_tags:
            target.tags = self._tags(caller, target.arn)
        for key, value in (target.tags or {}).items():
            out[f"aws:resourcetag/{key}"] = value
        return out

    # --- the resource ---------------------------------------------------------------

    def target(self, caller: Caller, operation: str, params: Mapping[str, Any], *,
               tags: bool) -> Target:
        kind, member = RESOURCES.get(operation, ("*", ""))
        value = params.get(member) if member else None
        given = value if isinstance(value, str) and value else None
        if kind == "backup?":
            if given is None and isinstance(params.get("ServerName"), str):
                kind, given = "server", params["ServerName"]
            else:
                kind = "backup" if given is not None else "*"
        elif kind == "server?":
            kind = "server" if given is not None else "*"
        if kind == "*":
            target = Target(arn="*", kind="*")
        elif kind == "server":
            target = Target(arn=self._server_arn(caller, given or "*"), kind="server",
                            name=given)
        elif kind == "backup":
            target = Target(arn=self._backup_arn(caller, given or "*"), kind="backup",
                            name=given)
        else:
            target = Target(arn=given or "*", kind="arn", name=given)
        request_tags = params.get(REQUEST_TAGS.get(operation, ""))
        if isinstance(request_tags, list):
            for tag in request_tags:
                if isinstance(tag, dict) and isinstance(tag.get("Key"), str):
                    value = tag.get("Value")
                    target.request_tags[tag["Key"]] = value if isinstance(value, str) else ""
            target.tag_keys = list(target.request_tags)
        if operation == "UntagResource" and isinstance(params.get("TagKeys"), list):
            target.tag_keys = [k for k in params["TagKeys"] if isinstance(k, str)]
        if tags and target.arn != "*":
            target.tags = self._tags(caller, target.arn)
        return target

    def _server_arn(self, caller: Caller, name: str) -> str:
        rows = self.db.fetch(iam.SERVER_ARN_BY_NAME, cached=True, params={
            "account": caller.account, "region": caller.region, "name": name})
        if rows:
            return str(rows[0][0])
        return f"arn:aws:opsworks-cm:{caller.region}:{caller.account}:server/{name}/*"

    def _backup_arn(self, caller: Caller, backup_id: str) -> str:
        with self.db.read() as conn:
            arn = iam.backup_arn(conn, caller.account, caller.region, backup_id)
        return arn or f"arn:aws:opsworks-cm:{caller.region}:{caller.account}:backup/{backup_id}"

    def _tags(self, caller: Caller, arn: str) -> dict[str, str]:
        parts = arn.split(":", 5)
        if "*" in arn or len(parts) != 6 or parts[3] != caller.region \
                or parts[4] != caller.account:
            return {}  # a resource that does not exist, or is not the caller's, has none
        with self.db.read() as conn:
            return iam.tags_of(conn, arn)
