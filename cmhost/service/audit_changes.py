"""Audit records of changes made with the `cmhost` command (users, keys, policies): IAM's event
names, the account's root as the identity (invoked by cmhost-cli, with the operating-system
user who ran it), written in the transaction of the change."""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from cmhost import __version__
from cmhost.service.audit import IAM_SOURCE, CallRecord, Resource, root_arn, write_now

CLI_SOURCE_IP = "cmhost-cli"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container, say)
        return "unknown"


def record_change(conn: Connection, *, account: str, event_name: str, now: float,
                  params: Mapping[str, Any], response: Mapping[str, Any] | None = None,
                  resource: Resource | None = None,
                  extra: Mapping[str, Any] | None = None) -> CallRecord:
    """Write the record of a change made by the CLI in `conn`'s transaction."""
    record = CallRecord(
        account=account, region="us-east-1",  # IAM is global: CloudTrail puts it here
        event_source=IAM_SOURCE, event_name=event_name, event_time=now,
        principal_arn=root_arn(account), user_name="root", user_id=None,
        invoked_by=CLI_SOURCE_IP, access_key_id=None, source_ip=CLI_SOURCE_IP,
        user_agent=f"cmhost-cli/{__version__}", request_id=str(uuid.uuid4()),
        read_only=False, request_parameters=dict(params),
        response_elements=dict(response) if response is not None else None,
        resources=(resource,) if resource is not None else (),
        additional={"operatingSystemUser": _os_user(), **(extra or {})})
    write_now(conn, record)
    return record


def user_resource(account: str, name: str) -> Resource:
    return Resource("AWS::IAM::User", name, f"arn:aws:iam::{account}:user/{name}")


def key_resource(access_key_id: str) -> Resource:
    return Resource("AWS::IAM::AccessKey", access_key_id)
