"""SigV4 through real HTTP: every authentication error a caller can meet, end to end."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
from typing import Any
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests import authn
from tests.support import Cmhost, raw_call

BODY = b"{}"
TARGET = "OpsWorksCM_V2016_11_01.DescribeServers"


def _signed(cm: Cmhost, *, key: str = "test", secret: str = "test", service: str = "opsworks-cm",
            region: str = "us-east-1", when: dt.datetime | None = None) -> dict[str, str]:
    request = AWSRequest(method="POST", url=cm.url + "/", data=BODY, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET})
    signer = SigV4Auth(Credentials(key, secret), service, region)
    if when is None:
        signer.add_auth(request)
    else:  # sign as a client whose clock says `when`
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            signer.add_auth(request)
    return dict(request.headers.items())


def _send(cm: Cmhost, headers: dict[str, str], body: bytes = BODY) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(cm.host, cm.port, timeout=10)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_valid_signature(cmhost: Cmhost) -> None:
    assert _send(cmhost, _signed(cmhost))[0] == 200


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# Every refusal is a 400 of AWS's JSON protocol family: (build the headers, code, message).
CASES = {
    "no authentication": (lambda cm: {"Content-Type": "application/x-amz-json-1.1",
                                      "X-Amz-Target": TARGET},
                          authn.MISSING, authn.MISSING_MESSAGE),
    "malformed header": (lambda cm: {**_signed(cm), "Authorization": "AWS4-HMAC-SHA256 nonsense"},
                         authn.INCOMPLETE, re.escape(
                             "'nonsense' not a valid key=value pair (missing equal-sign) in "
                             "Authorization header.")),
    "unknown key": (lambda cm: _signed(cm, key="AKIANOBODYKNOWS12345"),
                    authn.UNKNOWN_KEY, authn.UNKNOWN_KEY_MESSAGE),
    "wrong secret": (lambda cm: _signed(cm, secret="not-the-secret"),
                     authn.INVALID, authn.MISMATCH_MESSAGE),
    "wrong service": (lambda cm: _signed(cm, service="ec2"), authn.INCOMPLETE,
                      re.escape("Credential should be scoped to correct service: 'opsworks-cm'.")),
    "16 minutes old": (lambda cm: _signed(cm, when=_now() - dt.timedelta(minutes=16)),
                       authn.INVALID, authn.EXPIRED_MESSAGE),
    "16 minutes ahead": (lambda cm: _signed(cm, when=_now() + dt.timedelta(minutes=16)),
                         authn.INVALID, authn.NOT_YET_MESSAGE),
    "signed header altered": (lambda cm: {**_signed(cm), "X-Amz-Target":
                                          "OpsWorksCM_V2016_11_01.DescribeEvents"},
                              authn.INVALID, authn.MISMATCH_MESSAGE),
}


@pytest.mark.parametrize("case", list(CASES))
def test_authentication_errors(cmhost: Cmhost, case: str) -> None:
    make, code, message = CASES[case]
    got_status, body = _send(cmhost, make(cmhost))
    assert (got_status, body["__type"]) == (authn.STATUS, code), body
    assert re.fullmatch(message, body["message"]), body


def test_body_altered_after_signing(cmhost: Cmhost) -> None:
    status, body = _send(cmhost, _signed(cmhost), body=b'{"ServerName": "x"}')
    assert (status, body["__type"]) == (authn.STATUS, authn.INVALID)
    assert re.fullmatch(authn.MISMATCH_MESSAGE, body["message"])


def test_region_comes_from_the_credential_scope(cmhost: Cmhost) -> None:
    status, _, body = raw_call(cmhost, "DescribeServers", BODY, region="ap-southeast-2")
    assert status == 200 and body["Servers"] == []
