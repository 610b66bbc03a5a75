"""The authentication errors cmhost must answer, as AWS's JSON protocol services send them.

OpsWorks CM was a JSON 1.1 service: like DynamoDB, Kinesis or CloudWatch Logs it refused a
request it could not authenticate with HTTP 400 and one of four `...Exception` codes, never the
query protocol's 403 `SignatureDoesNotMatch` / `InvalidClientTokenId` family. The messages are
those services' own words (the timestamps vary), as regular expressions for `re.fullmatch`.
"""

from __future__ import annotations

import re

STATUS = 400
MISSING = "MissingAuthenticationTokenException"
INCOMPLETE = "IncompleteSignatureException"
UNKNOWN_KEY = "UnrecognizedClientException"
INVALID = "InvalidSignatureException"
CODES = frozenset({MISSING, INCOMPLETE, UNKNOWN_KEY, INVALID})

_DATE = r"\d{8}T\d{6}Z"
MISSING_MESSAGE = re.escape("Request is missing Authentication Token")
UNKNOWN_KEY_MESSAGE = re.escape("The security token included in the request is invalid.")
MISMATCH_MESSAGE = re.escape(
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


def expired_message(span: str = "15 min.") -> str:
    """Past the 15-minute skew window, or past a presigned URL's X-Amz-Expires (`span`)."""
    return (
        rf"Signature expired: {_DATE} is now earlier than {_DATE} "
        rf"\({_DATE} - {re.escape(span)}\)"
    )


EXPIRED_MESSAGE = expired_message()
NOT_YET_MESSAGE = (
    rf"Signature not yet current: {_DATE} is still later than {_DATE} "
    rf"\({_DATE} \+ 15 min\.\)"
)
# IncompleteSignatureException says what it could not read, in words of its own.
ANY_MESSAGE = r"(?s).+"


def error_type_names(header: str | None, code: str) -> bool:
    """Whether an `x-amzn-ErrorType` header names `code`: the bare code, or AWS's longer
    `Code:http://internal.amazon.com/coral/...` form, which every SDK cuts at the colon."""
    return header is not None and header.split(":", 1)[0] == code
