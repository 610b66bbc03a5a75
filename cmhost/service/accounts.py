"""Accounts: DescribeAccountAttributes and per-account limits."""

from __future__ import annotations

from dataclasses import dataclass

from cmhost.service.context import Caller
from cmhost.service.runtime import Runtime
from cmhost.storage import repo


@dataclass(frozen=True)
class AccountAttribute:
    name: str
    maximum: int
    used: int


def describe_account_attributes(rt: Runtime, caller: Caller) -> list[AccountAttribute]:
    with rt.db.read() as conn:
        account = repo.get_account(conn, caller.account)
        servers = repo.count_servers(conn, caller.account, caller.region)
        backups = repo.count_manual_backups(conn, caller.account, caller.region)
    server_limit = account["server_limit"] if account and account["server_limit"] is not None \
        else rt.settings.server_limit
    backup_limit = account["backup_limit"] if account and account["backup_limit"] is not None \
        else rt.settings.backup_limit
    return [
        AccountAttribute("ServerLimit", int(server_limit), servers),
        AccountAttribute("ManualBackupLimit", int(backup_limit), backups),
    ]


def set_limits(rt: Runtime, account: str, *, server_limit: int | None,
               backup_limit: int | None) -> None:
    with rt.db.write() as conn:
        repo.set_account_limits(conn, account, rt.clock.now(), server_limit=server_limit,
                                backup_limit=backup_limit)
