"""The console's tests: a signed-in HTTP client of the module's cmhost (tests/conftest.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from tests.support import Cmhost

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    """An HTTP client that signs in and posts forms as a browser does (cookies, CSRF)."""

    def __init__(self, cm: Cmhost, headers: dict[str, str] | None = None) -> None:
        self.http = httpx.Client(base_url=cm.url, follow_redirects=False, timeout=30,
                                 headers=headers or {})
        self.csrf = ""

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.get(path, **kwargs)
        found = CSRF.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    def post(self, path: str, data: dict[str, Any], *, csrf: bool = True,
             files: dict[str, Any] | None = None) -> httpx.Response:
        form = {**data, "csrf": self.csrf} if csrf else dict(data)
        response = self.http.post(path, data=form, files=files)
        found = CSRF.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    def sign_in(self, key: str = "test", secret: str = "test",
                region: str = "us-east-1") -> httpx.Response:
        self.get("/console/signin")
        return self.post("/console/signin", {"AccessKeyId": key, "SecretAccessKey": secret,
                                             "region": region})


def issue_key(cm: Cmhost, account: str) -> dict[str, str]:
    """A key made by `cmhost keys create`, as a user would."""
    done = cm.cli("keys", "create", "--account", account, *cm.storage_args())
    key: dict[str, str] = json.loads(done.stdout)
    return key


@pytest.fixture
def browser(cmhost: Cmhost) -> Browser:
    signed = Browser(cmhost)
    assert signed.sign_in().status_code == 303
    signed.get("/console/")
    return signed
