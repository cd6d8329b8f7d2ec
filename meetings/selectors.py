"""Reads of scheduled meetings: the owner's list, one meeting, and when a meeting's room opens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Q
from django.utils import timezone

from conference.errors import NotFound
from rooms.models import Room

from .models import Meeting
from .recurrence import Occurrence, Schedule, time_zone_get


def meeting_schedule(meeting: Meeting) -> Schedule:
    zone = time_zone_get(meeting.time_zone)
    return Schedule(
        start=meeting.starts_at.astimezone(zone),
        duration=timedelta(minutes=meeting.duration_minutes),
        rrule=meeting.rrule,
    )


def opens_before() -> timedelta:
    return timedelta(minutes=settings.SCHEDULED_ROOM_OPENS_MINUTES_BEFORE)


@dataclass(frozen=True)
class Upcoming:
    meeting: Meeting
    occurrence: Occurrence | None  # the one in progress or the next; None once the last has ended

    @property
    def opens_at(self) -> datetime | None:
        return self.occurrence.start - opens_before() if self.occurrence else None


def meeting_get_for_owner(*, meeting_id: str, user: User) -> Meeting:
    """The user's own meeting; someone else's is ``meeting_not_found`` too (its existence is not revealed)."""
    meeting = (
        Meeting.objects.filter(public_id=meeting_id, owner=user)
        .select_related("room", "owner")
        .prefetch_related("invitees")
        .first()
    )
    if meeting is None:
        raise NotFound("No meeting of yours has this ID.", code="meeting_not_found", meeting_id=meeting_id[:32])
    return meeting


def meeting_list_upcoming(*, user: User, now: datetime | None = None, limit: int = 200) -> list[Upcoming]:
    """The user's scheduled (not cancelled) meetings whose last occurrence has not ended, soonest first by
    their current or next occurrence. Two queries however many meetings (meetings with rooms, invitees)."""
    now = now or timezone.now()
    meetings = (
        Meeting.objects.filter(owner=user, status=Meeting.Status.SCHEDULED)
        .filter(Q(last_ends_at__isnull=True) | Q(last_ends_at__gt=now))
        .select_related("room", "owner")
        .prefetch_related("invitees")
        .order_by("starts_at")[:limit]
    )
    rows = [Upcoming(meeting=m, occurrence=meeting_schedule(m).current_or_next(now)) for m in meetings]
    rows = [row for row in rows if row.occurrence is not None]
    return sorted(rows, key=lambda row: row.occurrence.start if row.occurrence else now)


def meeting_upcoming(*, meeting: Meeting, now: datetime | None = None) -> Upcoming:
    now = now or timezone.now()
    occurrence = None if meeting.is_cancelled else meeting_schedule(meeting).current_or_next(now)
    return Upcoming(meeting=meeting, occurrence=occurrence)


def room_opens_at(*, room: Room, now: datetime | None = None) -> datetime | None:
    """When a scheduled meeting's room opens for joining, if that is still ahead; ``None`` if the room is
    not a scheduled meeting's, is open now (from ``SCHEDULED_ROOM_OPENS_MINUTES_BEFORE`` before the current
    or next occurrence until it ends), or has no occurrence left (it is then an ordinary room).

    A room read with ``select_related("scheduled_meeting")`` (the join's locked read) costs no query here."""
    read_with_room = Room.scheduled_meeting  # the reverse one-to-one of Meeting.room
    if read_with_room.is_cached(room):
        cached = read_with_room.related.get_cached_value(room)  # None: the room has no meeting
        meeting = cached if isinstance(cached, Meeting) and cached.status == Meeting.Status.SCHEDULED else None
    else:
        meeting = Meeting.objects.filter(room=room, status=Meeting.Status.SCHEDULED).first()
    if meeting is None:
        return None
    now = now or timezone.now()
    opens_at = meeting_upcoming(meeting=meeting, now=now).opens_at
    return opens_at if opens_at is not None and now < opens_at else None
