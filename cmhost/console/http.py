"""The little HTTP the console needs over ASGI: requests with forms and cookies, responses
with the security headers every page carries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl, quote

from cmhost.api.protocol import Receive, Scope, Send, read_body

# A custom certificate chain may be 2 MiB (the model's limit), plus the rest of the form.
MAX_FORM = 4 * 1024 * 1024

# No inline script or style, nothing from elsewhere, no framing, forms post only here.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    ("content-security-policy", CSP),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
]


@dataclass
class Form:
    """A posted form: text fields (every value of a name) and uploaded files' contents."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0] if values else default

    def text(self, name: str) -> str | None:
        """A field's value without surrounding blanks, or None when empty."""
        value = self.get(name).strip()
        return value or None

    def text_or_file(self, name: str) -> str | None:
        """An uploaded file's text if one was chosen, else the field's."""
        uploaded = self.files.get(name + "File", "")
        return uploaded if uploaded.strip() else self.text(name)

    def checked(self, name: str) -> bool:
        return name in self.fields


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    cookies: dict[str, str]
    client: str
    tls: bool
    form: Form = field(default_factory=Form)


def _cookies(header: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in found:
            found[name] = value
    return found


async def read_request(scope: Scope, receive: Receive) -> Request:
    """The request, with its form read when it posts one (ApiError past MAX_FORM)."""
    headers: dict[str, str] = {}
    for key, value in scope["headers"]:
        name = key.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[name] = f"{headers[name]}; {text}" if name == "cookie" and name in headers \
            else text
    client = scope.get("client") or ("", 0)
    proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    request = Request(
        method=scope["method"], path=scope["path"],
        query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
        headers=headers, cookies=_cookies(headers.get("cookie", "")), client=str(client[0]),
        tls=scope.get("scheme") == "https" or proto == "https")
    if request.method == "POST":
        body = await read_body(receive, MAX_FORM)
        request.form = parse_form(headers.get("content-type", ""), body)
    return request


def parse_form(content_type: str, body: bytes) -> Form:
    """application/x-www-form-urlencoded or multipart/form-data (with file uploads)."""
    form = Form()
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            data = part.get_payload(decode=True)
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
            if part.get_filename() is not None:
                form.files[name] = text
            else:
                form.fields.setdefault(name, []).append(text)
        return form
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        form.fields.setdefault(name, []).append(value)
    return form


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    cache: str = "no-store"

    def set_cookie(self, name: str, value: str, *, path: str, secure: bool,
                   max_age: int | None = None) -> None:
        parts = [f"{name}={value}", f"Path={path}", "HttpOnly", "SameSite=Strict"]
        if secure:
            parts.append("Secure")
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        self.headers.append(("set-cookie", "; ".join(parts)))

    def clear_cookie(self, name: str, *, path: str, secure: bool) -> None:
        self.set_cookie(name, "", path=path, secure=secure, max_age=0)

    async def send(self, send: Send) -> None:
        headers = [(b"content-type", self.content_type.encode()),
                   (b"content-length", str(len(self.body)).encode()),
                   (b"cache-control", self.cache.encode())]
        headers += [(k.encode(), v.encode("latin-1")) for k, v in SECURITY_HEADERS]
        headers += [(k.encode(), v.encode("latin-1")) for k, v in self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def redirect(location: str, status: int = 303) -> Response:
    return Response(status, b"", headers=[("location", location)])


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(payload, separators=(",", ":")).encode(),
                    content_type="application/json")


def text_download(body: bytes, filename: str, content_type: str) -> Response:
    return Response(200, body, content_type=content_type, headers=[
        ("content-disposition", f"attachment; filename*=UTF-8''{quote(filename)}")])
