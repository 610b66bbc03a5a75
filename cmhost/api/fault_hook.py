"""The operation hook of error and latency faults: an armed fault delays a call or answers it
with the AWS error it names (code, message, HTTP status), as the service would."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import Any

from cmhost.api.errors import ApiError
from cmhost.api.protocol import BeforeOperation
from cmhost.service.context import Caller
from cmhost.service.faults import Faults


class InjectedError(ApiError):
    """The error an error fault answers with."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def fault_hook(faults: Faults, executor: Executor) -> BeforeOperation:
    """A `before` hook: delays the call by each latency fault that fires, then raises the
    error of the error fault that fires, if any. A call no armed fault covers costs no query
    (the armed faults are read again at most once a second, in a thread)."""

    refreshing: list[asyncio.Future[None]] = []  # the read under way, awaited by all

    async def before(caller: Caller, operation: str, params: Mapping[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        if faults.stale():
            if not refreshing or refreshing[0].done():
                refreshing[:] = [loop.run_in_executor(executor, faults.refresh)]
            await refreshing[0]
        server_name = params.get("ServerName")
        server_name = server_name if isinstance(server_name, str) else None
        if not faults.for_call(faults.cached(), operation, caller.account, server_name):
            return
        fired = await loop.run_in_executor(executor, faults.fire_call, operation,
                                           caller.account, server_name)
        delay = sum(float(f.settings["latency"]) for f in fired if f.kind == "latency")
        if delay > 0:
            await asyncio.sleep(delay)
        for fault in fired:
            if fault.kind == "error":
                settings = fault.settings
                raise InjectedError(str(settings["code"]), str(settings["message"]),
                                    int(settings["http_status"]))

    return before
