"""The console's way into the service: the API's own operations, run as the API runs them.

Every console action is an OpsWorks CM operation with its wire parameters: validated by the
model's validator, seen by the app's operation hooks (faults before, metrics and logs after),
and executed by the same handler the API dispatches to, with a Caller built from the
signed-in key. State rules, limits, errors and (in service/) policies therefore cannot differ
between the two faces. What the API adds on top (SigV4, throttling of SDK traffic) is the
protocol's, not a rule of the service: the console's sign-in replaces the first, and the
console's polling must not eat the key's request budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from cmhost.api.errors import ApiError
from cmhost.api.handlers import Handler
from cmhost.api.model import SERVICE
from cmhost.api.protocol import OperationHooks, RequestRecord, new_request_id
from cmhost.api.serialize import RawJson
from cmhost.api.validate import format_violations, validate_input
from cmhost.service.context import Caller
from cmhost.service.errors import ServiceError, ValidationException

log = logging.getLogger("cmhost.console")


@dataclass(frozen=True)
class Identity:
    """Who a console session acts as: the signed-in key's account and principal, in the
    region chosen in the page header."""

    account: str
    region: str
    principal_arn: str
    # The browser's request, for the audit record and the policies' condition keys.
    access_key_id: str = ""
    source_ip: str = ""
    user_agent: str = ""
    secure: bool = False

    def caller(self) -> Caller:
        return Caller(account=self.account, region=self.region,
                      principal_arn=self.principal_arn, request_id=new_request_id(),
                      access_key_id=self.access_key_id, source_ip=self.source_ip,
                      user_agent=self.user_agent, secure_transport=self.secure)


class OperationFailed(Exception):
    """An operation answered with an AWS error: its code and message, as the API sends them."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class Operations:
    def __init__(self, handlers: Mapping[str, Handler], hooks: OperationHooks,
                 executor: Executor, unavailable: Callable[[BaseException], bool]) -> None:
        self._handlers = handlers
        self._hooks = hooks
        self._executor = executor
        self._unavailable = unavailable

    async def call(self, who: Identity, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run operation `name` as `who`; its output, or OperationFailed with the API's
        error code and message."""
        operation = SERVICE.operations[name]
        handler = self._handlers[name]
        caller = who.caller()
        record = RequestRecord(request_id=caller.request_id, operation=name,
                               account=who.account, region=who.region,
                               principal_arn=who.principal_arn)
        try:
            result = await self._run(operation, handler, caller, params)
            record.status = 200
            return json.loads(result) if isinstance(result, RawJson) else result
        except ApiError as exc:
            record.status, record.error_code = exc.status, exc.code
            raise OperationFailed(exc.code, exc.message, exc.status) from None
        except ServiceError as exc:
            record.status, record.error_code = 400, exc.code
            raise OperationFailed(exc.code, exc.message) from None
        except Exception as exc:
            if self._unavailable(exc):
                record.status, record.error_code = 503, "ServiceUnavailable"
                raise OperationFailed(
                    "ServiceUnavailable", "The service is unavailable for the moment (its "
                    "database is busy, unreachable or cannot be written); try again.",
                    503) from None
            log.exception("internal failure in console request %s", caller.request_id)
            record.status, record.error_code = 500, "InternalFailure"
            raise OperationFailed("InternalFailure", "The request processing has failed "
                                  "because of an unknown error.", 500) from None
        finally:
            record.duration = time.perf_counter() - record.started
            for hook in self._hooks.after:
                try:
                    hook(record)
                except Exception:  # a watcher must not break the answer
                    log.exception("a request hook failed for request %s", record.request_id)

    async def _run(self, operation: Any, handler: Handler, caller: Caller,
                   params: dict[str, Any]) -> dict[str, Any] | RawJson:
        problems = validate_input(operation, params)
        if problems:
            raise ValidationException(format_violations(problems))
        for before in self._hooks.before:
            await before(caller, operation.name, params)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, handler, caller, params)

    async def run_service(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A service function that is not an API operation (the console's node list, the
        dashboards), off the event loop, with the same error translation."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except ServiceError as exc:
            raise OperationFailed(exc.code, exc.message) from None
        except Exception as exc:
            if self._unavailable(exc):
                raise OperationFailed("ServiceUnavailable", "The service is unavailable for "
                                      "the moment; try again.", 503) from None
            raise
