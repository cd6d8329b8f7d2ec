"""Breakout rooms over REST: the host's (or a signed-in moderator's) controls, one view per operation.

Moving between rooms is a socket frame only (``breakout_join``/``breakout_leave``): it switches what a
live socket speaks for, which a REST call cannot do (docs/protocol.md §1 "Breakout rooms").
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conference.errors import Forbidden
from conference.fields import StrictBooleanField
from conference.schema import ERROR_RESPONSES
from rooms.apis import _room_id_or_404, signed_in_user
from rooms.models import Room
from rooms.permissions import is_room_moderator
from rooms.selectors import participant_was_admitted

from . import services
from .models import DEFAULT_CLOSE_DELAY_SECONDS, MAX_BREAKOUTS, MAX_CLOSE_DELAY_SECONDS, MAX_DURATION_MINUTES


class BreakoutOutput(serializers.Serializer[Any]):
    breakoutId = serializers.CharField(help_text="The breakout's room ID (its own chat and media room).")
    name = serializers.CharField()
    index = serializers.IntegerField()
    assigned = serializers.ListField(child=serializers.CharField(), help_text="Meeting participant IDs.")
    present = serializers.ListField(child=serializers.CharField(), help_text="Meeting participant IDs inside it now.")


class StateOutput(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=["none", "open", "closing", "closed"])
    ends_at = serializers.DateTimeField(allow_null=True, help_text="When the timer starts the countdown.")
    closes_at = serializers.DateTimeField(allow_null=True, help_text="When everyone is brought back.")
    breakouts = BreakoutOutput(many=True)


def _state(room: Room) -> dict[str, Any]:
    return services.session_public(services.live_session(meeting=room))


class BreakoutsApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="BreakoutOpenInput")
    class OpenInput(serializers.Serializer[Any]):
        count = serializers.IntegerField(min_value=1, max_value=MAX_BREAKOUTS)
        names = serializers.ListField(
            child=serializers.CharField(max_length=80, allow_blank=True), max_length=MAX_BREAKOUTS, required=False
        )
        duration_minutes = serializers.IntegerField(
            min_value=1, max_value=MAX_DURATION_MINUTES, required=False, allow_null=True
        )
        assignments = serializers.DictField(
            child=serializers.IntegerField(min_value=0),
            required=False,
            help_text="Meeting participant ID → breakout index (0-based).",
        )
        auto = StrictBooleanField(required=False, default=False, help_text="Spread everyone else evenly.")

    @extend_schema(operation_id="rooms_breakouts_retrieve", responses={200: StateOutput, **ERROR_RESPONSES})
    def get(self, request: Request, room_id: str) -> Response:
        """The meeting's breakout rooms now (its host, moderators and people admitted to it)."""
        room = _room_id_or_404(room_id)
        user = signed_in_user(request)
        if not (is_room_moderator(room=room, user=user) or participant_was_admitted(room=room, user=user)):
            raise Forbidden("Only people admitted to this room can do this.", code="not_admitted")
        return Response(_state(room))

    @extend_schema(
        operation_id="rooms_breakouts_create", request=OpenInput, responses={201: StateOutput, **ERROR_RESPONSES}
    )
    def post(self, request: Request, room_id: str) -> Response:
        """Split the meeting into breakout rooms (host or moderator)."""
        room = _room_id_or_404(room_id)
        data = self.OpenInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.breakouts_open(meeting_id=room.public_id, user=signed_in_user(request), **data.validated_data)
        return Response(_state(room), status=status.HTTP_201_CREATED)


class BreakoutAssignApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="BreakoutAssignInput")
    class Input(serializers.Serializer[Any]):
        participantId = serializers.CharField(max_length=32)
        breakoutId = serializers.CharField(max_length=32, allow_null=True, help_text="null: the main room.")

    @extend_schema(
        operation_id="rooms_breakouts_assign", request=Input, responses={200: StateOutput, **ERROR_RESPONSES}
    )
    def post(self, request: Request, room_id: str) -> Response:
        """Assign a meeting participant to a breakout room (or to none)."""
        room = _room_id_or_404(room_id)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        services.breakout_assign(
            meeting_id=room.public_id,
            user=signed_in_user(request),
            participant_id=data.validated_data["participantId"],
            breakout_id=data.validated_data["breakoutId"],
        )
        return Response(_state(room))


class BreakoutBroadcastApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="BreakoutBroadcastInput")
    class Input(serializers.Serializer[Any]):
        text = serializers.CharField(max_length=services.MAX_BROADCAST_LENGTH)

    @extend_schema(
        operation_id="rooms_breakouts_broadcast", request=Input, responses={200: StateOutput, **ERROR_RESPONSES}
    )
    def post(self, request: Request, room_id: str) -> Response:
        """Show a message in every breakout room and the main room."""
        room = _room_id_or_404(room_id)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        services.breakouts_broadcast(
            meeting_id=room.public_id, user=signed_in_user(request), text=data.validated_data["text"]
        )
        return Response(_state(room))


class BreakoutCloseApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="BreakoutCloseInput")
    class Input(serializers.Serializer[Any]):
        delay_seconds = serializers.IntegerField(
            min_value=0, max_value=MAX_CLOSE_DELAY_SECONDS, default=DEFAULT_CLOSE_DELAY_SECONDS, required=False
        )

    @extend_schema(operation_id="rooms_breakouts_close", request=Input, responses={200: StateOutput, **ERROR_RESPONSES})
    def post(self, request: Request, room_id: str) -> Response:
        """Start the "returning in N s" countdown (0: everyone back at once)."""
        room = _room_id_or_404(room_id)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        services.breakouts_close(
            meeting_id=room.public_id, user=signed_in_user(request), delay_seconds=data.validated_data["delay_seconds"]
        )
        return Response(_state(room))
