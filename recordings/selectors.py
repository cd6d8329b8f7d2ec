"""Reads of recordings, with who may see them.

A recording is visible to its room's host and moderators and to the users it
was shared with; to anyone else it does not exist (404, never 403).
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from conference.errors import NotFound
from rooms.models import Room
from rooms.permissions import is_room_moderator

from .models import Recording, RecordingShare

RECORDING_ID_MAX = 16


def recording_can_manage(*, recording: Recording, user: User | AnonymousUser) -> bool:
    """Hosts and moderators of the room manage (stop, share, retry) its recordings."""
    return is_room_moderator(room=recording.room, user=user)


def recording_list_for_room(*, room: Room, user: User | AnonymousUser) -> QuerySet[Recording]:
    """All of the room's recordings for its host/moderators; only those shared with the user otherwise."""
    qs = Recording.objects.filter(room=room).select_related("room", "started_by")
    if is_room_moderator(room=room, user=user):
        return qs
    if not user.is_authenticated:
        return qs.none()
    return qs.filter(shares__user=user)


def recording_get_for_user(*, recording_id: str, user: User | AnonymousUser) -> Recording:
    recording = (
        Recording.objects.select_related("room", "started_by").filter(public_id=recording_id[:RECORDING_ID_MAX]).first()
    )
    if recording is None or not user.is_authenticated:
        raise NotFound("No recording has this ID.", code="recording_not_found")
    if not (recording_can_manage(recording=recording, user=user) or recording.shares.filter(user=user).exists()):
        raise NotFound("No recording has this ID.", code="recording_not_found")
    return recording


def recording_shares(*, recording: Recording) -> QuerySet[RecordingShare]:
    return recording.shares.select_related("user", "shared_by")


def recording_active_for_room(*, room_id: str) -> Recording | None:
    """The room's running recording, for socket snapshots (indicator for late joiners)."""
    return (
        Recording.objects.filter(room__public_id=room_id, status=Recording.Status.RECORDING)
        .select_related("room")
        .first()
    )
