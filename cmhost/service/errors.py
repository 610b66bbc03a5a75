"""Domain errors: each `code` is the OpsWorks CM error shape the API layer sends back."""

from __future__ import annotations


class ServiceError(Exception):
    code = "InternalFailure"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationException(ServiceError):
    code = "ValidationException"


class InvalidStateException(ServiceError):
    code = "InvalidStateException"


class ResourceNotFoundException(ServiceError):
    code = "ResourceNotFoundException"


class ResourceAlreadyExistsException(ServiceError):
    code = "ResourceAlreadyExistsException"


class LimitExceededException(ServiceError):
    code = "LimitExceededException"


class InvalidNextTokenException(ServiceError):
    code = "InvalidNextTokenException"


def violations(messages: list[str]) -> ValidationException:
    """A ValidationException in AWS's format: `N validation error(s) detected: a; b`."""
    noun = "error" if len(messages) == 1 else "errors"
    return ValidationException(f"{len(messages)} validation {noun} detected: " + "; ".join(messages))


def constraint(value: object, path: str, rule: str) -> str:
    """One violation message, e.g. Value '31' at 'backupRetentionCount' failed to ..."""
    shown = "null" if value is None else f"'{value}'"
    return f"Value {shown} at '{path}' failed to satisfy constraint: {rule}"
