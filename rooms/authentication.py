"""DRF authentication by join grant: ``Authorization: Grant <token>``.

Lets guests (who have no account) call the room APIs that admitted people
may use, such as chat history, for as long as their grant is valid.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .grants import grant_read
from .selectors import participant_for_grant

KEYWORD = "Grant"


class GrantTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode("latin-1").lower() != KEYWORD.lower():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Grant authorization header.")
        grant = grant_read(header[1].decode("latin-1"))
        participant = participant_for_grant(grant=grant) if grant else None
        if participant is None:
            raise exceptions.AuthenticationFailed("The join grant is invalid, expired or revoked.")
        return (participant.user or AnonymousUser(), participant)

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class GrantTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "rooms.authentication.GrantTokenAuthentication"
    name = "grantAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Grant <token>` with the token from a join grant (guests).",
        }
