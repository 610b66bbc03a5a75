"""Arming faults from a test: the fields of POST /_cmhost/faults as keyword arguments, the
test's account by default, and the faults a test armed disarmed when it ends."""

from __future__ import annotations

from typing import Any

from cmhost.admin_client import AdminClient, AdminError

_UNSET: Any = object()


class FaultArming:
    """Faults of one test. Each fault applies to `account` (the test's) unless the call names
    another (`account=None`: every account)."""

    def __init__(self, admin: AdminClient, account: str | None) -> None:
        self.admin = admin
        self.account = account
        self.armed: list[str] = []

    def arm(self, kind: str, *, account: Any = _UNSET, **fields: Any) -> dict[str, Any]:
        """Arm a fault of `kind` with these fields (see the README's table); returns it."""
        fault = {"kind": kind, "account": self.account if account is _UNSET else account,
                 **fields}
        armed = self.admin.arm_fault(fault)
        self.armed.append(armed["id"])
        return armed

    def fail_job(self, job: str, status_reason: str, **fields: Any) -> dict[str, Any]:
        """The next `job` (create_server, backup, restore, ...) ends FAILED with the reason."""
        return self.arm("fail_job", job=job, status_reason=status_reason, **fields)

    def hold_status(self, status: str, duration: float, **fields: Any) -> dict[str, Any]:
        """Servers go `status` (UNHEALTHY, CONNECTION_LOST, ...) for `duration` seconds."""
        return self.arm("server_status", status=status, duration=duration, **fields)

    def error(self, code: str, message: str | None = None, http_status: int = 400,
              **fields: Any) -> dict[str, Any]:
        """Calls (of `operation=`, or all) answer this AWS error."""
        extra = {"message": message} if message is not None else {}
        return self.arm("error", code=code, http_status=http_status, **extra, **fields)

    def latency(self, seconds: float, **fields: Any) -> dict[str, Any]:
        """Calls (of `operation=`, or all) take `seconds` longer."""
        return self.arm("latency", latency=seconds, **fields)

    def list(self) -> list[dict[str, Any]]:
        """Every armed fault of the cmhost (of every test and account)."""
        return self.admin.list_faults()

    def clear(self) -> int:
        """Disarm every fault of the cmhost (servers held in a status go back)."""
        self.armed.clear()
        return self.admin.clear_faults()

    def remove(self, fault_id: str) -> None:
        self.admin.remove_fault(fault_id)

    def disarm_mine(self) -> None:
        """Disarm what this test armed and is still there (used up faults are gone)."""
        for fault_id in self.armed:
            try:
                self.admin.remove_fault(fault_id)
            except AdminError as exc:
                if exc.status != 404:
                    raise
        self.armed.clear()
