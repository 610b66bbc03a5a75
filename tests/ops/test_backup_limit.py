"""The manual backup limit of an account (`cmhost accounts set-limits --backup-limit`)."""

from __future__ import annotations

from typing import Any

from tests.ops.helpers import ACCOUNT, backup_now, expect_error, healthy_server, settle
from tests.support import Cmhost


def _manual_limit(client: Any) -> tuple[int, int]:
    attrs = {a["Name"]: a for a in client.describe_account_attributes()["Attributes"]}
    return attrs["ManualBackupLimit"]["Maximum"], attrs["ManualBackupLimit"]["Used"]


def test_third_manual_backup_exceeds_a_limit_of_two(cmhost: Cmhost, client: Any) -> None:
    cmhost.cli("accounts", "set-limits", "--account", ACCOUNT, "--backup-limit", "2",
               *cmhost.storage_args())
    assert _manual_limit(client) == (2, 0)
    healthy_server(cmhost, client, "lim-chef")
    first = backup_now(cmhost, client, "lim-chef")
    backup_now(cmhost, client, "lim-chef")
    assert _manual_limit(client) == (2, 2)

    expect_error(client.create_backup, "LimitExceededException", ServerName="lim-chef")
    assert client.describe_servers(ServerName="lim-chef")["Servers"][0]["Status"] == "HEALTHY"
    assert len(client.describe_backups(ServerName="lim-chef")["Backups"]) == 2

    # Automated backups (maintenance takes one) are not limited.
    client.start_maintenance(ServerName="lim-chef")
    settle(cmhost)
    assert len(client.describe_backups(ServerName="lim-chef")["Backups"]) == 3

    client.delete_backup(BackupId=first["BackupId"])
    settle(cmhost)
    assert _manual_limit(client) == (2, 1)
    backup_now(cmhost, client, "lim-chef")
    assert _manual_limit(client) == (2, 2)
