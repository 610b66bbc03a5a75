"""Who is calling and where: the one place account and region are decided."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    account: str
    region: str
    principal_arn: str  # arn:aws:iam::<account>:root, or arn:aws:iam::<account>:user/<name>
    request_id: str = ""
    # What the audit record and the policies' condition keys need to know of the request.
    access_key_id: str = ""
    source_ip: str = ""
    user_agent: str = ""
    secure_transport: bool = False
    # The operation whose authorization the API already decided (before throttling): the
    # handler table does not decide it again. Empty: the handler table decides.
    authorized: str = ""
