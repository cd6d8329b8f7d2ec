"""Chat history API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conference.errors import NotAuthenticatedError
from conference.schema import ERROR_RESPONSES
from rooms.apis import _room_id_or_404
from rooms.models import Participant
from rooms.permissions import require_admitted

from . import selectors
from .selectors import DEFAULT_PAGE, MAX_PAGE
from .services import message_public

MessageOutput = inline_serializer(
    name="ChatMessage",
    fields={
        "id": serializers.CharField(),
        "seq": serializers.IntegerField(),
        "sender": serializers.CharField(allow_null=True),
        "sender_name": serializers.CharField(),
        "to": serializers.CharField(allow_null=True),
        "text": serializers.CharField(),
        "client_id": serializers.CharField(allow_null=True),
        "created_at": serializers.DateTimeField(),
    },
)


class ChatHistoryApi(APIView):
    """Chat history, oldest first within a page, for people admitted to the room.

    Without a cursor: the newest ``limit`` messages. ``before=<seq>`` pages
    back; ``after=<seq>`` catches up. Private messages appear only for their
    sender and recipient.
    """

    permission_classes = [AllowAny]  # checked below: signed-in members or a guest's grant

    @extend_schema_serializer(component_name="ChatHistoryQuery")
    class QuerySerializer(serializers.Serializer[Any]):
        after = serializers.IntegerField(required=False, min_value=0, max_value=2**62)
        before = serializers.IntegerField(required=False, min_value=1, max_value=2**62)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE, default=DEFAULT_PAGE)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if "after" in attrs and "before" in attrs:
                raise serializers.ValidationError("Give either after or before, not both.")
            return attrs

    @extend_schema(
        operation_id="rooms_chat_list",
        parameters=[QuerySerializer],
        responses={
            200: inline_serializer(
                name="ChatPage",
                fields={
                    "results": MessageOutput.__class__(many=True),
                    "has_more": serializers.BooleanField(),
                    "head_seq": serializers.IntegerField(),
                    "next": serializers.CharField(allow_null=True),
                    "previous": serializers.CharField(allow_null=True),
                },
            ),
            **ERROR_RESPONSES,
        },
    )
    def get(self, request: Request, room_id: str) -> Response:
        room = _room_id_or_404(room_id)
        participant = request.auth if isinstance(request.auth, Participant) else None
        if participant is None and not request.user.is_authenticated:
            raise NotAuthenticatedError("Sign in or use a join grant to read chat history.")
        require_admitted(room=room, user=request.user, participant=participant)
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        ids = selectors.participant_ids_for(
            room=room, user_id=request.user.pk if request.user.is_authenticated else None, participant=participant
        )
        rows, more = selectors.chat_page(
            room=room, participant_ids=ids, after=q.get("after"), before=q.get("before"), limit=q["limit"]
        )
        path = request.build_absolute_uri(request.path)
        limit = q["limit"]
        going_forward = "after" in q
        newer = f"{path}?after={rows[-1].seq}&limit={limit}" if rows else None
        older = f"{path}?before={rows[0].seq}&limit={limit}" if rows else None
        return Response(
            {
                "results": [message_public(m) for m in rows],
                "has_more": more,
                "head_seq": room.chat_seq,
                # next: newer messages; previous: older ones (newest-last order).
                "next": newer if (not going_forward or more) and rows and rows[-1].seq < room.chat_seq else None,
                "previous": older if (going_forward or more) and rows and rows[0].seq > 1 else None,
            }
        )
