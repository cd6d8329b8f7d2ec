"""Maps every error raised under the API to ``{"error": {"code", "message", "details"}}``,
and serves JSON (API paths) or HTML (pages) for Django's own 400/403/404/500."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from .errors import DomainError, error_body

_DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "malformed_json",
    exceptions.ValidationError: "invalid",
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: maps every error to the documented JSON shape."""
    if isinstance(exc, DomainError):
        domain = Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
        # A retryable error (503, 429: details.retry_after_seconds, whole seconds): the standard header says when too.
        retry_after = exc.details.get("retry_after_seconds")
        if isinstance(retry_after, int):
            domain["Retry-After"] = str(max(1, retry_after))
        return domain
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        message = "The request is invalid; see details."
        details: Any = response.data
    else:
        detail = getattr(exc, "detail", "")
        message = str(detail) if detail else str(exc)
        details = {}
        wait = getattr(exc, "wait", None)
        if isinstance(exc, exceptions.Throttled) and wait is not None:
            details = {"retry_after_seconds": int(wait)}
    response.data = error_body(code, message, details)
    return response


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(("/api/", "/internal/"))


def json_or_html(status_code: int, code: str, message: str, template: str | None = None) -> Any:
    def view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
        if _wants_json(request) or template is None:
            return JsonResponse(error_body(code, message), status=status_code)
        return render(request, template, {"message": message}, status=status_code)

    return view


handler400 = json_or_html(400, "bad_request", "Bad request.", "error.html")
handler403 = json_or_html(403, "permission_denied", "You do not have permission to do this.", "error.html")
handler404 = json_or_html(404, "not_found", "Not found.", "error.html")
handler500 = json_or_html(500, "server_error", "Internal server error.", "error.html")
