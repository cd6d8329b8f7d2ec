"""Recording REST API: one view per operation, nested Input/Output serializers.

Recordings are visible to the room's host and moderators and to the users
they were shared with; to anyone else a recording does not exist (404).
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conference.errors import NotFound
from conference.schema import ERROR_RESPONSES, ErrorSerializer
from rooms.apis import _room_id_or_404, public_base_url, signed_in_user

from . import selectors, services
from .downloads import download_url, url_lifetime
from .models import Recording, RecordingShare

RECORDING_ID_RE = re.compile(r"^rec[a-z0-9]{10}$")
UNAVAILABLE = {
    503: OpenApiResponse(
        ErrorSerializer,
        description="`media_unavailable`: the media server is restarting or failing over. Retryable: the "
        "`Retry-After` header and `details.retry_after_seconds` say when to try again",
    )
}


def _recording_id_or_404(recording_id: str) -> str:
    if not RECORDING_ID_RE.match(recording_id):
        raise NotFound("No recording has this ID.", code="recording_not_found")
    return recording_id


class RecordingOutput(serializers.Serializer[Recording]):
    recordingId = serializers.CharField(source="public_id")
    roomId = serializers.CharField(source="room.public_id")
    status = serializers.ChoiceField(choices=Recording.Status.choices)
    failure_reason = serializers.CharField()
    stop_reason = serializers.CharField()
    started_by = serializers.CharField(source="started_by.username", allow_null=True, default=None)
    duration_limit_minutes = serializers.IntegerField()
    started_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)
    duration_seconds = serializers.FloatField(allow_null=True)
    size_bytes = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    can_manage = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField(help_text="Expiring link to the MP4 (ready recordings).")
    thumbnail_url = serializers.SerializerMethodField(help_text="Expiring link to the JPEG thumbnail.")
    url_expires_in = serializers.SerializerMethodField(help_text="Seconds the links stay valid.")

    def get_can_manage(self, recording: Recording) -> bool:
        return selectors.recording_can_manage(recording=recording, user=self.context["request"].user)

    def get_download_url(self, recording: Recording) -> str | None:
        return download_url(recording, "file", base_url=public_base_url(self.context["request"]))

    def get_thumbnail_url(self, recording: Recording) -> str | None:
        return download_url(recording, "thumbnail", base_url=public_base_url(self.context["request"]))

    def get_url_expires_in(self, recording: Recording) -> int | None:
        return url_lifetime() if recording.status == Recording.Status.READY else None


class RecordingStartApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="RecordingStartInput")
    class InputSerializer(serializers.Serializer[Any]):
        duration_minutes = serializers.IntegerField(min_value=1, max_value=24 * 60, default=60)

    @extend_schema_serializer(component_name="RecordingStarted")
    class OutputSerializer(serializers.Serializer[Any]):
        recordingId = serializers.CharField()
        status = serializers.ChoiceField(choices=["started"])
        started_at = serializers.DateTimeField()
        duration_minutes = serializers.IntegerField()

    @extend_schema(
        operation_id="rooms_record",
        request=InputSerializer,
        responses={201: OutputSerializer, **ERROR_RESPONSES, **UNAVAILABLE},
        description="Start recording the room (host/moderator). Everyone in the room gets `recording_state`. "
        "Errors: `recording_e2ee`, `recording_in_progress`, `recording_refused` (409), `room_ended` (410), "
        "`media_unavailable` (503; the recording is failed with that reason).",
    )
    def post(self, request: Request, room_id: str) -> Response:
        room = _room_id_or_404(room_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        minutes = data.validated_data["duration_minutes"]
        recording = services.recording_start(
            room_id=room.public_id, user=signed_in_user(request), duration_minutes=minutes
        )
        body = {
            "recordingId": recording.public_id,
            "status": "started",
            "started_at": recording.started_at,
            "duration_minutes": minutes,
        }
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)


class RoomRecordingListApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="rooms_recordings", responses={200: RecordingOutput(many=True), **ERROR_RESPONSES})
    def get(self, request: Request, room_id: str) -> Response:
        room = _room_id_or_404(room_id)
        recordings = list(selectors.recording_list_for_room(room=room, user=request.user)[:200])
        return Response(RecordingOutput(recordings, many=True, context={"request": request}).data)  # type: ignore[arg-type]


class RecordingDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="recordings_retrieve", responses={200: RecordingOutput, **ERROR_RESPONSES})
    def get(self, request: Request, recording_id: str) -> Response:
        recording = selectors.recording_get_for_user(recording_id=_recording_id_or_404(recording_id), user=request.user)
        return Response(RecordingOutput(recording, context={"request": request}).data)


class RecordingStopApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="recordings_stop",
        request=None,
        responses={200: RecordingOutput, **ERROR_RESPONSES, **UNAVAILABLE},
        description="Stop a running recording (host/moderator); it goes on to processing. With the media "
        "server unreachable: 503, and the stop is retried by the cleanup job.",
    )
    def post(self, request: Request, recording_id: str) -> Response:
        recording = services.recording_stop_by_user(
            recording_id=_recording_id_or_404(recording_id), user=signed_in_user(request)
        )
        recording = selectors.recording_get_for_user(recording_id=recording.public_id, user=request.user)
        return Response(RecordingOutput(recording, context={"request": request}).data)


class RecordingRetryApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="recordings_retry",
        request=None,
        responses={202: RecordingOutput, **ERROR_RESPONSES},
        description="Process a failed recording again, if its raw files are still there (host/moderator).",
    )
    def post(self, request: Request, recording_id: str) -> Response:
        recording = services.recording_retry(
            recording_id=_recording_id_or_404(recording_id), user=signed_in_user(request)
        )
        recording = selectors.recording_get_for_user(recording_id=recording.public_id, user=request.user)
        return Response(RecordingOutput(recording, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)


class ShareOutput(serializers.Serializer[RecordingShare]):
    username = serializers.CharField(source="user.username")
    shared_by = serializers.CharField(source="shared_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class RecordingShareListCreateApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="RecordingShareInput")
    class InputSerializer(serializers.Serializer[Any]):
        username = serializers.CharField(max_length=150)

    @extend_schema(operation_id="recordings_shares_list", responses={200: ShareOutput(many=True), **ERROR_RESPONSES})
    def get(self, request: Request, recording_id: str) -> Response:
        recording = selectors.recording_get_for_user(recording_id=_recording_id_or_404(recording_id), user=request.user)
        shares = list(selectors.recording_shares(recording=recording))
        return Response(ShareOutput(shares, many=True).data)  # type: ignore[arg-type]

    @extend_schema(
        operation_id="recordings_shares_create",
        request=InputSerializer,
        responses={201: ShareOutput, **ERROR_RESPONSES},
        description="Let another user see and download this recording (host/moderator). Idempotent.",
    )
    def post(self, request: Request, recording_id: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        share = services.recording_share(
            recording_id=_recording_id_or_404(recording_id),
            user=signed_in_user(request),
            username=data.validated_data["username"],
        )
        return Response(ShareOutput(share).data, status=status.HTTP_201_CREATED)


class RecordingShareDeleteApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="recordings_shares_delete", responses={204: None, **ERROR_RESPONSES})
    def delete(self, request: Request, recording_id: str, username: str) -> Response:
        services.recording_unshare(
            recording_id=_recording_id_or_404(recording_id), user=signed_in_user(request), username=username
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
