"""Recording API. Starting a recording arrives with the recording issue (#6)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conference.errors import DomainError, Forbidden
from conference.schema import ERROR_RESPONSES
from rooms.apis import _room_id_or_404
from rooms.permissions import is_room_moderator


class RecordingStartApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="RecordingStartInput")
    class InputSerializer(serializers.Serializer[Any]):
        duration_minutes = serializers.IntegerField(min_value=1, max_value=24 * 60, default=60)

    @extend_schema(
        operation_id="rooms_record",
        request=InputSerializer,
        responses={**ERROR_RESPONSES, 501: ERROR_RESPONSES[400]},
        description="Reserved: answers 501 `recording_not_available` until server-side recording ships.",
    )
    def post(self, request: Request, room_id: str) -> Response:
        room = _room_id_or_404(room_id)
        if not is_room_moderator(room=room, user=request.user):
            raise Forbidden("Only the host or a moderator can record.", code="not_moderator")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if room.e2ee:
            raise DomainError("End-to-end encrypted rooms cannot be recorded.", code="recording_e2ee", status_code=409)
        raise DomainError(
            "Server-side recording is not available yet.",
            code="recording_not_available",
            status_code=status.HTTP_501_NOT_IMPLEMENTED,
        )
