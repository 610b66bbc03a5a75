"""The EC2 network a server is shown in: its account's default subnet and its security group.

The original service launched a server in a default subnet chosen by EC2 and created a
security group for it unless CreateServer named them, and always showed both. cmhost runs
no EC2 instance, so the identifiers are derived: the same account and region always give the
same subnet, and a server's id its own group. The derivations must never change: stored
servers and backups hold their results (migration 0007 filled the older ones in).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

_SUBNET_LABEL = b"cmhost default subnet"
_GROUP_LABEL = b"cmhost server security group"


def _id_digits(label: bytes, value: str) -> str:
    """17 lower-case hex digits, as EC2's long resource ids (which start with a 0)."""
    return "0" + hmac.new(label, value.encode(), hashlib.sha256).hexdigest()[:16]


def default_subnet_id(account: str, region: str) -> str:
    """`subnet-` + 17 hex digits: the default subnet of `account` in `region`."""
    return "subnet-" + _id_digits(_SUBNET_LABEL, f"{account}/{region}")


def security_group_id(server_id: str) -> str:
    """`sg-` + 17 hex digits: the security group made for the server with id `server_id`."""
    return "sg-" + _id_digits(_GROUP_LABEL, server_id)


def server_network(server_id: str, account: str, region: str, *,
                   security_group_ids: Sequence[str] | None,
                   subnet_ids: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(SecurityGroupIds, SubnetIds) of a new server: what CreateServer named, each one
    defaulted on its own as the API reference says (security groups named without subnets
    live in the default subnet's VPC; subnets named without groups get a new group)."""
    groups = list(security_group_ids) if security_group_ids else [security_group_id(server_id)]
    subnets = list(subnet_ids) if subnet_ids else [default_subnet_id(account, region)]
    return groups, subnets
