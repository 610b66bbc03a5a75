"""SigV4 verification against requests signed by botocore itself, as boto3 sends them."""

from __future__ import annotations

import calendar
import dataclasses
import datetime
import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from cmhost.api.errors import (
    ApiError,
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)
from cmhost.api.sigv4 import (
    SIGNING_KEY_CACHE_SIZE,
    Identity,
    KeyRecord,
    SignedRequest,
    SigV4Verifier,
)

SIGNED_AT = datetime.datetime(2025, 1, 1, 12, 0, 0)  # naive UTC, as botocore uses it
SIGNED_AT_EPOCH = calendar.timegm(SIGNED_AT.timetuple())
ENDPOINT = "http://127.0.0.1:4580/"
AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
ACCOUNT = "111122223333"
PRINCIPAL = "arn:aws:iam::111122223333:user/alice"
KEYS = {
    AKID: KeyRecord(AKID, SECRET, ACCOUNT, PRINCIPAL),
    "test": KeyRecord("test", "test", "000000000000", "arn:aws:iam::000000000000:root"),
}
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
AUTH_ERRORS = (
    MissingAuthenticationTokenException,
    IncompleteSignatureException,
    UnrecognizedClientException,
    InvalidSignatureException,
)


def lookup(access_key_id: str) -> KeyRecord | None:
    return KEYS.get(access_key_id)


@pytest.fixture(autouse=True)
def frozen_signing_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore signs every request in these tests at SIGNED_AT."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: SIGNED_AT)


def verifier(offset: float = 0, max_skew_seconds: int = 900) -> SigV4Verifier:
    """A verifier whose clock reads `offset` seconds after the moment of signing."""
    return SigV4Verifier(
        lookup, max_skew_seconds=max_skew_seconds, now=lambda: SIGNED_AT_EPOCH + offset
    )


