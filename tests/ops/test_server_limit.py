"""An account's own server limit (`cmhost accounts set-limits --server-limit`), through boto3:
CreateServer counts the account's servers in the caller's region, and a name already taken is
reported before the limit."""

from __future__ import annotations

from typing import Any

from tests.ops.helpers import ACCOUNT, expect_error, quiet_windows
from tests.support import SERVER_DEFAULTS, Cmhost, create_server


def _params(cmhost: Cmhost, name: str) -> dict[str, Any]:
    return {**SERVER_DEFAULTS, "ServerName": name, "Engine": "ChefAutomate",
            **quiet_windows(cmhost)}


def _server_limit(client: Any) -> tuple[int, int]:
    attrs = {a["Name"]: a for a in client.describe_account_attributes()["Attributes"]}
    return attrs["ServerLimit"]["Maximum"], attrs["ServerLimit"]["Used"]


def test_third_server_exceeds_a_limit_of_two_in_its_region(cmhost: Cmhost, client: Any) -> None:
    cmhost.cli("accounts", "set-limits", "--account", ACCOUNT, "--server-limit", "2",
               *cmhost.storage_args())
    assert _server_limit(client) == (2, 0)
    create_server(client, "lim-one", "Chef", **quiet_windows(cmhost))
    create_server(client, "lim-two", "Puppet", **quiet_windows(cmhost))
    assert _server_limit(client) == (2, 2)

    error = expect_error(client.create_server, "LimitExceededException",
                         **_params(cmhost, "lim-three"))
    assert "maximum number of servers (2)" in error["Message"]
    # A taken name is the answer even at the limit: the server exists, nothing is created.
    expect_error(client.create_server, "ResourceAlreadyExistsException",
                 **_params(cmhost, "lim-one"))
    names = sorted(s["ServerName"] for s in client.describe_servers()["Servers"])
    assert names == ["lim-one", "lim-two"]

    # Another region of the same account has its own count under the same limit.
    west = cmhost.client(region="eu-west-1")
    assert _server_limit(west) == (2, 0)
    create_server(west, "lim-three", "Chef", **quiet_windows(cmhost))
    assert _server_limit(west) == (2, 1)

    cmhost.cli("accounts", "set-limits", "--account", ACCOUNT, "--server-limit", "3",
               *cmhost.storage_args())
    create_server(client, "lim-three", "Chef", **quiet_windows(cmhost))
    assert _server_limit(client) == (3, 3)
