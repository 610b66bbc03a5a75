"""A client of a running cmhost's own endpoints (/_cmhost/: faults, clock, keys, health), over
HTTP with the admin token when one is given; the standard library only. The `cmhost faults`
command and the pytest plugin use it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote


class AdminError(Exception):
    """cmhost answered with an error (`status`, `code`), or did not answer (status 0)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.status = status
        self.code = code
        self.message = message


class AdminClient:
    def __init__(self, url: str, token: str | None = None, *, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer of `method path` (with `body` as JSON); AdminError otherwise."""
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers=headers,
                                     method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = {}
            if not isinstance(answer, dict):
                answer = {}
            raise AdminError(exc.code, str(answer.get("__type", f"HTTP {exc.code}")),
                             str(answer.get("message", raw[:200].decode(errors="replace"))),
                             ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminError(0, "", f"no cmhost answers at {self.url} ({reason})") from None

    # --- faults -------------------------------------------------------------------------

    def arm_fault(self, fault: dict[str, Any]) -> dict[str, Any]:
        armed: dict[str, Any] = self.request("POST", "/_cmhost/faults", fault)
        return armed

    def list_faults(self) -> list[dict[str, Any]]:
        faults: list[dict[str, Any]] = self.request("GET", "/_cmhost/faults")["faults"]
        return faults

    def clear_faults(self) -> int:
        return int(self.request("DELETE", "/_cmhost/faults")["cleared"])

    def remove_fault(self, fault_id: str) -> None:
        self.request("DELETE", f"/_cmhost/faults/{quote(fault_id, safe='')}")

    # --- clock, keys, health ------------------------------------------------------------

    def clock(self) -> dict[str, Any]:
        state: dict[str, Any] = self.request("GET", "/_cmhost/clock")
        return state

    def advance(self, seconds: float) -> dict[str, Any]:
        state: dict[str, Any] = self.request("POST", "/_cmhost/clock", {"advance": seconds})
        return state

    def issue_key(self, account: str, user: str = "admin") -> dict[str, str]:
        key: dict[str, str] = self.request("POST", "/_cmhost/keys",
                                           {"account": account, "user": user})
        return key

    def health(self) -> dict[str, Any]:
        state: dict[str, Any] = self.request("GET", "/_cmhost/health")
        return state
