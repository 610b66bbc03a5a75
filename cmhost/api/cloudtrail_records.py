"""A call's parameters and response as its CloudTrail record shows them: members named as
CloudTrail names them (serverName), every sensitive member of the model redacted, and what
the console failed to run before reaching the handler table recorded too."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from cmhost.api.model import SERVICE, Shape
from cmhost.api.protocol import RequestRecord
from cmhost.api.serialize import RawJson
from cmhost.service.access_guard import Guard, read_only
from cmhost.service.audit import HIDDEN
from cmhost.service.context import Caller

# Longer strings are cut (a CustomCertificate chain may be megabytes): a record stays small.
MAX_TEXT = 4096
# Values that are secret whatever the model says: an engine attribute's value may be a
# private key, a password or a repository URL with a token (UpdateServerEngineAttributes'
# AttributeValue is not marked sensitive in the model, its EngineAttributeValue cousin is).
ALWAYS_HIDDEN = frozenset({"AttributeValue"})


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _text(value: str) -> str:
    if len(value) <= MAX_TEXT:
        return value
    return value[:MAX_TEXT] + f"...({len(value) - MAX_TEXT} more characters not recorded)"


def redact(value: Any, shape: Shape | None) -> Any:
    """`value` of `shape` for a record: sensitive members HIDDEN, names in camelCase."""
    if shape is not None and shape.sensitive:
        return HIDDEN
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            member = shape.get_member(key) if shape is not None and shape.type == "structure" \
                else None
            if key in ALWAYS_HIDDEN:
                out[_camel(key)] = HIDDEN
            else:
                out[_camel(str(key))] = redact(item, member.shape if member else None)
        return out
    if isinstance(value, list):
        element = shape.member if shape is not None and shape.type == "list" else None
        return [redact(item, element) for item in value]
    if isinstance(value, str):
        return _text(value)
    return value


class OpsWorksCMDescriber:
    """The guard's CallDescriber for OpsWorks CM (and LookupEvents, which has no secret)."""

    def request(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
        if not params:
            return None
        found = SERVICE.operations.get(operation)
        redacted = redact(params, found.input if found is not None else None)
        return redacted if isinstance(redacted, dict) else None

    def response(self, operation: str, result: Any) -> dict[str, Any] | None:
        if read_only(operation):
            return None  # as CloudTrail: reads record no response
        if isinstance(result, RawJson):
            result = json.loads(bytes(result))
        if not isinstance(result, Mapping) or not result:
            return None
        found = SERVICE.operations.get(operation)
        redacted = redact(result, found.output if found is not None else None)
        return redacted if isinstance(redacted, dict) else None


def console_failures(guard: Guard) -> Callable[[RequestRecord], None]:
    """An after hook recording the console's calls that failed before the handler table
    (invalid input, a fault armed on the operation): the API records its own."""

    def hook(record: RequestRecord) -> None:
        if record.audited or record.account is None or record.operation is None:
            return
        if guard.console_call_recorded(record.request_id) or record.error_code is None:
            return
        caller = Caller(account=record.account, region=record.region or "us-east-1",
                        principal_arn=record.principal_arn or "",
                        request_id=record.request_id)
        guard.record_failure(caller, record.operation, {}, record.error_code,
                             record.error_message or record.error_code, console=True)

    return hook