def opsworks_request(
    operation: str = "DescribeServers",
    params: dict[str, object] | None = None,
    url: str = ENDPOINT,
    headers: dict[str, str] | None = None,
) -> AWSRequest:
    """An OpsWorks CM call as botocore's json protocol serializes it, before signing."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=json.dumps(params if params is not None else {"ServerName": "web"}).encode(),
        headers={
            "X-Amz-Target": f"OpsWorksCM_V2016_11_01.{operation}",
            "Content-Type": "application/x-amz-json-1.1",
            "User-Agent": "Boto3/1.40.18 md/Botocore#1.40.18 Botocore/1.40.18",
        },
    )
    for name, value in (headers or {}).items():
        request.headers[name] = value
    return request


def sign(
    request: AWSRequest,
    *,
    access_key: str = AKID,
    secret: str = SECRET,
    region: str = "us-east-1",
    service: str = "opsworks-cm",
    token: str | None = None,
) -> AWSRequest:
    SigV4Auth(Credentials(access_key, secret, token), service, region).add_auth(request)
    return request


def presign(
    request: AWSRequest,
    *,
    expires: int = 300,
    region: str = "us-east-1",
    token: str | None = None,
) -> AWSRequest:
    SigV4QueryAuth(Credentials(AKID, SECRET, token), "opsworks-cm", region, expires).add_auth(
        request
    )
    return request


def on_the_wire(request: AWSRequest) -> SignedRequest:
    """What the server receives when an HTTP client sends the signed `request`."""
    url = urlsplit(request.url)
    body = request.body or b""
    headers = [("host", url.netloc)]
    headers += [(name.lower(), _text(value)) for name, value in request.headers.items()]
    headers.append(("content-length", str(len(body))))
    # Added by botocore after signing, so never signed.
    headers.append(("amz-sdk-invocation-id", "620b738d-f7f6-4aef-b490-245d6484c54d"))
    headers.append(("amz-sdk-request", "attempt=1"))
    return SignedRequest(
        method=request.method,
        path=url.path or "/",
        query_string=url.query,
        headers=headers,
        body=body,
    )


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def signed(**kwargs: Any) -> SignedRequest:
    return on_the_wire(sign(opsworks_request(), **kwargs))


def presigned(**kwargs: Any) -> SignedRequest:
    return on_the_wire(presign(opsworks_request(), **kwargs))


def header(request: SignedRequest, name: str) -> str:
    return next(value for n, value in request.headers if n == name)


def with_header(request: SignedRequest, name: str, value: str | None) -> SignedRequest:
    """`request` with every `name` header replaced by one `value` (or removed if None)."""
    headers = [(n, v) for n, v in request.headers if n != name]
    if value is not None:
        headers.append((name, value))
    return dataclasses.replace(request, headers=headers)


def with_authorization(request: SignedRequest, edit: Callable[[str], str]) -> SignedRequest:
    return with_header(request, "authorization", edit(header(request, "authorization")))


def with_query(request: SignedRequest, edit: Callable[[str], str]) -> SignedRequest:
    return dataclasses.replace(request, query_string=edit(request.query_string))


# -- requests that verify ----------------------------------------------------------------


def test_boto3_client_request_verifies() -> None:
    class Sent(Exception):
        def __init__(self, request: AWSPreparedRequest) -> None:
            self.request = request

    def capture(request: AWSPreparedRequest, **_: object) -> None:
        raise Sent(request)

    client = boto3.session.Session(
        aws_access_key_id=AKID, aws_secret_access_key=SECRET, region_name="eu-central-1"
    ).client("opsworkscm", endpoint_url="http://127.0.0.1:4580")
    client.meta.events.register("before-send", capture)
    with pytest.raises(Sent) as sent:
        client.describe_servers(ServerName="web")
    prepared = sent.value.request
    url = urlsplit(prepared.url)
    headers = [("host", url.netloc)]  # added by the HTTP client, signed by botocore
    headers += [(name.lower(), _text(value)) for name, value in prepared.headers.items()]
    request = SignedRequest(
        method=prepared.method,
        path=url.path,
        query_string=url.query,
        headers=headers,
        body=prepared.body,
    )

    assert verifier().verify(request) == Identity(AKID, ACCOUNT, PRINCIPAL, "eu-central-1")


def test_boto3_presigned_url_verifies() -> None:
    client = boto3.session.Session(
        aws_access_key_id=AKID, aws_secret_access_key=SECRET, region_name="us-west-2"
    ).client("opsworkscm", endpoint_url="http://127.0.0.1:4580")
    url = urlsplit(
        client.generate_presigned_url(
            "describe_servers", Params={"ServerName": "web"}, ExpiresIn=60
        )
    )
    # The presigner moves the JSON members into the query string and signs an empty body;
    # the caller must send the headers it lists in X-Amz-SignedHeaders.
    assert "ServerName=web" in url.query
    assert "X-Amz-SignedHeaders=content-type%3Bhost%3Bx-amz-target" in url.query
    request = SignedRequest(
        method="POST",
        path=url.path,
        query_string=url.query,
        headers=[
            ("host", url.netloc),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "OpsWorksCM_V2016_11_01.DescribeServers"),
        ],
        body=b"",
    )

    assert verifier(59).verify(request).region == "us-west-2"
    with pytest.raises(InvalidSignatureException):
        verifier(61).verify(request)


def test_header_form_verifies_and_names_the_caller() -> None:
    identity = verifier().verify(signed())

    assert identity == Identity(AKID, ACCOUNT, PRINCIPAL, "us-east-1")


def test_development_key_verifies() -> None:
    identity = verifier().verify(signed(access_key="test", secret="test"))

    assert (identity.account, identity.access_key_id) == ("000000000000", "test")


def test_presigned_form_verifies() -> None:
    request = presigned(expires=300)

    assert request.body == b""  # botocore moved the JSON members into the query string
    assert verifier(300).verify(request) == Identity(AKID, ACCOUNT, PRINCIPAL, "us-east-1")


@pytest.mark.parametrize(
    "region", ["us-east-1", "eu-central-1", "us-gov-west-1", "cn-north-1", "local", "lab-2"]
)
def test_region_comes_from_the_credential_scope(region: str) -> None:
    assert verifier().verify(signed(region=region)).region == region
    assert verifier().verify(presigned(region=region)).region == region


@pytest.mark.parametrize("offset", [-900, -1, 0, 1, 900])
def test_clock_skew_up_to_15_minutes_is_accepted(offset: int) -> None:
    assert verifier(offset).verify(signed()).account == ACCOUNT


def test_unsigned_extra_headers_are_ignored() -> None:
    request = signed()
    request = with_header(request, "user-agent", "something else entirely")
    request = with_header(request, "x-forwarded-for", "10.0.0.1")

    assert verifier().verify(request).account == ACCOUNT


def test_security_token_is_signed_and_accepted() -> None:
    request = signed(token="session-token")
    assert header(request, "x-amz-security-token") == "session-token"
    assert verifier().verify(request).account == ACCOUNT

    tampered = with_header(request, "x-amz-security-token", "another-token")
    with pytest.raises(InvalidSignatureException):
        verifier().verify(tampered)

    query = presigned(token="session-token")
    assert "X-Amz-Security-Token=session-token" in query.query_string
    assert verifier().verify(query).account == ACCOUNT


def test_date_header_instead_of_x_amz_date() -> None:
    request = on_the_wire(sign(opsworks_request(headers={"Date": "placeholder"})))

    # botocore writes "-0000" rather than "GMT"; both mean UTC.
    assert header(request, "date") == "Wed, 01 Jan 2025 12:00:00 -0000"
    assert all(name != "x-amz-date" for name, _ in request.headers)
    assert verifier().verify(request).account == ACCOUNT
    gmt = with_header(request, "date", "Wed, 01 Jan 2025 12:00:00 GMT")
    with pytest.raises(InvalidSignatureException):  # same instant, but the header is signed
        verifier().verify(gmt)
    with pytest.raises(InvalidSignatureException, match="Signature expired: 20250101T120000Z"):
        verifier(901).verify(request)


def test_duplicate_headers_are_joined_in_order() -> None:
    aws = opsworks_request()
    aws.headers["X-Custom"] = "  first   value "
    aws.headers["X-Custom"] = "second"
    request = on_the_wire(sign(aws))
    assert [v for n, v in request.headers if n == "x-custom"] == ["  first   value ", "second"]
    assert "x-custom" in header(request, "authorization")

    assert verifier().verify(request).account == ACCOUNT

    swapped = [(n, v) for n, v in request.headers if n != "x-custom"]
    swapped += [("x-custom", "second"), ("x-custom", "  first   value ")]
    with pytest.raises(InvalidSignatureException):
        verifier().verify(dataclasses.replace(request, headers=swapped))
    with pytest.raises(InvalidSignatureException):
        verifier().verify(with_header(request, "x-custom", "  first   value "))


def test_header_values_are_trimmed_and_whitespace_collapsed() -> None:
    request = on_the_wire(sign(opsworks_request(headers={"X-Custom": " a   b\t c "})))
    respaced = with_header(request, "x-custom", "a b    c")

    assert verifier().verify(respaced).account == ACCOUNT


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:4580/?b=2&a=1&a=0&empty=&slash=%2F&space=%20",
        "http://127.0.0.1:4580/some/./path/../with%20space//",
        "http://localhost/",
        "https://opsworks-cm.us-east-1.amazonaws.com/",
    ],
)
def test_paths_and_query_strings_are_canonicalized_like_botocore(url: str) -> None:
    assert verifier().verify(on_the_wire(sign(opsworks_request(url=url)))).account == ACCOUNT


def test_payload_hash_header_must_match_the_body() -> None:
    body = json.dumps({"ServerName": "web"}).encode()
    digest = hashlib.sha256(body).hexdigest()
    request = on_the_wire(sign(opsworks_request(headers={"X-Amz-Content-SHA256": digest})))
    assert verifier().verify(request).account == ACCOUNT

    altered = dataclasses.replace(request, body=b'{"ServerName": "evil"}')
    with pytest.raises(InvalidSignatureException, match="x-amz-content-sha256"):
        verifier().verify(altered)

    unsigned = on_the_wire(
        sign(opsworks_request(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}))
    )
    with pytest.raises(IncompleteSignatureException, match="UNSIGNED-PAYLOAD"):
        verifier().verify(unsigned)


def test_signing_keys_are_cached_within_a_bound() -> None:
    v = verifier()
    regions = [f"lab-{n}" for n in range(SIGNING_KEY_CACHE_SIZE + 10)]
    for region in regions:
        assert v.verify(signed(region=region)).region == region
    # Verifying again (cache hit or re-derived after eviction) gives the same answer.
    assert v.verify(signed(region=regions[0])).region == regions[0]
    assert v.verify(signed(region=regions[-1])).region == regions[-1]
    assert len(v._signing_keys) <= SIGNING_KEY_CACHE_SIZE


# -- requests that are refused -----------------------------------------------------------


def _sig(auth: str) -> str:
    return auth.rsplit("Signature=", 1)[1]


HEADER_CASES: list[tuple[str, Callable[[SignedRequest], SignedRequest], type[ApiError], str]] = [
    (
        "no authorization header",
        lambda r: with_header(r, "authorization", None),
        MissingAuthenticationTokenException,
        "Request is missing Authentication Token",
    ),
    (
        "empty authorization header",
        lambda r: with_header(r, "authorization", ""),
        IncompleteSignatureException,
        "Unsupported AWS 'algorithm': ''",
    ),
    (
        "other algorithm",
        lambda r: with_authorization(r, lambda a: a.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1")),
        IncompleteSignatureException,
        "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA1'",
    ),
    (
        "sigv4a",
        lambda r: with_authorization(
            r, lambda a: a.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")
        ),
        IncompleteSignatureException,
        "Unsupported AWS 'algorithm'",
    ),
    (
        "bearer token",
        lambda r: with_header(r, "authorization", "Bearer abc.def"),
        IncompleteSignatureException,
        "Unsupported AWS 'algorithm': 'Bearer'",
    ),
    (
        "signature version 2",
        lambda r: with_header(r, "authorization", f"AWS {AKID}:c2lnbmF0dXJl"),
        IncompleteSignatureException,
        "Unsupported AWS 'algorithm': 'AWS'",
    ),
    (
        "algorithm only",
        lambda r: with_header(r, "authorization", "AWS4-HMAC-SHA256"),
        IncompleteSignatureException,
        (
            "Authorization header requires 'Credential' parameter. "
            "Authorization header requires 'SignedHeaders' parameter. "
            "Authorization header requires 'Signature' parameter."
        ),
    ),
    (
        "no signature",
        lambda r: with_authorization(r, lambda a: a.split(", Signature=")[0]),
        IncompleteSignatureException,
        "Authorization header requires 'Signature' parameter.",
    ),
    (
        "empty signature",
        lambda r: with_authorization(r, lambda a: a.replace(_sig(a), "")),
        IncompleteSignatureException,
        "Authorization header requires 'Signature' parameter.",
    ),
    (
        "no signed headers",
        lambda r: with_authorization(
            r, lambda a: a.replace(" SignedHeaders=content-type;host;x-amz-date;x-amz-target,", "")
        ),
        IncompleteSignatureException,
        "Authorization header requires 'SignedHeaders' parameter.",
    ),
    (
        "no credential",
        lambda r: with_authorization(
            r,
            lambda a: a.replace(
                f"Credential={AKID}/20250101/us-east-1/opsworks-cm/aws4_request,", ""
            ),
        ),
        IncompleteSignatureException,
        "Authorization header requires 'Credential' parameter.",
    ),
    (
        "pair without equal sign",
        lambda r: with_authorization(r, lambda a: a + ", garbage"),
        IncompleteSignatureException,
        "'garbage' not a valid key=value pair (missing equal-sign) in Authorization header.",
    ),
    (
        "unknown parameter",
        lambda r: with_authorization(r, lambda a: a + ", Extra=1"),
        IncompleteSignatureException,
        "unknown parameter 'Extra'",
    ),
    (
        "parameter twice",
        lambda r: with_authorization(r, lambda a: a + ", Signature=" + "0" * 64),
        IncompleteSignatureException,
        "'Signature' more than once",
    ),
    (
        "two authorization headers",
        lambda r: dataclasses.replace(
            r, headers=r.headers + [("authorization", header(r, "authorization"))]
        ),
        IncompleteSignatureException,
        "more than one Authorization header",
    ),
    (
        "credential with four parts",
        lambda r: with_authorization(r, lambda a: a.replace("/aws4_request", "")),
        IncompleteSignatureException,
        (
            "Credential must have exactly 5 slash-delimited elements, "
            "e.g. keyid/date/region/service/term, got "
            f"'{AKID}/20250101/us-east-1/opsworks-cm'."
        ),
    ),
    (
        "credential with six parts",
        lambda r: with_authorization(r, lambda a: a.replace("/aws4_request", "/aws4_request/x")),
        IncompleteSignatureException,
        "Credential must have exactly 5 slash-delimited elements",
    ),
    (
        "access key with a slash",
        lambda r: with_authorization(
            r, lambda a: a.replace(f"Credential={AKID}/", "Credential=A/B/")
        ),
        IncompleteSignatureException,
        "Credential must have exactly 5 slash-delimited elements",
    ),
    (
        "credential without access key",
        lambda r: with_authorization(r, lambda a: a.replace(f"Credential={AKID}/", "Credential=/")),
        IncompleteSignatureException,
        "Credential must name an access key ID.",
    ),
    (
        "scope date not a date",
        lambda r: with_authorization(r, lambda a: a.replace("/20250101/", "/2025-01-01/")),
        IncompleteSignatureException,
        "Credential should be scoped to a valid date (YYYYMMDD), not '2025-01-01'.",
    ),
    (
        "scope date is another day",
        lambda r: with_authorization(r, lambda a: a.replace("/20250101/", "/20241231/")),
        IncompleteSignatureException,
        (
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
            "HTTP: '20241231' != '20250101', from '20250101T120000Z'."
        ),
    ),
    (
        "wrong terminator",
        lambda r: with_authorization(r, lambda a: a.replace("/aws4_request", "/aws4_requests")),
        IncompleteSignatureException,
        (
            "Credential should be scoped with a valid terminator: 'aws4_request', "
            "not 'aws4_requests'."
        ),
    ),
    (
        "host not signed",
        lambda r: with_authorization(r, lambda a: a.replace(";host;", ";")),
        IncompleteSignatureException,
        "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
    ),
    (
        "upper-case signed header",
        lambda r: with_authorization(r, lambda a: a.replace(";host;", ";Host;")),
        IncompleteSignatureException,
        "SignedHeaders must be lower-case header names separated by ';'",
    ),
    (
        "empty signed header name",
        lambda r: with_authorization(r, lambda a: a.replace(";host;", ";host;;")),
        IncompleteSignatureException,
        "SignedHeaders must be lower-case header names",
    ),
    (
        "signed header listed twice",
        lambda r: with_authorization(r, lambda a: a.replace(";host;", ";host;host;")),
        IncompleteSignatureException,
        "SignedHeaders lists a header twice",
    ),
    (
        "signed header absent from the request",
        lambda r: with_header(r, "x-amz-target", None),
        IncompleteSignatureException,
        "Header 'x-amz-target' is listed in SignedHeaders but is not in the request.",
    ),
    (
        "no date at all",
        lambda r: with_header(r, "x-amz-date", None),
        IncompleteSignatureException,
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    ),
    (
        "malformed x-amz-date",
        lambda r: with_header(r, "x-amz-date", "2025-01-01T12:00:00Z"),
        IncompleteSignatureException,
        "X-Amz-Date must be in the ISO 8601 basic format",
    ),
    (
        "impossible x-amz-date",
        lambda r: with_header(r, "x-amz-date", "20250231T120000Z"),
        IncompleteSignatureException,
        "X-Amz-Date must be in the ISO 8601 basic format",
    ),
    (
        "two x-amz-date headers",
        lambda r: dataclasses.replace(r, headers=r.headers + [("x-amz-date", "20250101T120000Z")]),
        IncompleteSignatureException,
        "more than one X-Amz-Date header",
    ),
    (
        "malformed date header",
        lambda r: with_header(with_header(r, "x-amz-date", None), "date", "yesterday"),
        IncompleteSignatureException,
        "Date header must be an HTTP date",
    ),
    (
        "signature not hex",
        lambda r: with_authorization(r, lambda a: a.replace(_sig(a), "z" * 64)),
        IncompleteSignatureException,
        f"Signature must be 64 hexadecimal characters, got '{'z' * 64}'.",
    ),
    (
        "signature too short",
        lambda r: with_authorization(r, lambda a: a.replace(_sig(a), _sig(a)[:63])),
        IncompleteSignatureException,
        "Signature must be 64 hexadecimal characters",
    ),
    (
        "signature with non-ascii digits",
        lambda r: with_authorization(r, lambda a: a.replace(_sig(a), "\u0661" * 64)),
        IncompleteSignatureException,
        "Signature must be 64 hexadecimal characters",
    ),
    (
        "header and query authentication together",
        lambda r: with_query(r, lambda q: "X-Amz-Algorithm=AWS4-HMAC-SHA256"),
        IncompleteSignatureException,
        "Only one authentication method is allowed",
    ),
    (
        "body altered after signing",
        lambda r: dataclasses.replace(r, body=b'{"ServerName": "other"}'),
        InvalidSignatureException,
        MISMATCH,
    ),
    (
        "body removed after signing",
        lambda r: dataclasses.replace(r, body=b""),
        InvalidSignatureException,
        MISMATCH,
    ),
    (
        "signed header altered",
        lambda r: with_header(r, "x-amz-target", "OpsWorksCM_V2016_11_01.DeleteServer"),
        InvalidSignatureException,
        MISMATCH,
    ),
    (
        "host altered",
        lambda r: with_header(r, "host", "127.0.0.1:4581"),
        InvalidSignatureException,
        MISMATCH,
    ),
    (
        "method altered",
        lambda r: dataclasses.replace(r, method="PUT"),
        InvalidSignatureException,
        MISMATCH,
    ),
    (
        "path altered",
        lambda r: dataclasses.replace(r, path="/other"),
        InvalidSignatureException,
        MISMATCH,
    ),
    (
        "query added",
        lambda r: with_query(r, lambda q: "Action=DeleteServer"),
        InvalidSignatureException,
        MISMATCH,
    ),
    (
        "x-amz-date moved within the window",
        lambda r: with_header(r, "x-amz-date", "20250101T120100Z"),
        InvalidSignatureException,
        MISMATCH,
    ),
    (
        "signature from another request",
        lambda r: with_authorization(r, lambda a: a.replace(_sig(a), "ab" * 32)),
        InvalidSignatureException,
        MISMATCH,
    ),
]


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [case[1:] for case in HEADER_CASES],
    ids=[case[0] for case in HEADER_CASES],
)
def test_header_form_refusals(
    edit: Callable[[SignedRequest], SignedRequest], error: type[ApiError], message: str
) -> None:
    with pytest.raises(error) as raised:
        verifier().verify(edit(signed()))
    assert type(raised.value) is error
    assert message in raised.value.message


SIGNING_CASES: list[tuple[str, dict[str, str], type[ApiError], str]] = [
    (
        "unknown access key",
        {"access_key": "AKIDUNKNOWN"},
        UnrecognizedClientException,
        "The security token included in the request is invalid.",
    ),
    (
        "access key with a space",
        {"access_key": "AKID UNKNOWN"},
        UnrecognizedClientException,
        "The security token included in the request is invalid.",
    ),
    ("wrong secret", {"secret": "not-the-secret"}, InvalidSignatureException, MISMATCH),
    (
        "wrong service",
        {"service": "opsworks"},
        IncompleteSignatureException,
        "Credential should be scoped to correct service: 'opsworks-cm'.",
    ),
    (
        "upper-case region",
        {"region": "US-EAST-1"},
        IncompleteSignatureException,
        "Credential should be scoped to a valid region, not 'US-EAST-1'.",
    ),
    (
        "underscore region",
        {"region": "us_east_1"},
        IncompleteSignatureException,
        "Credential should be scoped to a valid region, not 'us_east_1'.",
    ),
    ("empty region", {"region": ""}, IncompleteSignatureException, "scoped to a valid region"),
    ("dangling dash region", {"region": "us-east-"}, IncompleteSignatureException, "valid region"),
    ("double dash region", {"region": "us--east-1"}, IncompleteSignatureException, "valid region"),
    ("overlong region", {"region": "a" * 64}, IncompleteSignatureException, "valid region"),
]


@pytest.mark.parametrize(
    ("signing", "error", "message"),
    [case[1:] for case in SIGNING_CASES],
    ids=[case[0] for case in SIGNING_CASES],
)
def test_requests_signed_wrongly_are_refused(
    signing: dict[str, str], error: type[ApiError], message: str
) -> None:
    with pytest.raises(error) as raised:
        verifier().verify(signed(**signing))
    assert type(raised.value) is error
    assert raised.value.message == message or message in raised.value.message


def test_request_signed_16_minutes_ago_has_expired() -> None:
    with pytest.raises(InvalidSignatureException) as raised:
        verifier(16 * 60).verify(signed())

    assert raised.value.message == (
        "Signature expired: 20250101T120000Z is now earlier than 20250101T120100Z "
        "(20250101T121600Z - 15 min.)"
    )


def test_request_signed_16_minutes_ahead_is_not_yet_current() -> None:
    with pytest.raises(InvalidSignatureException) as raised:
        verifier(-16 * 60).verify(signed())

    assert raised.value.message == (
        "Signature not yet current: 20250101T120000Z is still later than 20250101T115900Z "
        "(20250101T114400Z + 15 min.)"
    )


def test_skew_window_is_configurable() -> None:
    with pytest.raises(InvalidSignatureException, match=r"\(20250101T120200Z - 1 min\.\)"):
        verifier(120, max_skew_seconds=60).verify(signed())
    assert verifier(3000, max_skew_seconds=3600).verify(signed()).account == ACCOUNT


def test_expiry_is_checked_before_the_key_is_looked_up() -> None:
    looked_up: list[str] = []

    def recording_lookup(access_key_id: str) -> KeyRecord | None:
        looked_up.append(access_key_id)
        return KEYS.get(access_key_id)

    with pytest.raises(InvalidSignatureException):
        SigV4Verifier(recording_lookup, now=lambda: SIGNED_AT_EPOCH + 3600).verify(signed())
    assert looked_up == []


def test_other_service_name_can_be_verified() -> None:
    v = SigV4Verifier(lookup, service="opsworks", now=lambda: SIGNED_AT_EPOCH)

    assert v.verify(signed(service="opsworks")).account == ACCOUNT
    with pytest.raises(IncompleteSignatureException, match="correct service: 'opsworks'"):
        v.verify(signed())


# -- presigned refusals ------------------------------------------------------------------


def _drop_param(name: str) -> Callable[[str], str]:
    return lambda q: "&".join(p for p in q.split("&") if not p.startswith(name + "="))


def _set_param(name: str, value: str) -> Callable[[str], str]:
    return lambda q: "&".join(
        f"{name}={value}" if p.startswith(name + "=") else p for p in q.split("&")
    )


PRESIGNED_CASES: list[tuple[str, Callable[[str], str], type[ApiError], str]] = [
    (
        "no algorithm",
        _drop_param("X-Amz-Algorithm"),
        IncompleteSignatureException,
        "AWS query-string parameters must include 'X-Amz-Algorithm'.",
    ),
    (
        "no credential",
        _drop_param("X-Amz-Credential"),
        IncompleteSignatureException,
        "must include 'X-Amz-Credential'",
    ),
    ("no date", _drop_param("X-Amz-Date"), IncompleteSignatureException, "must include 'X-Amz-Date'"),
    (
        "no signed headers",
        _drop_param("X-Amz-SignedHeaders"),
        IncompleteSignatureException,
        "must include 'X-Amz-SignedHeaders'",
    ),
    (
        "no signature",
        _drop_param("X-Amz-Signature"),
        IncompleteSignatureException,
        "must include 'X-Amz-Signature'",
    ),
    (
        "other algorithm",
        _set_param("X-Amz-Algorithm", "AWS4-HMAC-SHA1"),
        IncompleteSignatureException,
        "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA1'",
    ),
    (
        "date twice",
        lambda q: q + "&X-Amz-Date=20250101T120000Z",
        IncompleteSignatureException,
        "Query parameter 'X-Amz-Date' appears more than once.",
    ),
    (
        "credential for another service",
        lambda q: q.replace("%2Fopsworks-cm%2F", "%2Fopsworks%2F"),
        IncompleteSignatureException,
        "Credential should be scoped to correct service: 'opsworks-cm'.",
    ),
    (
        "host not signed",
        _set_param("X-Amz-SignedHeaders", "content-type%3Bx-amz-target"),
        IncompleteSignatureException,
        "'Host' or ':authority' must be a 'SignedHeader'",
    ),
    (
        "expires not a number",
        _set_param("X-Amz-Expires", "soon"),
        IncompleteSignatureException,
        "X-Amz-Expires must be a non-negative integer number of seconds, not 'soon'.",
    ),
    (
        "expires negative",
        _set_param("X-Amz-Expires", "-5"),
        IncompleteSignatureException,
        "X-Amz-Expires must be a non-negative integer",
    ),
    (
        "expires over a week",
        _set_param("X-Amz-Expires", "604801"),
        IncompleteSignatureException,
        "X-Amz-Expires must be less than a week (in seconds) that is 604800, not 604801.",
    ),
    (
        "signature not hex",
        _set_param("X-Amz-Signature", "g" * 64),
        IncompleteSignatureException,
        "Signature must be 64 hexadecimal characters",
    ),
    (
        "signature not utf-8",
        _set_param("X-Amz-Signature", "%ff"),
        IncompleteSignatureException,
        "Query parameter 'X-Amz-Signature' is not valid UTF-8.",
    ),
    (
        "operation parameter altered",
        _set_param("ServerName", "evil"),
        InvalidSignatureException,
        MISMATCH,
    ),
    ("operation parameter added", lambda q: q + "&Extra=1", InvalidSignatureException, MISMATCH),
    ("expiry extended", _set_param("X-Amz-Expires", "3600"), InvalidSignatureException, MISMATCH),
    (
        "signature altered",
        _set_param("X-Amz-Signature", "0" * 64),
        InvalidSignatureException,
        MISMATCH,
    ),
]


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [case[1:] for case in PRESIGNED_CASES],
    ids=[case[0] for case in PRESIGNED_CASES],
)
def test_presigned_form_refusals(
    edit: Callable[[str], str], error: type[ApiError], message: str
) -> None:
    with pytest.raises(error) as raised:
        verifier().verify(with_query(presigned(), edit))
    assert type(raised.value) is error
    assert message in raised.value.message


def test_presigned_request_past_its_expiry_has_expired() -> None:
    request = presigned(expires=60)
    assert verifier(60).verify(request).account == ACCOUNT

    with pytest.raises(InvalidSignatureException) as raised:
        verifier(61).verify(request)
    # The words of the skew window, with X-Amz-Expires as the window.
    assert raised.value.message == (
        "Signature expired: 20250101T120000Z is now earlier than 20250101T120001Z "
        "(20250101T120101Z - 1 min.)"
    )


def test_presigned_request_from_the_future_is_not_yet_current() -> None:
    with pytest.raises(InvalidSignatureException) as raised:
        verifier(-16 * 60).verify(presigned())
    assert raised.value.message == (
        "Signature not yet current: 20250101T120000Z is still later than 20250101T115900Z "
        "(20250101T114400Z + 15 min.)"
    )


def test_presigned_request_body_and_headers_are_covered() -> None:
    request = presigned()
    with pytest.raises(InvalidSignatureException):
        verifier().verify(dataclasses.replace(request, body=b'{"ServerName": "x"}'))
    with pytest.raises(InvalidSignatureException):
        verifier().verify(with_header(request, "x-amz-target", "OpsWorksCM_V2016_11_01.X"))
    assert verifier().verify(with_header(request, "user-agent", "curl/8")).account == ACCOUNT


def test_presigned_request_without_expires_uses_the_skew_window() -> None:
    request = with_query(presigned(), _drop_param("X-Amz-Expires"))

    # X-Amz-Expires was signed, so removing it breaks the signature, but only once the
    # request is inside the 15-minute window.
    with pytest.raises(InvalidSignatureException):
        verifier(900).verify(request)
    with pytest.raises(InvalidSignatureException, match="Signature expired"):
        verifier(901).verify(request)


# -- robustness --------------------------------------------------------------------------

_any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=80)


@settings(max_examples=300, deadline=None)
@given(authorization=_any_text)
def test_any_authorization_header_yields_an_auth_error(authorization: str) -> None:
    request = with_header(signed(), "authorization", authorization)
    with pytest.raises(AUTH_ERRORS):
        verifier().verify(request)


@settings(max_examples=300, deadline=None)
@given(
    credential=_any_text,
    signed_headers=_any_text,
    signature=_any_text,
    amz_date=_any_text,
)
def test_any_authorization_parts_yield_an_auth_error(
    credential: str, signed_headers: str, signature: str, amz_date: str
) -> None:
    request = with_header(
        signed(),
        "authorization",
        f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed_headers}, "
        f"Signature={signature}",
    )
    request = with_header(request, "x-amz-date", amz_date)
    with pytest.raises(AUTH_ERRORS):
        verifier().verify(request)


@settings(max_examples=300, deadline=None)
@given(query=_any_text, path=_any_text, value=_any_text, body=st.binary(max_size=64))
def test_any_query_path_and_values_yield_an_auth_error(
    query: str, path: str, value: str, body: bytes
) -> None:
    base = signed()
    variants = [
        dataclasses.replace(base, query_string=query, path=path, body=body),
        with_header(dataclasses.replace(base, path=path), "x-amz-target", value),
        dataclasses.replace(presigned(), query_string=presigned().query_string + "&" + query),
        dataclasses.replace(presigned(), query_string=query),
    ]
    for request in variants:
        try:
            verifier().verify(request)
        except AUTH_ERRORS:
            pass


@pytest.mark.parametrize(
    "query",
    [
        "X-Amz-Algorithm",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%",
        "X-Amz-Credential=a%2Fb&X-Amz-Signature=&X-Amz-Algorithm=AWS4-HMAC-SHA256",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20250101%2Fus-east-1"
        "%2Fopsworks-cm%2Faws4_request&X-Amz-Date=99999999T999999Z&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=" + "0" * 64,
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=\udcff&X-Amz-Signature=\ud800",
        "&&&=&==&X-Amz-Signature=%zz",
    ],
)
def test_hostile_query_strings_yield_an_auth_error(query: str) -> None:
    request = dataclasses.replace(with_header(signed(), "authorization", None), query_string=query)
    with pytest.raises(AUTH_ERRORS):
        verifier().verify(request)


@pytest.mark.parametrize(
    "date",
    [
        "Wed, 01 Jan 2025 12:00:00 -0000",
        "Wed, 01 Jan 99999 12:00:00 GMT",
        "Mon, 32 Jan 2025 25:61:61 GMT",
        "\udcff",
        "20250101T120000Z",
    ],
)
def test_hostile_date_headers_yield_an_auth_error(date: str) -> None:
    request = with_header(with_header(signed(), "x-amz-date", None), "date", date)
    with pytest.raises(AUTH_ERRORS):
        verifier().verify(request)


@pytest.mark.parametrize("path", ["", "//", "/./", "/é/../..", "/a/../../.."])
def test_paths_that_normalize_to_the_root_verify_as_root(path: str) -> None:
    # botocore removes dot and empty segments before signing, so this is what it signs
    # for these paths too; what they mean is for the protocol layer to decide.
    assert verifier().verify(dataclasses.replace(signed(), path=path)).account == ACCOUNT


@pytest.mark.parametrize("path", ["/%", "/\udcff", "/a b", "/%zz?x", "/%2F"])
def test_hostile_paths_yield_an_auth_error(path: str) -> None:
    request = dataclasses.replace(signed(), path=path)
    with pytest.raises(AUTH_ERRORS):
        verifier().verify(request)


@pytest.mark.parametrize("value", ["\udcff", "é", "\x00", "a\r\nb", "\u2028"])
def test_hostile_header_values_yield_an_auth_error(value: str) -> None:
    with pytest.raises(AUTH_ERRORS):
        verifier().verify(with_header(signed(), "x-amz-target", value))
    with pytest.raises(AUTH_ERRORS):
        verifier().verify(with_header(signed(), "authorization", value))
