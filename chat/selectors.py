"""Chat history reads."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from rooms.models import Participant, Room

from .models import Message

DEFAULT_PAGE = 50
MAX_PAGE = 200


def messages_visible_to(*, room: Room, participant_ids: list[int]) -> QuerySet[Message]:
    """Room messages plus private ones sent to or by any of these participant records."""
    return (
        Message.objects.filter(room=room)
        .filter(Q(recipient__isnull=True) | Q(recipient_id__in=participant_ids) | Q(sender_id__in=participant_ids))
        .select_related("sender", "recipient")
    )


def chat_page(
    *,
    room: Room,
    participant_ids: list[int],
    after: int | None = None,
    before: int | None = None,
    limit: int = DEFAULT_PAGE,
) -> tuple[list[Message], bool]:
    """One page of history, oldest first, and whether there is more in the paging direction.

    ``after``: messages with seq > after (catching up). ``before``: the newest
    messages with seq < before (scrolling back). Neither: the newest page.
    """
    limit = max(1, min(limit, MAX_PAGE))
    qs = messages_visible_to(room=room, participant_ids=participant_ids)
    if after is not None:
        rows = list(qs.filter(seq__gt=after).order_by("seq")[: limit + 1])
        return rows[:limit], len(rows) > limit
    if before is not None:
        qs = qs.filter(seq__lt=before)
    rows = list(qs.order_by("-seq")[: limit + 1])
    more = len(rows) > limit
    return list(reversed(rows[:limit])), more


def participant_ids_for(*, room: Room, user_id: int | None, participant: Participant | None) -> list[int]:
    """Every participant record that is 'me' in this room (a user may have rejoined)."""
    ids: set[int] = set()
    if participant is not None:
        ids.add(participant.pk)
    if user_id is not None:
        ids.update(room.participants.filter(user_id=user_id).values_list("pk", flat=True))
    return sorted(ids)
