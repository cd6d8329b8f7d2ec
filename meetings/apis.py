"""Scheduled meetings REST API (owner only): one view per operation, nested Input/Output serializers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conference.schema import ERROR_RESPONSES
from rooms.apis import public_base_url, signed_in_user

from . import selectors, services
from .models import MAX_DURATION_MINUTES, MAX_INVITEES, RRULE_MAX_LENGTH, Meeting
from .selectors import Upcoming

START_HELP = (
    "First start. Without an offset it is a wall-clock time in `time_zone` (recommended: recurrences keep "
    "it across daylight-saving changes); with one it is converted to `time_zone`."
)
RRULE_HELP = (
    "RFC 5545 RRULE value, e.g. `FREQ=WEEKLY;BYDAY=MO;COUNT=10` (an `RRULE:` prefix is accepted); empty = "
    "once. DAILY, WEEKLY, MONTHLY or YEARLY; the start must be its first occurrence."
)


class WallClockDateTimeField(serializers.DateTimeField):
    """An ISO 8601 date-time left in the zone it has: input without an offset stays naive (the service reads
    it in the meeting's zone); output keeps the meeting's zone and offset instead of converting to UTC."""

    def enforce_timezone(self, value: datetime) -> datetime:
        return value


class OccurrenceOutput(serializers.Serializer[Any]):
    start = WallClockDateTimeField(help_text="In the meeting's time zone.")
    end = WallClockDateTimeField()


class MeetingOutput(serializers.Serializer[Upcoming]):
    meetingId = serializers.CharField(source="meeting.public_id")
    title = serializers.CharField(source="meeting.title")
    start = serializers.SerializerMethodField(help_text="The first occurrence, in `time_zone`.")
    time_zone = serializers.CharField(source="meeting.time_zone")
    duration_minutes = serializers.IntegerField(source="meeting.duration_minutes")
    rrule = serializers.CharField(source="meeting.rrule")
    invitees = serializers.SerializerMethodField()
    status = serializers.CharField(source="meeting.status")
    sequence = serializers.IntegerField(source="meeting.sequence", help_text="iCalendar SEQUENCE of the invites.")
    ical_uid = serializers.CharField(source="meeting.ical_uid")
    roomId = serializers.CharField(source="meeting.room.public_id")
    join_url = serializers.SerializerMethodField()
    next_occurrence = OccurrenceOutput(
        source="occurrence", allow_null=True, help_text="In progress or next; null once over or cancelled."
    )
    opens_at = WallClockDateTimeField(allow_null=True, help_text="When the room opens for the next occurrence.")
    created_at = serializers.DateTimeField(source="meeting.created_at")
    updated_at = serializers.DateTimeField(source="meeting.updated_at")

    def get_start(self, row: Upcoming) -> str:
        return selectors.meeting_schedule(row.meeting).start.isoformat()

    def get_invitees(self, row: Upcoming) -> list[str]:
        return [invitee.email for invitee in row.meeting.invitees.all()]

    def get_join_url(self, row: Upcoming) -> str:
        return services.meeting_join_url(row.meeting, public_base_url(self.context["request"]))


def _out(request: Request, meeting: Meeting, code: int = status.HTTP_200_OK) -> Response:
    row = selectors.meeting_upcoming(meeting=meeting)
    return Response(MeetingOutput(row, context={"request": request}).data, status=code)


class _MeetingFields(serializers.Serializer[Any]):
    title = serializers.CharField(max_length=200)
    start = WallClockDateTimeField(help_text=START_HELP)
    time_zone = serializers.CharField(max_length=64, help_text="IANA zone name, e.g. `Europe/Berlin`.")
    duration_minutes = serializers.IntegerField(min_value=1, max_value=MAX_DURATION_MINUTES)
    rrule = serializers.CharField(
        max_length=RRULE_MAX_LENGTH, required=False, default="", allow_blank=True, help_text=RRULE_HELP
    )
    invitees = serializers.ListField(
        child=serializers.EmailField(), max_length=MAX_INVITEES, required=False, default=list
    )


class MeetingListCreateApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="MeetingCreateInput")
    class InputSerializer(_MeetingFields):
        pass

    @extend_schema(operation_id="meetings_list", responses={200: MeetingOutput(many=True), **ERROR_RESPONSES})
    def get(self, request: Request) -> Response:
        """The caller's upcoming meetings (not cancelled, not over), soonest next occurrence first."""
        rows = selectors.meeting_list_upcoming(user=signed_in_user(request))
        return Response(MeetingOutput(rows, many=True, context={"request": request}).data)  # type: ignore[arg-type]  # many=True takes a list

    @extend_schema(
        operation_id="meetings_create", request=InputSerializer, responses={201: MeetingOutput, **ERROR_RESPONSES}
    )
    def post(self, request: Request) -> Response:
        """Schedule a meeting; each invitee is mailed an invitation (.ics, METHOD:REQUEST)."""
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        meeting = services.meeting_create(
            owner=signed_in_user(request), base_url=public_base_url(request), **data.validated_data
        )
        return _out(request, meeting, status.HTTP_201_CREATED)


class MeetingDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="MeetingUpdateInput")
    class UpdateSerializer(_MeetingFields):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, partial=True, **kwargs)

    @extend_schema(operation_id="meetings_retrieve", responses={200: MeetingOutput, **ERROR_RESPONSES})
    def get(self, request: Request, meeting_id: str) -> Response:
        return _out(request, selectors.meeting_get_for_owner(meeting_id=meeting_id, user=signed_in_user(request)))

    @extend_schema(
        operation_id="meetings_update", request=UpdateSerializer, responses={200: MeetingOutput, **ERROR_RESPONSES}
    )
    def patch(self, request: Request, meeting_id: str) -> Response:
        """Change any fields; invitees get an updated invitation (same UID, higher SEQUENCE), removed
        invitees a cancellation. Nothing changed: nothing is sent."""
        data = self.UpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)  # partial: only the fields sent
        meeting = services.meeting_update(
            meeting_id=meeting_id, user=signed_in_user(request), base_url=public_base_url(request), **changes
        )
        return _out(request, selectors.meeting_get_for_owner(meeting_id=meeting.public_id, user=meeting.owner))


class MeetingCancelApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="meetings_cancel", request=None, responses={200: MeetingOutput, **ERROR_RESPONSES})
    def post(self, request: Request, meeting_id: str) -> Response:
        """Cancel: invitees get METHOD:CANCEL (STATUS:CANCELLED, higher SEQUENCE); the room ends. Idempotent."""
        meeting = services.meeting_cancel(
            meeting_id=meeting_id, user=signed_in_user(request), base_url=public_base_url(request)
        )
        return _out(request, meeting)
