"""Room REST API: one view per operation, nested Input/Output serializers."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conference.errors import Forbidden, NotAuthenticatedError, NotFound
from conference.fields import StrictBooleanField
from conference.schema import ERROR_RESPONSES
from conference.turn import ice_servers_for

from . import selectors, services
from .grants import browser_binding
from .ids import ROOM_ID_RE
from .join_throttles import join_throttled
from .models import MAX_LAST_N, MAX_PARTICIPANTS, MIN_PARTICIPANTS, Participant, Room
from .permissions import require_host
from .removals import (
    browser_key,
    participant_allow_rejoin,
    refuse_removed_browser,
    remember_browser,
    set_browser_cookie,
)


def public_base_url(request: Request) -> str:
    return settings.PUBLIC_BASE_URL or f"{request.scheme}://{request.get_host()}"


def join_url(request: Request, room: Room) -> str:
    return f"{public_base_url(request)}/join/{room.public_id}"


def ws_url(request: Request, room: Room) -> str:
    base = public_base_url(request)
    scheme = "wss" if base.startswith("https") else "ws"
    return f"{scheme}://{base.split('://', 1)[1]}/ws/rooms/{room.public_id}/"


def signed_in_user(request: Request) -> User:
    """The caller's account; views behind IsAuthenticated call this instead of casting."""
    user = request.user
    if not isinstance(user, User):
        raise NotAuthenticatedError("Sign in to do this.")
    return user


def _room_id_or_404(room_id: str, *, with_host: bool = True) -> Room:
    # Anything that is not shaped like a room ID cannot be one: no DB hit.
    if not ROOM_ID_RE.match(room_id):
        raise NotFound("No room has this ID.", code="room_not_found", room_id=room_id[:32])
    return selectors.room_get(room_id=room_id, with_host=with_host)


LAST_N_HELP = (
    "Cameras each participant receives: pinned first, then the most recent speakers; screen shares always. "
    "null = by room size (all up to 6 people, 9 up to 20, then 6)."
)


class RoomOutput(serializers.Serializer[Room]):
    roomId = serializers.CharField(source="public_id")
    name = serializers.CharField()
    join_url = serializers.SerializerMethodField()
    max_participants = serializers.IntegerField()
    has_password = serializers.BooleanField()
    waiting_room = serializers.BooleanField()
    locked = serializers.BooleanField()
    allow_guests = serializers.BooleanField()
    e2ee = serializers.BooleanField()
    last_n = serializers.IntegerField(allow_null=True, help_text=LAST_N_HELP)
    status = serializers.CharField()
    host = serializers.CharField(source="host.username")
    is_host = serializers.SerializerMethodField()
    participant_count = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)

    def get_join_url(self, room: Room) -> str:
        return join_url(self.context["request"], room)

    def get_is_host(self, room: Room) -> bool:
        user = self.context["request"].user
        return bool(user.is_authenticated and room.host_id == user.pk)

    def get_participant_count(self, room: Room) -> int:
        return selectors.seated_participants(room=room).count()


class RoomListCreateApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="RoomCreateInput")
    class InputSerializer(serializers.Serializer[Any]):
        name = serializers.CharField(max_length=200)
        max_participants = serializers.IntegerField(min_value=MIN_PARTICIPANTS, max_value=MAX_PARTICIPANTS, default=50)
        password = serializers.CharField(max_length=128, required=False, default="", allow_blank=True)
        waiting_room = StrictBooleanField(default=False)
        allow_guests = StrictBooleanField(default=True)
        locked = StrictBooleanField(default=False)
        e2ee = StrictBooleanField(default=False)
        last_n = serializers.IntegerField(
            min_value=0, max_value=MAX_LAST_N, required=False, allow_null=True, default=None, help_text=LAST_N_HELP
        )

    @extend_schema(operation_id="rooms_list", responses={200: RoomOutput(many=True), **ERROR_RESPONSES})
    def get(self, request: Request) -> Response:
        rooms = selectors.room_list_for_user(user=signed_in_user(request))[:200]
        out = RoomOutput(list(rooms), many=True, context={"request": request})  # type: ignore[arg-type]  # many=True takes a list
        return Response(out.data)

    @extend_schema(operation_id="rooms_create", request=InputSerializer, responses={201: RoomOutput, **ERROR_RESPONSES})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        room = services.room_create(host=signed_in_user(request), **data.validated_data)
        return Response(RoomOutput(room, context={"request": request}).data, status=status.HTTP_201_CREATED)


