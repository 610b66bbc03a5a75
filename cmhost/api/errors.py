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


# Authentication errors, as AWS's JSON protocol services (DynamoDB, Kinesis, CloudWatch Logs,
# ECS, ... and OpsWorks CM) answer them: all 400, named `...Exception`. The spec's "Common
# Errors" list the query protocol's names instead (403 InvalidClientTokenId, RequestExpired,
# ...), which EC2, IAM and STS send and clients of a JSON service never see.
class MissingAuthenticationTokenException(ApiError):
    """No Authorization header and no presigned query at all."""

    code = "MissingAuthenticationTokenException"


class IncompleteSignatureException(ApiError):
    """The Authorization header or the presigned query cannot be read as SigV4."""

    code = "IncompleteSignatureException"


class UnrecognizedClientException(ApiError):
    """The access key ID is not one this service knows."""

    code = "UnrecognizedClientException"


class InvalidSignatureException(ApiError):
    """The signature is wrong, or right but for another moment (expired, not yet current)."""

    code = "InvalidSignatureException"


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
