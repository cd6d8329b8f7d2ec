"""One place that turns domain errors into API responses.

Every API error body is ``{"error": {"code", "message", "details"}}``.
Services raise :class:`DomainError` subclasses; views never build error
responses by hand: ``conference.exception_handler`` maps them once.
"""

from __future__ import annotations

from typing import Any

from rest_framework import status


class DomainError(Exception):
    """A rule of the domain was broken; ``code`` is stable and documented."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status_code: int | None = None, **details: Any):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.details = details


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Forbidden(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "forbidden"


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class Gone(DomainError):
    status_code = status.HTTP_410_GONE
    code = "gone"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details if details is not None else {}}}


class NotAuthenticatedError(DomainError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "not_authenticated"