class RoomDetailApi(APIView):
    """Anyone with the ID may read a room's public facts (the pre-join screen needs them)."""

    permission_classes = [AllowAny]

    @extend_schema_serializer(component_name="RoomUpdateInput")
    class UpdateSerializer(serializers.Serializer[Any]):
        name = serializers.CharField(max_length=200, required=False)
        max_participants = serializers.IntegerField(
            min_value=MIN_PARTICIPANTS, max_value=MAX_PARTICIPANTS, required=False
        )
        password = serializers.CharField(max_length=128, required=False, allow_blank=True)
        waiting_room = StrictBooleanField(required=False)
        locked = StrictBooleanField(required=False)
        allow_guests = StrictBooleanField(required=False)
        last_n = serializers.IntegerField(
            min_value=0, max_value=MAX_LAST_N, required=False, allow_null=True, help_text=LAST_N_HELP
        )

    @extend_schema(operation_id="rooms_retrieve", responses={200: RoomOutput, **ERROR_RESPONSES})
    def get(self, request: Request, room_id: str) -> Response:
        room = _room_id_or_404(room_id)
        return Response(RoomOutput(room, context={"request": request}).data)

    @extend_schema(
        operation_id="rooms_update", request=UpdateSerializer, responses={200: RoomOutput, **ERROR_RESPONSES}
    )
    def patch(self, request: Request, room_id: str) -> Response:
        room = _room_id_or_404(room_id)
        require_host(room=room, user=request.user)
        data = self.UpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        room = services.room_update(room_id=room.public_id, user=signed_in_user(request), **data.validated_data)
        return Response(RoomOutput(room, context={"request": request}).data)


class StreamCapabilities(serializers.Serializer[Any]):
    audio = StrictBooleanField(default=True)
    video = StrictBooleanField(default=True)
    screen = StrictBooleanField(default=True)


