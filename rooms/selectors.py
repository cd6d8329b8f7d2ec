"""Reads of rooms and participants."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypeVar

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from conference.errors import NotFound

from .grants import Grant
from .models import Participant, Room

M = TypeVar("M", bound=Model)


def presence_cutoff(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(seconds=settings.PRESENCE_TIMEOUT_SECONDS)


def unique_or_none(rows: QuerySet[M]) -> M | None:
    """The row of a lookup by a unique key (``public_id``, ``pk``), or ``None``.

    ``get()`` rather than ``first()``: ``first()`` orders by the model's ``Meta.ordering`` (or the key), which
    the ORM compiles (and the database sorts) for the one row a unique key can match: ~0.1 ms of CPU per read
    (issue 19, docs/benchmarks.md §4 *Cheaper joins, sixth session*). Only for lookups that match one row at
    most; a lock (``select_for_update``) is kept.
    """
    try:
        return rows.get()
    except ObjectDoesNotExist:
        return None


def room_get(*, room_id: str, with_host: bool = True) -> Room:
    """The room with this public ID (``room_not_found`` otherwise); ``with_host``: its host read with it (one JOIN,
    for views that show the host; the REST join does not)."""
    rooms = Room.objects.filter(public_id=room_id)
    room = unique_or_none(rooms.select_related("host") if with_host else rooms)
    if room is None:
        raise NotFound("No room has this ID.", code="room_not_found", room_id=room_id)
    return room


def room_list_for_user(*, user: User) -> QuerySet[Room]:
    """Rooms the user hosts or has been admitted to, newest first."""
    admitted = Participant.objects.filter(user=user, admitted_at__isnull=False).values("room_id")
    return Room.objects.filter(Q(host=user) | Q(pk__in=admitted)).select_related("host").distinct()


def seated_participants(*, room: Room, now: datetime | None = None) -> QuerySet[Participant]:
    """Participants holding a seat: admitted and seen within the presence timeout."""
    return room.participants.filter(state=Participant.State.ADMITTED, last_seen_at__gte=presence_cutoff(now))


def participants_not_admitted(*, room_pk: int, participant_ids: list[str]) -> list[str]:
    """The IDs (in order) that name no admitted participant of the room."""
    if not participant_ids:
        return []
    admitted = set(
        Participant.objects.filter(
            room_id=room_pk, public_id__in=participant_ids, state=Participant.State.ADMITTED
        ).values_list("public_id", flat=True)
    )
    return [p for p in participant_ids if p not in admitted]


def waiting_participants(*, room: Room) -> QuerySet[Participant]:
    return room.participants.filter(state=Participant.State.WAITING, last_seen_at__gte=presence_cutoff())


def participant_for_grant(*, grant: Grant) -> Participant | None:
    """The participant a grant names, if the grant is still honoured (not revoked, room not ended)."""
    participant = (
        Participant.objects.select_related("room", "user")
        .filter(public_id=grant.participant_id, room__public_id=grant.room_id)
        .first()
    )
    if participant is None or participant.grant_version != grant.version:
        return None
    if participant.user_id != grant.user_id:
        return None
    if participant.state in (Participant.State.REMOVED, Participant.State.DENIED):
        return None
    if participant.room.is_ended:
        return None
    return participant


def participant_was_admitted(*, room: Room, user: User | AnonymousUser) -> bool:
    if not user.is_authenticated:
        return False
    if room.host_id == user.pk:
        return True
    return (
        room.participants.filter(user=user, admitted_at__isnull=False).exclude(state=Participant.State.REMOVED).exists()
    )
