"""The `cmhost keys`, `cmhost users` and `cmhost audit` commands: who may call, and who did."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cmhost.storage.db import Database
from cmhost.storage.secrets import SecretBox


def _fail(message: str) -> int:
    print(f"cmhost: error: {message}", file=sys.stderr)
    return 2


def _account_ok(account: str | None) -> bool:
    return account is None or (len(account) == 12 and account.isdigit())


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[str(r.get(c) if r.get(c) is not None else "-") for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def cmd_keys(args: argparse.Namespace, db: Database, box: SecretBox) -> int:
    from cmhost.service import keys

    if not _account_ok(getattr(args, "account", None)):
        return _fail("--account must be a 12-digit account ID")
    try:
        if args.keys_command == "create":
            issued = keys.issue_key(db, box, account=args.account, user=args.user,
                                    now=time.time())
            shown = {"AccessKeyId": issued.access_key_id,
                     "SecretAccessKey": issued.secret_access_key, "Account": issued.account}
            if issued.user_name is not None:
                shown["UserName"] = issued.user_name
            print(json.dumps(shown))
            return 0
        if args.keys_command == "list":
            listed = keys.list_keys(db, args.account)
            if args.format == "table":
                print(_table(listed, ["AccessKeyId", "Account", "UserName", "Status",
                                      "CreatedAt", "LastUsedAt"]))
            else:
                print(json.dumps(listed, indent=2))
            return 0
        if args.keys_command == "delete":
            if not keys.delete_key(db, args.access_key_id):
                return _fail(f"no access key {args.access_key_id}")
            return 0
        status = keys.ACTIVE if args.keys_command == "activate" else keys.INACTIVE
        keys.set_status(db, args.access_key_id, status, now=time.time())
        return 0
    except keys.KeyProblem as exc:
        return _fail(str(exc))


def _inline(path: Path, name: str | None) -> Any:
    from cmhost.service.users import InlinePolicy, UserProblem

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserProblem(f"cannot read the policy file {path}: {exc}") from None
    return InlinePolicy(name=name or path.name.removesuffix(".json"), text=text)


def cmd_users(args: argparse.Namespace, db: Database) -> int:
    from cmhost.service import users

    if not _account_ok(getattr(args, "account", None)):
        return _fail("--account must be a 12-digit account ID")
    now = time.time()
    try:
        if args.users_command == "create":
            found = users.create_user(db, account=args.account, name=args.name,
                                      policies=[_inline(p, None) for p in args.policy],
                                      managed=args.managed, now=now)
            print(json.dumps(found, indent=2))
        elif args.users_command == "list":
            listed = users.list_users(db, args.account)
            if args.format == "table":
                rows = [{**u, "InlinePolicies": ",".join(u["InlinePolicies"]) or None,
                         "ManagedPolicies": ",".join(u["ManagedPolicies"]) or None,
                         "Keys": len(u["AccessKeys"])} for u in listed]
                print(_table(rows, ["Account", "UserName", "CreatedAt", "InlinePolicies",
                                    "ManagedPolicies", "Keys"]))
            else:
                print(json.dumps(listed, indent=2))
        elif args.users_command == "delete":
            users.delete_user(db, account=args.account, name=args.name, now=now)
        elif args.users_command == "attach-policy":
            if (args.policy is None) == (args.managed is None):
                return _fail("give one of --policy FILE and --managed NAME")
            policy = _inline(args.policy, args.policy_name) if args.policy else None
            print(json.dumps(users.attach_policy(db, account=args.account, name=args.name,
                                                 policy=policy, managed=args.managed,
                                                 now=now), indent=2))
        else:
            if (args.policy_name is None) == (args.managed is None):
                return _fail("give one of --policy-name NAME and --managed NAME")
            print(json.dumps(users.detach_policy(db, account=args.account, name=args.name,
                                                 policy_name=args.policy_name,
                                                 managed=args.managed, now=now), indent=2))
    except (users.UserProblem, ValueError) as exc:
        return _fail(str(exc))
    return 0


def parse_time(text: str, flag: str) -> float:
    """Epoch seconds from ISO 8601 (naive: UTC) or from a number."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{flag} {text!r} is neither ISO 8601 (2024-05-01T12:00:00Z) nor "
                         "epoch seconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def cmd_audit(args: argparse.Namespace, db: Database) -> int:
    from cmhost.service.audit import record_of, record_text
    from cmhost.service.audit_lookup import Query, records

    if not _account_ok(args.account):
        return _fail("--account must be a 12-digit account ID")
    try:
        start = parse_time(args.since, "--since") if args.since else None
        end = parse_time(args.until, "--until") if args.until else None
    except ValueError as exc:
        return _fail(str(exc))
    if args.limit < 1:
        return _fail("--limit must be 1 or more")
    attributes = [(k, v) for k, v in (("Username", args.user), ("EventName", args.event_name))
                  if v]
    query = Query(account=args.account, region=args.region, attributes=tuple(attributes),
                  start=start, end=end)
    found, _ = records(db, query, limit=args.limit, one_attribute=False)
    found = found[:args.limit]
    if args.format == "json":
        for row in found:
            print(record_text(row))
        return 0
    shown = []
    for row in found:
        record = record_of(row)
        shown.append({"Time": record["eventTime"], "Account": row["account"],
                      "Region": row["region"], "Event": row["event_name"],
                      "User": row["user_name"], "Source IP": record.get("sourceIPAddress"),
                      "Error": record.get("errorCode"),
                      "Resource": row["resource_name"]})
    print(_table(shown, ["Time", "Account", "Region", "Event", "User", "Source IP", "Error",
                         "Resource"]))
    return 0
