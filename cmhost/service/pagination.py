"""Pagination tokens: opaque, tamper-proof keyset cursors bound to the query they came from."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cmhost.service.errors import InvalidNextTokenException
from cmhost.storage.secrets import SecretBox

# A page never holds more than this, whatever MaxResults asks; NextToken continues.
MAX_PAGE = 1000


def page_size(max_results: int | None) -> int:
    return MAX_PAGE if max_results is None else min(max_results, MAX_PAGE)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Pager:
    def __init__(self, box: SecretBox) -> None:
        self._box = box

    def _scope(self, scope: str) -> str:
        return hashlib.sha256(scope.encode()).hexdigest()[:16]

    def encode(self, scope: str, cursor: list[Any]) -> str:
        body = json.dumps({"s": self._scope(scope), "c": cursor}, separators=(",", ":")).encode()
        return _b64(body) + "." + _b64(self._box.mac(body)[:16])

    def decode(self, token: str, scope: str) -> list[Any]:
        invalid = InvalidNextTokenException("The NextToken is not valid for this request.")
        try:
            body_text, mac_text = token.split(".")
            body = _unb64(body_text)
            mac = _unb64(mac_text)
        except ValueError:
            raise invalid from None
        if not hmac.compare_digest(mac, self._box.mac(body)[:16]):
            raise invalid
        try:
            data = json.loads(body)
        except ValueError:
            raise invalid from None
        if not isinstance(data, dict) or data.get("s") != self._scope(scope):
            raise invalid
        cursor = data.get("c")
        if not isinstance(cursor, list):
            raise invalid
        return cursor
