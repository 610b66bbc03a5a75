"""What a fault is: the JSON that arms one, checked field by field, and the armed fault."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from cmhost.service import states
from cmhost.service.errors import ValidationException

KINDS = ("fail_job", "server_status", "error", "latency")
# The jobs a fail_job fault may fail, by the name it is armed with.
JOBS = ("create_server", "delete_server", "backup", "restore", "maintenance",
        "associate_node", "disassociate_node", "update_engine_attributes")
# What a server_status fault may hold a server in.
HOLD_STATUSES = (states.UNHEALTHY, states.CONNECTION_LOST, states.FAILED, states.TERMINATED)

DEFAULT_EXPIRES_IN = 3600.0
MAX_SECONDS = 10 * 365 * 86400.0
MAX_LATENCY = 300.0
MAX_TEXT = 4096

_COMMON = {"kind", "account", "server_name", "count", "probability", "expires_in"}
_FIELDS = {
    "fail_job": _COMMON | {"job", "status_reason"},
    "server_status": _COMMON | {"status", "duration", "status_reason"},
    "error": _COMMON | {"operation", "code", "message", "http_status"},
    "latency": _COMMON | {"operation", "latency"},
}
_ACCOUNT = re.compile(r"[0-9]{12}")
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,127}")


@dataclass(frozen=True)
class Fault:
    """An armed fault, as stored. `remaining` None: no count, it fires until it expires."""

    id: str
    kind: str
    job: str | None
    operation: str | None
    account: str | None
    server_name: str | None
    remaining: int | None
    probability: float
    fired: int
    settings: Mapping[str, Any]
    created_at: float
    expires_at: float
    holds: tuple[Mapping[str, Any], ...] = field(default=())

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> Fault:
        return cls(id=row["id"], kind=row["kind"], job=row["job"], operation=row["operation"],
                   account=row["account"], server_name=row["server_name"],
                   remaining=row["remaining"], probability=float(row["probability"]),
                   fired=int(row["fired"]), settings=dict(row["settings"] or {}),
                   created_at=float(row["created_at"]), expires_at=float(row["expires_at"]))

    def armed(self, now: float) -> bool:
        """Whether it may still fire: not expired, and its count not used up."""
        return self.expires_at > now and (self.remaining is None or self.remaining > 0)

    def covers(self, account: str | None, server_name: str | None) -> bool:
        """Whether the fault applies to this account and server (None: not known, which
        matches only a fault that names no account, or no server)."""
        if self.account is not None and account != self.account:
            return False
        if self.server_name is not None:
            return server_name is not None and fnmatchcase(server_name, self.server_name)
        return True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind}
        if self.job is not None:
            out["job"] = self.job
        if self.operation is not None or self.kind in ("error", "latency"):
            out["operation"] = self.operation
        out.update(self.settings)
        out.update({"account": self.account, "server_name": self.server_name,
                    "remaining": self.remaining, "probability": self.probability,
                    "fired": self.fired, "created_at": round(self.created_at, 3),
                    "expires_at": round(self.expires_at, 3)})
        if self.kind == "server_status":
            out["holds"] = [dict(h) for h in self.holds]
        return out


@dataclass(frozen=True)
class FaultSpec:
    """A checked request to arm a fault (what `parse` returns)."""

    kind: str
    job: str | None
    operation: str | None
    account: str | None
    server_name: str | None
    count: int | None
    probability: float
    expires_in: float
    settings: dict[str, Any]


def _fail(message: str) -> ValidationException:
    return ValidationException(message)


def _number(body: Mapping[str, Any], name: str, *, low: float, high: float,
            default: float | None = None, low_open: bool = False) -> float:
    value = body.get(name, default)
    if value is None:
        raise _fail(f"'{name}' is required for a {body['kind']} fault.")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value > high or value < low or (low_open and value == low):
        bound = f"more than {low:g}" if low_open else f"at least {low:g}"
        raise _fail(f"'{name}' must be a number of {bound} and at most {high:g}; "
                    f"got {value!r}.")
    return float(value)


def _text(body: Mapping[str, Any], name: str, *, required: bool = False,
          default: str | None = None) -> str | None:
    value = body.get(name, default)
    if value is None:
        if required:
            raise _fail(f"'{name}' is required for a {body['kind']} fault.")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT \
            or "\x00" in value or not _storable(value):
        raise _fail(f"'{name}' must be a non-empty string of at most {MAX_TEXT} characters.")
    return value


def _storable(value: str) -> bool:
    """Whether the text can be stored (UTF-8: no unpaired surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _choice(body: Mapping[str, Any], name: str, choices: Collection[str]) -> str:
    value = body.get(name)
    if value not in choices:
        shown = "missing" if value is None else repr(value)
        raise _fail(f"'{name}' must be one of {', '.join(sorted(choices))}; it is {shown}.")
    return str(value)


def parse(body: Any, operations: Collection[str]) -> FaultSpec:
    """The fault `body` asks for; a ValidationException naming the first thing wrong with it.
    `operations` are the names an error or latency fault may be armed on."""
    if not isinstance(body, Mapping):
        raise _fail("Expected a JSON object describing the fault, with at least \"kind\".")
    kind = _choice(body, "kind", KINDS)
    unknown = sorted(set(body) - _FIELDS[kind])
    if unknown:
        raise _fail(f"A {kind} fault takes no {', '.join(repr(u) for u in unknown)}; its fields "
                    f"are {', '.join(sorted(_FIELDS[kind]))}.")
    account = body.get("account")
    if account is not None and (not isinstance(account, str) or not _ACCOUNT.fullmatch(account)):
        raise _fail(f"'account' must be a 12-digit account ID; got {account!r}.")
    server_name = _text(body, "server_name")
    count = body.get("count", 1)
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                              or not 1 <= count <= 1_000_000):
        raise _fail(f"'count' must be an integer from 1 to 1000000, or null for no count "
                    f"(the fault fires until it expires); got {count!r}.")
    probability = _number(body, "probability", low=0.0, high=1.0, default=1.0)
    expires_in = _number(body, "expires_in", low=0.0, high=MAX_SECONDS,
                         default=DEFAULT_EXPIRES_IN, low_open=True)
    job = operation = None
    settings: dict[str, Any] = {}
    if kind == "fail_job":
        job = _choice(body, "job", JOBS)
        settings["status_reason"] = _text(body, "status_reason", required=True)
    elif kind == "server_status":
        settings["status"] = _choice(body, "status", HOLD_STATUSES)
        settings["duration"] = _number(body, "duration", low=0.0, high=MAX_SECONDS,
                                       low_open=True)
        settings["status_reason"] = _text(body, "status_reason")
    else:
        operation = body.get("operation")
        if operation is not None and operation not in operations:
            raise _fail(f"'operation' must name an OpsWorks CM operation (such as "
                        f"CreateBackup), or be left out for every operation; got "
                        f"{operation!r}.")
        if kind == "error":
            code = body.get("code")
            if not isinstance(code, str) or not _CODE.fullmatch(code):
                raise _fail("'code' must be an AWS error code, such as ThrottlingException "
                            "(a letter, then letters, digits, '_' or '.'); got "
                            f"{code!r}.")
            status = body.get("http_status", 400)
            if isinstance(status, bool) or not isinstance(status, int) \
                    or not 400 <= status <= 599:
                raise _fail(f"'http_status' must be an integer from 400 to 599; got "
                            f"{status!r}.")
            settings.update(code=code, message=_text(body, "message", default=code),
                            http_status=status)
        else:
            settings["latency"] = _number(body, "latency", low=0.0, high=MAX_LATENCY,
                                          low_open=True)
    return FaultSpec(kind=kind, job=job, operation=operation, account=account,
                     server_name=server_name, count=count, probability=probability,
                     expires_in=expires_in, settings=settings)
