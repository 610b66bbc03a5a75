"""Server-side AWS Signature Version 4 verification: who signed a request, and for which region.

Both forms botocore produces are accepted: the `Authorization` header and the presigned query
string (`X-Amz-Algorithm`, `X-Amz-Credential`, ...). The canonical request is rebuilt exactly
as botocore's `SigV4Auth` builds it for a non-S3 service, so any request an unmodified SDK
signs verifies here. Every way a request can be refused ends in one of the authentication errors
of AWS's JSON protocol services (400 MissingAuthenticationTokenException,
IncompleteSignatureException, UnrecognizedClientException or InvalidSignatureException, with
those services' messages), never in another exception.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import NamedTuple, Protocol
from urllib.parse import quote_from_bytes, unquote_to_bytes

from cmhost.api.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
MAX_PRESIGNED_EXPIRES = 604800  # one week, as on AWS
SIGNING_KEY_CACHE_SIZE = 256

_log = logging.getLogger(__name__)

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z", re.ASCII)
_SCOPE_DATE_RE = re.compile(r"\d{8}", re.ASCII)
_REGION_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*", re.ASCII)
_REGION_MAX_LEN = 63
_ACCESS_KEY = r"[\x21-\x2e\x30-\x7e]{1,128}"  # printable ASCII but '/'
_ACCESS_KEY_RE = re.compile(_ACCESS_KEY, re.ASCII)
_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
# RFC 9110 tokens, lower-case only (what SDKs send), separated by ';'.
_HEADER_NAME = r"[!#$%&'*+\-.^_`|~0-9a-z]+"
_SIGNED_HEADERS_RE = re.compile(rf"{_HEADER_NAME}(?:;{_HEADER_NAME})*", re.ASCII)
# The headers verify() reads itself; one pass over the request collects them.
_AUTH_HEADERS = frozenset({"authorization", "x-amz-date", "date", "x-amz-content-sha256"})
_UNSIGNED_PAYLOADS = frozenset(
    {
        "UNSIGNED-PAYLOAD",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    }
)
_PRESIGN_MARKERS = (b"X-Amz-Algorithm", b"X-Amz-Credential", b"X-Amz-Signature")
_MISSING_TOKEN = "Request is missing Authentication Token"
_UNKNOWN_KEY = "The security token included in the request is invalid."
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


@dataclass(frozen=True)
class SignedRequest:
    """The parts of an HTTP request that SigV4 covers, as they arrived on the wire."""

    method: str
    path: str  # raw path as received, e.g. "/"
    query_string: str  # raw query string as received (no leading '?'), may be ""
    headers: list[tuple[str, str]]  # names lower-cased, values as received, duplicates kept
    body: bytes


@dataclass(frozen=True)
class KeyRecord:
    access_key_id: str
    secret_access_key: str
    account: str
    principal_arn: str


class KeyLookup(Protocol):
    def __call__(self, access_key_id: str) -> KeyRecord | None: ...


@dataclass(frozen=True)
class Identity:
    """Who signed a verified request, and the region named in its credential scope."""

    access_key_id: str
    account: str
    principal_arn: str
    region: str


class _Claim(NamedTuple):
    """What the caller claims: parsed from the Authorization header or the presigned query."""

    access_key_id: str
    scope_date: str
    region: str
    signed_headers: str
    header_names: tuple[str, ...]
    signature: str
    amz_date: str
    timestamp: int
    expires: int | None  # presigned only; None means the clock-skew rule applies
    presigned: bool


class SigV4Verifier:
    """Verifies SigV4-signed requests against the keys `lookup` knows."""

    def __init__(
        self,
        lookup: KeyLookup,
        *,
        service: str = "opsworks-cm",
        max_skew_seconds: int = 900,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._lookup = lookup
        self._service = service
        self._max_skew = max_skew_seconds
        self._now = now
        self._signing_keys: dict[tuple[str, str, str], bytes] = {}
        self._signing_keys_lock = threading.Lock()
        # The whole credential of a well-formed request in one match; anything else takes
        # the slow path in _parse_credential, which says what is wrong.
        self._credential_re = re.compile(
            rf"({_ACCESS_KEY})/(\d{{8}})/({_REGION_RE.pattern})/{re.escape(service)}/{TERMINATOR}",
            re.ASCII,
        )

    def verify(self, request: SignedRequest) -> Identity:
        """Return who signed `request`, or raise the AWS error that says why it is refused."""
        query = _split_query(request.query_string) if request.query_string else []
        auth_headers: dict[str, list[str]] = {}
        for name, value in request.headers:
            if name in _AUTH_HEADERS:
                auth_headers.setdefault(name, []).append(value)
        authorizations = auth_headers.get("authorization")
        presigned = any(k in _PRESIGN_MARKERS for k, _ in query)
        if authorizations and presigned:
            raise IncompleteSignatureException(
                "Only one authentication method is allowed: found both an Authorization "
                "header and X-Amz-Algorithm/X-Amz-Credential/X-Amz-Signature query parameters."
            )
        if presigned:
            claim = self._claim_from_query(query)
        elif authorizations:
            if len(authorizations) > 1:
                raise IncompleteSignatureException(
                    "Request has more than one Authorization header."
                )
            claim = self._claim_from_header(authorizations[0], auth_headers)
        else:
            raise MissingAuthenticationTokenException(_MISSING_TOKEN)

        self._check_time(claim)
        if not _ACCESS_KEY_RE.fullmatch(claim.access_key_id):
            raise UnrecognizedClientException(_UNKNOWN_KEY)
        record = self._lookup(claim.access_key_id)
        if record is None:
            raise UnrecognizedClientException(_UNKNOWN_KEY)

        canonical = "\n".join(
            (
                request.method.upper(),
                _canonical_uri(request.path),
                _canonical_query(query, drop_signature=claim.presigned),
                _canonical_headers(request.headers, claim.header_names) + "\n",
                claim.signed_headers,
                _payload_hash(request.body, auth_headers.get("x-amz-content-sha256")),
            )
        )
        string_to_sign = "\n".join(
            (
                ALGORITHM,
                claim.amz_date,
                f"{claim.scope_date}/{claim.region}/{self._service}/{TERMINATOR}",
                hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest(),
            )
        )
        key = self._signing_key(record.secret_access_key, claim.scope_date, claim.region)
        expected = hmac.digest(key, string_to_sign.encode("utf-8"), "sha256").hex()
        if not hmac.compare_digest(expected, claim.signature):
            _log.debug(
                "SigV4 mismatch for %s\nCanonicalRequest:\n%s\nStringToSign:\n%s",
                claim.access_key_id,
                canonical,
                string_to_sign,
            )
            raise InvalidSignatureException(_MISMATCH)
        return Identity(
            access_key_id=record.access_key_id,
            account=record.account,
            principal_arn=record.principal_arn,
            region=claim.region,
        )

    # -- claims --------------------------------------------------------------------------

    def _claim_from_header(self, authorization: str, headers: dict[str, list[str]]) -> _Claim:
        algorithm, _, rest = authorization.strip().partition(" ")
        if algorithm != ALGORITHM:
            raise IncompleteSignatureException(
                f"Unsupported AWS 'algorithm': {_shown(algorithm)}; only {ALGORITHM} is accepted."
            )
        params: dict[str, str] = {}
        for item in rest.split(","):
            item = item.strip()
            if not item:
                continue
            name, eq, value = item.partition("=")
            if not eq:
                raise IncompleteSignatureException(
                    f"{_shown(item)} not a valid key=value pair (missing equal-sign) "
                    "in Authorization header."
                )
            if name not in ("Credential", "SignedHeaders", "Signature"):
                raise IncompleteSignatureException(
                    f"Authorization header has an unknown parameter {_shown(name)}."
                )
            if name in params:
                raise IncompleteSignatureException(
                    f"Authorization header has the parameter '{name}' more than once."
                )
            params[name] = value

        problems = [
            f"Authorization header requires '{name}' parameter."
            for name in ("Credential", "SignedHeaders", "Signature")
            if not params.get(name)
        ]
        amz_dates = headers.get("x-amz-date", [])
        dates = headers.get("date", [])
        if not amz_dates and not dates:
            problems.append(
                "Authorization header requires existence of either a 'X-Amz-Date' "
                "or a 'Date' header."
            )
        if problems:
            raise IncompleteSignatureException(" ".join(problems))

        access_key_id, scope_date, region = self._parse_credential(params["Credential"])
        header_names = _parse_signed_headers(params["SignedHeaders"])
        signature = _parse_signature(params["Signature"])
        if amz_dates:
            if len(amz_dates) > 1:
                raise IncompleteSignatureException("Request has more than one X-Amz-Date header.")
            amz_date = amz_dates[0].strip()
            timestamp = _parse_amz_date(amz_date)
            if timestamp is None:
                raise IncompleteSignatureException(
                    f"X-Amz-Date must be in the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z', "
                    f"not {_shown(amz_date)}."
                )
        else:
            if len(dates) > 1:
                raise IncompleteSignatureException("Request has more than one Date header.")
            amz_date, timestamp = _parse_http_date(dates[0].strip())
        _check_scope_date(scope_date, amz_date)
        return _Claim(
            access_key_id=access_key_id,
            scope_date=scope_date,
            region=region,
            signed_headers=params["SignedHeaders"],
            header_names=header_names,
            signature=signature,
            amz_date=amz_date,
            timestamp=timestamp,
            expires=None,
            presigned=False,
        )

    def _claim_from_query(self, query: list[tuple[bytes, bytes]]) -> _Claim:
        wanted = (
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-Expires",
            "X-Amz-SignedHeaders",
            "X-Amz-Signature",
        )
        found: dict[str, str] = {}
        for raw_name, raw_value in query:
            name = raw_name.decode("latin-1")
            if name not in wanted:
                continue
            if name in found:
                raise IncompleteSignatureException(
                    f"Query parameter '{name}' appears more than once."
                )
            try:
                found[name] = raw_value.decode("utf-8")
            except UnicodeDecodeError:
                raise IncompleteSignatureException(
                    f"Query parameter '{name}' is not valid UTF-8."
                ) from None
        missing = [
            f"AWS query-string parameters must include '{name}'."
            for name in wanted
            if name != "X-Amz-Expires" and not found.get(name)
        ]
        if missing:
            raise IncompleteSignatureException(" ".join(missing))
        if found["X-Amz-Algorithm"] != ALGORITHM:
            raise IncompleteSignatureException(
                f"Unsupported AWS 'algorithm': {_shown(found['X-Amz-Algorithm'])}; "
                f"only {ALGORITHM} is accepted."
            )
        access_key_id, scope_date, region = self._parse_credential(found["X-Amz-Credential"])
        header_names = _parse_signed_headers(found["X-Amz-SignedHeaders"])
        signature = _parse_signature(found["X-Amz-Signature"])
        amz_date = found["X-Amz-Date"]
        timestamp = _parse_amz_date(amz_date)
        if timestamp is None:
            raise IncompleteSignatureException(
                f"X-Amz-Date must be in the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z', "
                f"not {_shown(amz_date)}."
            )
        _check_scope_date(scope_date, amz_date)
        expires: int | None = None
        if "X-Amz-Expires" in found:
            raw = found["X-Amz-Expires"]
            if not (raw.isascii() and raw.isdigit() and len(raw) <= 10):
                raise IncompleteSignatureException(
                    f"X-Amz-Expires must be a non-negative integer number of seconds, "
                    f"not {_shown(raw)}."
                )
            expires = int(raw)
            if expires > MAX_PRESIGNED_EXPIRES:
                raise IncompleteSignatureException(
                    f"X-Amz-Expires must be less than a week (in seconds) that is "
                    f"{MAX_PRESIGNED_EXPIRES}, not {expires}."
                )
        return _Claim(
            access_key_id=access_key_id,
            scope_date=scope_date,
            region=region,
            signed_headers=found["X-Amz-SignedHeaders"],
            header_names=header_names,
            signature=signature,
            amz_date=amz_date,
            timestamp=timestamp,
            expires=expires,
            presigned=True,
        )

    def _parse_credential(self, credential: str) -> tuple[str, str, str]:
        """Return (access key id, scope date, region) of `AKID/yyyymmdd/region/service/term`."""
        match = self._credential_re.fullmatch(credential)
        if match is not None and len(match[3]) <= _REGION_MAX_LEN:
            return match[1], match[2], match[3]
        parts = credential.split("/")
        if len(parts) != 5:
            raise IncompleteSignatureException(
                "Credential must have exactly 5 slash-delimited elements, "
                f"e.g. keyid/date/region/service/term, got {_shown(credential)}."
            )
        access_key_id, scope_date, region, service, terminator = parts
        if not access_key_id:
            raise IncompleteSignatureException("Credential must name an access key ID.")
        if not _SCOPE_DATE_RE.fullmatch(scope_date):
            raise IncompleteSignatureException(
                f"Credential should be scoped to a valid date (YYYYMMDD), not {_shown(scope_date)}."
            )
        if len(region) > _REGION_MAX_LEN or not _REGION_RE.fullmatch(region):
            raise IncompleteSignatureException(
                f"Credential should be scoped to a valid region, not {_shown(region)}."
            )
        if service != self._service:
            raise IncompleteSignatureException(
                f"Credential should be scoped to correct service: '{self._service}'."
            )
        if terminator != TERMINATOR:
            raise IncompleteSignatureException(
                f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
                f"not {_shown(terminator)}."
            )
        return access_key_id, scope_date, region

    # -- time and keys -------------------------------------------------------------------

    def _check_time(self, claim: _Claim) -> None:
        now = self._now()
        skew = self._max_skew
        # A presigned request lives X-Amz-Expires seconds instead of the skew window; both
        # say so in the words of AWS's JSON services, which clients match on.
        lifetime = skew if claim.expires is None else claim.expires
        if now - claim.timestamp > lifetime:
            raise InvalidSignatureException(
                f"Signature expired: {claim.amz_date} is now earlier than "
                f"{_amz_date(now - lifetime)} ({_amz_date(now)} - {_span(lifetime)})"
            )
        if claim.timestamp - now > skew:
            raise InvalidSignatureException(
                f"Signature not yet current: {claim.amz_date} is still later than "
                f"{_amz_date(now + skew)} ({_amz_date(now)} + {_span(skew)})"
            )

    def _signing_key(self, secret: str, scope_date: str, region: str) -> bytes:
        cache_key = (secret, scope_date, region)
        key = self._signing_keys.get(cache_key)
        if key is not None:
            return key
        key = _derive_signing_key(secret, scope_date, region, self._service)
        with self._signing_keys_lock:
            while len(self._signing_keys) >= SIGNING_KEY_CACHE_SIZE:
                del self._signing_keys[next(iter(self._signing_keys))]
            self._signing_keys[cache_key] = key
        return key


def _derive_signing_key(secret: str, scope_date: str, region: str, service: str) -> bytes:
    def sign(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    k_date = sign(("AWS4" + secret).encode("utf-8", "surrogatepass"), scope_date)
    return sign(sign(sign(k_date, region), service), TERMINATOR)


# -- the canonical request ---------------------------------------------------------------


def _canonical_uri(path: str) -> str:
    """The path as botocore signs it for non-S3 services: dot segments and empty segments
    removed, then percent-encoded once more (so `%20` becomes `%2520`)."""
    if path == "/" or not path:
        return "/"
    normalized = _remove_dot_segments(path)
    return quote_from_bytes(normalized.encode("utf-8", "surrogatepass"), safe="/~")


def _remove_dot_segments(path: str) -> str:
    # RFC 3986 5.2.4, plus collapsing of empty segments, as botocore.utils does.
    output: list[str] = []
    for segment in path.split("/"):
        if not segment or segment == ".":
            continue
        if segment == "..":
            if output:
                output.pop()
        else:
            output.append(segment)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and output else ""
    return first + "/".join(output) + last


def _split_query(query_string: str) -> list[tuple[bytes, bytes]]:
    """Decoded (name, value) pairs, in order; empty segments are skipped."""
    pairs = []
    for segment in query_string.split("&"):
        if not segment:
            continue
        name, _, value = segment.partition("=")
        pairs.append((_unquote(name), _unquote(value)))
    return pairs


def _unquote(text: str) -> bytes:
    return unquote_to_bytes(text.encode("utf-8", "surrogatepass"))


def _canonical_query(query: list[tuple[bytes, bytes]], *, drop_signature: bool) -> str:
    if not query:
        return ""
    encoded = sorted(
        (quote_from_bytes(name, safe="-_.~"), quote_from_bytes(value, safe="-_.~"))
        for name, value in query
        if not (drop_signature and name == b"X-Amz-Signature")
    )
    return "&".join(f"{name}={value}" for name, value in encoded)


def _canonical_headers(headers: list[tuple[str, str]], names: tuple[str, ...]) -> str:
    values: dict[str, list[str]] = {name: [] for name in names}
    for name, value in headers:
        found = values.get(name)
        if found is not None:
            found.append(" ".join(value.split()))
    lines = []
    for name in names:
        if not values[name]:
            raise IncompleteSignatureException(
                f"Header {_shown(name)} is listed in SignedHeaders but is not in the request."
            )
        lines.append(f"{name}:{','.join(values[name])}")
    return "\n".join(lines)


def _payload_hash(body: bytes, claimed: list[str] | None) -> str:
    """SHA-256 of the body; an `x-amz-content-sha256` header, if sent, must agree with it."""
    body_hash = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
    if not claimed:
        return body_hash
    if len(claimed) > 1:
        raise IncompleteSignatureException("Request has more than one x-amz-content-sha256 header.")
    value = claimed[0].strip()
    if value in _UNSIGNED_PAYLOADS:
        raise IncompleteSignatureException(
            f"x-amz-content-sha256 {_shown(value)} is not supported: this service requires "
            "the payload to be signed."
        )
    if value.lower() != body_hash:
        raise InvalidSignatureException(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return value


# -- small parsers -----------------------------------------------------------------------


@lru_cache(maxsize=512)  # a client sends the same list every time; errors are not cached
def _parse_signed_headers(signed_headers: str) -> tuple[str, ...]:
    if not _SIGNED_HEADERS_RE.fullmatch(signed_headers):
        raise IncompleteSignatureException(
            "SignedHeaders must be lower-case header names separated by ';', "
            f"got {_shown(signed_headers)}."
        )
    names = tuple(signed_headers.split(";"))
    if len(set(names)) != len(names):
        raise IncompleteSignatureException(
            f"SignedHeaders lists a header twice: {_shown(signed_headers)}."
        )
    if "host" not in names:
        raise IncompleteSignatureException(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    return names


def _parse_signature(signature: str) -> str:
    if not _SIGNATURE_RE.fullmatch(signature):
        raise IncompleteSignatureException(
            f"Signature must be 64 hexadecimal characters, got {_shown(signature)}."
        )
    return signature.lower()


@lru_cache(maxsize=512)  # one new date a second
def _parse_amz_date(text: str) -> int | None:
    """Epoch seconds of `YYYYMMDDTHHMMSSZ`, or None if `text` is not such a date."""
    match = _AMZ_DATE_RE.fullmatch(text)
    if match is None:
        return None
    try:
        moment = datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[11:13]),
            int(text[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return int(moment.timestamp())


def _parse_http_date(text: str) -> tuple[str, int]:
    """(ISO 8601 basic form, epoch seconds) of a Date header in either format SigV4 allows."""
    timestamp = _parse_amz_date(text)
    if timestamp is not None:
        return text, timestamp
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        moment = None
    if moment is None:
        raise IncompleteSignatureException(
            f"Date header must be an HTTP date or YYYYMMDD'T'HHMMSS'Z', not {_shown(text)}."
        )
    if moment.tzinfo is None:
        # "-0000" (what botocore's formatdate writes) parses as naive; it means UTC.
        moment = moment.replace(tzinfo=UTC)
    try:
        timestamp = int(moment.timestamp())
        return _amz_date(timestamp), timestamp
    except (ValueError, OverflowError, OSError):
        raise IncompleteSignatureException(
            f"Date header is out of range: {_shown(text)}."
        ) from None


def _check_scope_date(scope_date: str, amz_date: str) -> None:
    if scope_date != amz_date[:8]:
        raise IncompleteSignatureException(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'."
        )


def _amz_date(epoch: float) -> str:
    return time.strftime(_AMZ_DATE_FORMAT, time.gmtime(epoch))


def _span(seconds: int) -> str:
    return f"{seconds // 60} min." if seconds % 60 == 0 else f"{seconds} s"


def _shown(text: str, limit: int = 80) -> str:
    """`text` quoted for an error message, cut short so a huge header cannot bloat it."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return f"'{text}'"
