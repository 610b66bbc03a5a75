"""AWS-style errors: each class's `code` is the error shape name sent as `__type`."""

from __future__ import annotations


class ApiError(Exception):
    """An error the API returns to the caller as `{"__type": code, "message": ...}`."""

    code: str = "InternalFailure"
    status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# The errors of the OpsWorks CM model itself (ValidationException, InvalidStateException, ...)
# are domain errors: see cmhost/service/errors.py. The protocol layer sends them with 400.


# Common errors of every AWS service (spec: "Common Errors").
class AccessDeniedException(ApiError):
    code = "AccessDeniedException"


class IncompleteSignature(ApiError):
    code = "IncompleteSignature"


class InvalidClientTokenId(ApiError):
    code = "InvalidClientTokenId"
    status = 403


class MissingAuthenticationToken(ApiError):
    code = "MissingAuthenticationToken"
    status = 403


class SignatureDoesNotMatch(ApiError):
    code = "SignatureDoesNotMatch"
    status = 403


class RequestExpired(ApiError):
    code = "RequestExpired"


class ThrottlingException(ApiError):
    code = "ThrottlingException"


class MissingAction(ApiError):
    code = "MissingAction"


class InvalidAction(ApiError):
    code = "InvalidAction"


class SerializationException(ApiError):
    code = "SerializationException"


class RequestEntityTooLarge(ApiError):
    code = "RequestEntityTooLargeException"
    status = 413


class UnsupportedMediaType(ApiError):
    code = "UnsupportedMediaTypeException"
    status = 415


class MethodNotAllowed(ApiError):
    code = "MethodNotAllowedException"
    status = 405


class InternalFailure(ApiError):
    code = "InternalFailure"
    status = 500


class ServiceUnavailable(ApiError):
    code = "ServiceUnavailable"
    status = 503
