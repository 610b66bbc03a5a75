"""Users, keys and policies made through `cmhost`, as an operator would, and their clients."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support import Cmhost, error_code


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: str | list[str], resource: str | list[str] = "*",
          **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: str | list[str], resource: str | list[str] = "*",
         **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def policy_file(cm: Cmhost, name: str, document: dict[str, Any] | str) -> Path:
    path = cm.workdir / "policies" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document, indent=2))
    return path


def make_user(cm: Cmhost, account: str, name: str, *, document: dict[str, Any] | None = None,
              managed: tuple[str, ...] = ()) -> dict[str, Any]:
    args = ["users", "create", name, "--account", account]
    if document is not None:
        args += ["--policy", str(policy_file(cm, f"{name}-policy", document))]
    for item in managed:
        args += ["--managed", item]
    return json.loads(cm.cli(*args, *cm.storage_args()).stdout)


def user_key(cm: Cmhost, account: str, user: str | None = None) -> dict[str, str]:
    args = ["keys", "create", "--account", account] + (["--user", user] if user else [])
    return json.loads(cm.cli(*args, *cm.storage_args()).stdout)


def client_of(cm: Cmhost, key: dict[str, str], service: str = "opsworkscm",
              region: str = "us-east-1") -> Any:
    return boto3.client(service, endpoint_url=cm.url, region_name=region,
                        aws_access_key_id=key["AccessKeyId"],
                        aws_secret_access_key=key["SecretAccessKey"],
                        config=Config(retries={"total_max_attempts": 1}))


def user_client(cm: Cmhost, account: str, name: str, *, document: dict[str, Any] | None = None,
                managed: tuple[str, ...] = ()) -> Any:
    """A new user's client; its key through POST /_cmhost/keys (a process less than the CLI's
    `keys create`, which test_authorization tests itself)."""
    make_user(cm, account, name, document=document, managed=managed)
    key = cm.post("/_cmhost/keys", {"account": account, "user": name})
    assert key["Principal"] == f"arn:aws:iam::{account}:user/{name}"
    return client_of(cm, key)


def refused(call: Callable[..., Any], **params: Any) -> ClientError:
    """The ClientError `call` answers with (it must fail)."""
    try:
        call(**params)
    except ClientError as exc:
        return exc
    raise AssertionError(f"{call} with {params} was not refused")


def denied_message(account: str, user: str, action: str, resource: str, *,
                   explicit: bool = False) -> str:
    why = ("with an explicit deny in an identity-based policy" if explicit
           else f"because no identity-based policy allows the opsworks-cm:{action} action")
    return (f"User: arn:aws:iam::{account}:user/{user} is not authorized to perform: "
            f"opsworks-cm:{action} on resource: {resource} {why}")


def assert_denied(exc: ClientError, message: str) -> None:
    assert error_code(exc) == "AccessDeniedException", exc.response
    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert exc.response["Error"]["Message"] == message


def eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait (real time) until `check()` holds; the caches of keys and policies take seconds."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{check} did not hold within {seconds} s")
        time.sleep(0.25)