class RoomJoinApi(APIView):
    """Ask to join: returns a join grant (socket URL, short-lived token, ICE servers, role)."""

    permission_classes = [AllowAny]

    @extend_schema_serializer(component_name="RoomJoinInput")
    class InputSerializer(serializers.Serializer[Any]):
        userId = serializers.IntegerField(required=False, allow_null=True, help_text="Must be the caller's own id.")
        display_name = serializers.CharField(max_length=80, required=False, default="", allow_blank=True)
        password = serializers.CharField(max_length=128, required=False, default="", allow_blank=True)
        stream_capabilities = StreamCapabilities(required=False)
        rejoin_token = serializers.CharField(
            max_length=1024,
            required=False,
            default="",
            allow_blank=True,
            help_text="The `rejoin_token` of an earlier grant (kept per tab, e.g. in sessionStorage): the same "
            "participant again, without password or waiting room. `display_name` and `password` are then ignored; "
            "if it is refused (`rejoin_token_invalid`), join without it.",
        )

    @extend_schema_serializer(component_name="JoinGrant")
    class OutputSerializer(serializers.Serializer[Any]):
        roomId = serializers.CharField()
        participantId = serializers.CharField()
        display_name = serializers.CharField()
        role = serializers.ChoiceField(choices=["host", "moderator", "participant", "guest"])
        status = serializers.ChoiceField(choices=["admitted", "waiting"])
        token = serializers.CharField()
        token_expires_in = serializers.IntegerField()
        rejoin_token = serializers.CharField(
            help_text="Opaque; send it back as `rejoin_token` to take this seat again after a reload. Bound to this "
            "room, participant, user (none for guests) and browser session; void once removed, denied or the room "
            "ends."
        )
        rejoin_expires_in = serializers.IntegerField(help_text="Seconds the rejoin token stays valid.")
        ws_url = serializers.CharField()
        ice_servers = serializers.ListField(child=serializers.DictField())
        stream_capabilities = serializers.DictField(child=serializers.BooleanField())
        e2ee = serializers.BooleanField()

    @extend_schema(
        operation_id="rooms_join",
        request=InputSerializer,
        responses={200: OutputSerializer, **ERROR_RESPONSES},
    )
    def post(self, request: Request, room_id: str) -> Response:
        room = _room_id_or_404(room_id, with_host=False)  # the join never shows the host (its ID is on the row)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user_id = data.validated_data.get("userId")
        if user_id is not None and (not request.user.is_authenticated or request.user.pk != user_id):
            raise Forbidden("userId must be your own user id.", code="user_mismatch")
        session = getattr(request, "session", None)
        browser = browser_binding(session.session_key if session is not None else None)
        guest_key = None
        if not request.user.is_authenticated:
            guest_key, new_browser = browser_key(request._request)
            if not new_browser:
                refuse_removed_browser(room=room, key=guest_key)
        if data.validated_data["rejoin_token"]:
            # Signed and bound to this participant and browser: nothing to guess, so no throttle.
            result = services.participant_rejoin(
                room_id=room.public_id,
                user=request.user,
                rejoin_token=data.validated_data["rejoin_token"],
                browser=browser,
                stream_capabilities=data.validated_data.get("stream_capabilities"),
            )
        else:
            with join_throttled(request._request, room=room, password=data.validated_data["password"]):
                result = services.participant_join(
                    room_id=room.public_id,
                    user=request.user,
                    display_name=data.validated_data["display_name"],
                    password=data.validated_data["password"],
                    stream_capabilities=data.validated_data.get("stream_capabilities"),
                    browser=browser,
                    guest_browser_key=guest_key or "",
                )
        p = result.participant
        body = {
            "roomId": room.public_id,
            "participantId": p.public_id,
            "display_name": p.display_name,
            "role": p.role,
            "status": "waiting" if p.state == Participant.State.WAITING else "admitted",
            "token": result.token,
            "token_expires_in": settings.JOIN_GRANT_TTL_SECONDS,
            "rejoin_token": result.rejoin_token,
            "rejoin_expires_in": settings.REJOIN_TOKEN_TTL_SECONDS,
            "ws_url": ws_url(request, room),
            "ice_servers": ice_servers_for(user=p.public_id),
            "stream_capabilities": p.stream_capabilities,
            "e2ee": room.e2ee,
        }
        response = Response(body)  # already the OutputSerializer's shape (the schema); not serialised twice
        if guest_key is not None:
            remember_browser(participant=p, key=guest_key)
            set_browser_cookie(response, guest_key, secure=request.is_secure())
        return response


class RoomEndApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="rooms_end", request=None, responses={200: RoomOutput, **ERROR_RESPONSES})
    def post(self, request: Request, room_id: str) -> Response:
        room = _room_id_or_404(room_id)
        require_host(room=room, user=request.user)
        room = services.room_end(room_id=room.public_id, user=signed_in_user(request))
        return Response(RoomOutput(room, context={"request": request}).data)


class RoomRemovalDeleteApi(APIView):
    """The host lets a removed participant (an account or a guest's browser) join again."""

    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="rooms_removals_delete", request=None, responses={204: None, **ERROR_RESPONSES})
    def delete(self, request: Request, room_id: str, participant_id: str) -> Response:
        room = _room_id_or_404(room_id)
        participant_allow_rejoin(user=signed_in_user(request), room_id=room.public_id, participant_id=participant_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
