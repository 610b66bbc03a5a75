"""Who is calling and where: the one place account and region are decided."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    account: str
    region: str
    principal_arn: str
    request_id: str = ""
