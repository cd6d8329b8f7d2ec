"""Every write to rooms and participants goes through these functions.

Events reach sockets only after the transaction commits (``rooms.events``).
Capacity is enforced under a lock on the room row (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite runs write transactions as ``BEGIN IMMEDIATE``), so
concurrent joins can never exceed ``max_participants``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.hashers import check_password, make_password
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from conference.errors import Conflict, DomainError, Forbidden, Gone, NotFound

from . import events
from .grants import Grant, grant_issue, rejoin_issue, rejoin_read
from .models import MAX_LAST_N, MAX_PARTICIPANTS, MIN_PARTICIPANTS, Participant, Role, Room
from .selectors import presence_cutoff, seated_participants, unique_or_none

GUEST_NAME_MAX = 80


@dataclass(frozen=True)
class JoinResult:
    participant: Participant
    token: str
    rejoin_token: str


# The columns participant_public shows, in the order _public takes them.
PUBLIC_FIELDS = (
    "public_id",
    "display_name",
    "role",
    "user_id",
    "audio_muted",
    "video_muted",
    "screen_sharing",
    "hand_raised_at",
)


def participant_public(participant: Participant) -> dict[str, Any]:
    """The participant as every room member sees it in snapshots and events."""
    return _public(*(getattr(participant, name) for name in PUBLIC_FIELDS))


def participants_public(participants: QuerySet[Participant]) -> list[dict[str, Any]]:
    """``participant_public`` of each row, read as ``PUBLIC_FIELDS`` only (no model instances: a snapshot's list
    costs ~20 µs less CPU per participant)."""
    return [_public(*row) for row in participants.values_list(*PUBLIC_FIELDS)]


def _public(
    public_id: str,
    display_name: str,
    role: str,
    user_id: int | None,
    audio_muted: bool,
    video_muted: bool,
    screen_sharing: bool,
    hand_raised_at: datetime | None,
) -> dict[str, Any]:
    return {
        "participantId": public_id,
        "display_name": display_name,
        "role": role,
        "is_guest": user_id is None,
        "audio_muted": audio_muted,
        "video_muted": video_muted,
        "screen_sharing": screen_sharing,
        "hand_raised": hand_raised_at is not None,
        "hand_raised_at": hand_raised_at.isoformat() if hand_raised_at else None,
    }


def _lock_room(room_id: str, *, with_meeting: bool = False) -> Room:
    """The room's row, locked until the transaction ends.

    ``with_meeting``: its scheduled meeting (if any) read in the same query, for ``_require_scheduled_open``.
    """
    rooms = Room.objects.select_for_update(of=("self",))
    if with_meeting:
        rooms = rooms.select_related("scheduled_meeting")
    room = unique_or_none(rooms.filter(public_id=room_id))
    if room is None:
        raise NotFound("No room has this ID.", code="room_not_found", room_id=room_id)
    return room


def _check_capacity(value: int) -> None:
    if not MIN_PARTICIPANTS <= value <= MAX_PARTICIPANTS:
        raise DomainError(
            f"max_participants must be between {MIN_PARTICIPANTS} and {MAX_PARTICIPANTS}.",
            code="invalid_capacity",
        )


def _require_active(room: Room) -> None:
    if room.is_ended:
        raise Gone("This room has ended.", code="room_ended")


def _require_scheduled_open(room: Room, now: datetime) -> None:
    """A scheduled meeting's room admits people from ``SCHEDULED_ROOM_OPENS_MINUTES_BEFORE`` before its
    current or next occurrence (``meetings.selectors.room_opens_at``); its host may join any time."""
    from meetings.selectors import room_opens_at  # meetings depends on rooms

    opens_at = room_opens_at(room=room, now=now)
    if opens_at is not None:
        raise Forbidden(
            f"This meeting's room opens at {opens_at:%Y-%m-%d %H:%M} UTC.",
            code="meeting_not_open",
            opens_at=opens_at.isoformat(),
            retry_after_seconds=max(1, int((opens_at - now).total_seconds())),
        )


def room_create(
    *,
    host: User,
    name: str,
    max_participants: int = 50,
    password: str = "",
    waiting_room: bool = False,
    allow_guests: bool = True,
    locked: bool = False,
    e2ee: bool = False,
    last_n: int | None = None,
) -> Room:
    _check_capacity(max_participants)
    name = name.strip()
    if not name:
        raise DomainError("A room needs a name.", code="invalid_name")
    return Room.objects.create(
        host=host,
        name=name,
        max_participants=max_participants,
        password_hash=make_password(password) if password else "",
        waiting_room=waiting_room,
        allow_guests=allow_guests,
        locked=locked,
        e2ee=e2ee,
        last_n=last_n,
    )


def room_settings_public(room: Room) -> dict[str, Any]:
    return {
        "name": room.name,
        "max_participants": room.max_participants,
        "has_password": room.has_password,
        "waiting_room": room.waiting_room,
        "locked": room.locked,
        "allow_guests": room.allow_guests,
        "e2ee": room.e2ee,
        "last_n": room.last_n,
    }


UPDATABLE_SETTINGS = frozenset(
    {"name", "max_participants", "password", "waiting_room", "locked", "allow_guests", "last_n"}
)


@transaction.atomic
def room_update(*, room_id: str, user: User, **changes: Any) -> Room:
    """Change room settings (host only). ``password=""`` removes the password."""
    room = _lock_room(room_id)
    if room.host_id != user.pk:
        raise Forbidden("Only the host can change room settings.", code="not_host")
    _require_active(room)
    unknown = set(changes) - UPDATABLE_SETTINGS
    if unknown:
        raise DomainError("These settings cannot be changed.", code="invalid_setting", fields=sorted(unknown))
    if "max_participants" in changes:
        _check_capacity(changes["max_participants"])
    last_n = changes.get("last_n")
    if last_n is not None and not (isinstance(last_n, int) and 0 <= last_n <= MAX_LAST_N):
        raise DomainError(f"last_n must be empty or between 0 and {MAX_LAST_N}.", code="invalid_setting")
    if "name" in changes:
        changes["name"] = changes["name"].strip()
        if not changes["name"]:
            raise DomainError("A room needs a name.", code="invalid_name")
    if "password" in changes:
        password = changes.pop("password")
        room.password_hash = make_password(password) if password else ""
    for field, value in changes.items():
        setattr(room, field, value)
    room.save()
    events.to_room(room.public_id, {"type": "room_updated", "settings": room_settings_public(room)})
    return room


@transaction.atomic
def room_end(*, room_id: str, user: User | None = None, actor: Participant | None = None) -> Room:
    """End the room for everyone (its host, or a moderator inside the room). Idempotent."""
    room = _lock_room(room_id)
    allowed = (user is not None and room.host_id == user.pk) or (
        actor is not None and actor.room_id == room.pk and actor.is_moderator
    )
    if not allowed:
        raise Forbidden("Only the host or a moderator can end the room.", code="not_moderator")
    if room.is_ended:
        return room
    now = timezone.now()
    room.status = Room.Status.ENDED
    room.ended_at = now
    room.save(update_fields=["status", "ended_at", "updated_at"])
    # Lobby sockets are not in the room group: tell each one.
    waiting = list(room.participants.filter(state=Participant.State.WAITING).values_list("public_id", flat=True))
    room.participants.filter(state__in=[Participant.State.ADMITTED, Participant.State.WAITING]).update(
        state=Participant.State.LEFT, left_at=now
    )
    events.to_room(room.public_id, {"type": "room_ended", "reason": "ended_by_host"})
    from recordings.services import recordings_stop_for_room_end  # recordings depends on rooms

    recordings_stop_for_room_end(room=room)
    from breakouts.services import breakouts_end_for_meeting  # breakouts depends on rooms

    breakouts_end_for_meeting(meeting=room)
    for participant_id in waiting:
        events.to_participant(room.public_id, participant_id, {"type": "room_ended", "reason": "ended_by_host"})
    return room


def _display_name_for(user: User | AnonymousUser, requested: str) -> str:
    requested = (requested or "").strip()[:GUEST_NAME_MAX]
    if requested:
        return requested
    if user.is_authenticated:
        full = user.get_full_name().strip() if hasattr(user, "get_full_name") else ""
        return (full or user.get_username())[:GUEST_NAME_MAX]
    raise DomainError("Guests must give a display name.", code="display_name_required")


def _verified_password_hash(*, room_id: str, password: str) -> str | None:
    """The room's password hash if ``password`` matches it (``None`` otherwise), checked before any lock."""
    if not password:
        return None
    password_hash = Room.objects.filter(public_id=room_id).values_list("password_hash", flat=True).first()
    return password_hash if password_hash and check_password(password, password_hash) else None


def participant_join(
    *,
    room_id: str,
    user: User | AnonymousUser,
    display_name: str = "",
    password: str = "",
    stream_capabilities: dict[str, bool] | None = None,
    browser: str = "",
    guest_browser_key: str = "",
) -> JoinResult:
    """Admit (or queue in the lobby) a person and issue their join grant (and rejoin token, bound to ``browser``).

    ``guest_browser_key``: a guest's browser key (rooms/removals.py), stored with the participant it creates.

    Rules, in order: the room exists and has not ended; a scheduled meeting's room is
    open (``meeting_not_open`` before then, its host excepted); guests only where the
    room allows them; the room password unless host/moderator or already
    admitted; a locked room takes only hosts, moderators and people already
    admitted; the waiting room queues everyone but hosts and moderators; an
    admitted person takes a seat only if fewer than ``max_participants`` are
    seated. A signed-in person rejoining reuses their participant record (and
    role); their old grants are revoked.

    The password is hashed before the transaction (no row lock, no SQLite write lock held while hashing:
    guesses cannot stall other joins); the locked part only compares the hash it matched.
    """
    verified_hash = _verified_password_hash(room_id=room_id, password=password)
    with transaction.atomic():
        return _participant_join_locked(
            room_id=room_id,
            user=user,
            display_name=display_name,
            password=password,
            stream_capabilities=stream_capabilities,
            verified_hash=verified_hash,
            browser=browser,
            guest_browser_key=guest_browser_key,
        )


def _participant_join_locked(
    *,
    room_id: str,
    user: User | AnonymousUser,
    display_name: str,
    password: str,
    stream_capabilities: dict[str, bool] | None,
    verified_hash: str | None,
    browser: str,
    guest_browser_key: str,
) -> JoinResult:
    room = _lock_room(room_id, with_meeting=True)
    _require_active(room)
    now = timezone.now()
    if not (user.is_authenticated and room.host_id == user.pk):
        _require_scheduled_open(room, now)
    participant: Participant | None = None
    if user.is_authenticated:
        participant = room.participants.filter(user=user).order_by("-created_at").first()
        if participant is not None and participant.state in (Participant.State.REMOVED, Participant.State.DENIED):
            raise Forbidden("You were removed from this room.", code="removed_from_room")
    elif not room.allow_guests:
        raise Forbidden("This room does not allow guests; sign in to join.", code="guests_not_allowed")

    if user.is_authenticated and room.host_id == user.pk:
        role = Role.HOST
    elif participant is not None:
        role = Role(participant.role)
    elif user.is_authenticated:
        role = Role.PARTICIPANT
    else:
        role = Role.GUEST
    privileged = role in (Role.HOST, Role.MODERATOR)
    seated_now = (
        participant is not None
        and participant.state == Participant.State.ADMITTED
        and seated_participants(room=room, now=now).filter(pk=participant.pk).exists()
    )
    was_admitted = participant is not None and participant.admitted_at is not None

    if room.has_password and not privileged and not was_admitted:
        if not password:
            raise Forbidden("This room needs a password.", code="room_password_required")
        if verified_hash is None or verified_hash != room.password_hash:
            raise Forbidden("The room password is wrong.", code="room_password_invalid")
    if room.locked and not privileged and not seated_now:
        raise Forbidden("The room is locked.", code="room_locked")

    name = _display_name_for(user, display_name)
    if participant is None:
        participant = Participant(room=room, user=user if user.is_authenticated else None, role=role)
        if not user.is_authenticated:
            participant.browser_key = (
                guest_browser_key  # in the INSERT (removals.remember_browser then has nothing to do)
            )
    participant.display_name = name
    participant.role = role
    participant.stream_capabilities = stream_capabilities or {"audio": True, "video": True}
    participant.grant_version = (participant.grant_version or 0) + 1 if participant.pk else 1
    participant.last_seen_at = now
    participant.left_at = None
    if room.waiting_room and not privileged and not was_admitted:
        participant.state = Participant.State.WAITING
    else:
        if not seated_now:
            seated_others = seated_participants(room=room, now=now)
            if participant.pk is not None:  # a new participant (not saved yet) is not among them
                seated_others = seated_others.exclude(pk=participant.pk)
            seated = seated_others.count()
            if seated >= room.max_participants:
                raise Conflict("The room is full.", code="room_full", max_participants=room.max_participants)
        participant.state = Participant.State.ADMITTED
        participant.admitted_at = participant.admitted_at or now
    participant.save()
    return _granted(room, participant, browser=browser)


def _granted(room: Room, participant: Participant, *, browser: str) -> JoinResult:
    """After a join: tell moderators about a new waiter; the join grant and a fresh rejoin token."""
    if participant.state == Participant.State.WAITING:
        events.to_moderators(room.public_id, {"type": "lobby_request", "participant": participant_public(participant)})
    token = grant_issue(
        room_id=room.public_id,
        participant_id=participant.public_id,
        user_id=participant.user_id,
        version=participant.grant_version,
    )
    rejoin = rejoin_issue(
        room_id=room.public_id, participant_id=participant.public_id, user_id=participant.user_id, browser=browser
    )
    return JoinResult(participant=participant, token=token, rejoin_token=rejoin)


def _rejoin_invalid() -> Forbidden:
    return Forbidden("This rejoin token is invalid or has expired; join the room again.", code="rejoin_token_invalid")


@transaction.atomic
def participant_rejoin(
    *,
    room_id: str,
    user: User | AnonymousUser,
    rejoin_token: str,
    browser: str = "",
    stream_capabilities: dict[str, bool] | None = None,
) -> JoinResult:
    """Give the participant named by ``rejoin_token`` its seat again (a reload): no password, lobby or lock.

    Rules, in order: the token is genuine, younger than ``REJOIN_TOKEN_TTL_SECONDS``, for this room, for
    this user (none for a guest) and this browser session (``browser``), else ``rejoin_token_invalid``;
    the room has not ended; the participant still exists and was neither removed nor denied
    (``removed_from_room``); one who was admitted is admitted again, taking a seat only if one is free
    unless still seated (``room_full``); one who was waiting waits again. Older grants are revoked and a
    fresh rejoin token is issued.
    """
    claim = rejoin_read(rejoin_token)
    user_id = user.pk if user.is_authenticated else None
    if claim is None or claim.room_id != room_id or claim.user_id != user_id or claim.browser != browser:
        raise _rejoin_invalid()
    room = _lock_room(room_id)
    _require_active(room)
    participant = unique_or_none(room.participants.select_for_update().filter(public_id=claim.participant_id))
    if participant is None:
        raise _rejoin_invalid()
    if participant.state in (Participant.State.REMOVED, Participant.State.DENIED):
        raise Forbidden("You were removed from this room.", code="removed_from_room")
    now = timezone.now()
    if participant.admitted_at is None:
        participant.state = Participant.State.WAITING
    else:
        seated_now = (
            participant.state == Participant.State.ADMITTED
            and seated_participants(room=room, now=now).filter(pk=participant.pk).exists()
        )
        if not seated_now and seated_participants(room=room, now=now).count() >= room.max_participants:
            raise Conflict("The room is full.", code="room_full", max_participants=room.max_participants)
        participant.state = Participant.State.ADMITTED
    if stream_capabilities is not None:
        participant.stream_capabilities = stream_capabilities
    participant.grant_version += 1
    participant.last_seen_at = now
    participant.left_at = None
    participant.save()
    return _granted(room, participant, browser=browser)


def _lock_participant(room: Room, participant_id: str) -> Participant:
    target = unique_or_none(room.participants.select_for_update().filter(public_id=participant_id))
    if target is None:
        raise NotFound("No participant has this ID in this room.", code="participant_not_found")
    return target


def _require_moderator(actor: Participant, room: Room) -> None:
    if actor.room_id != room.pk or not actor.is_moderator or actor.state != Participant.State.ADMITTED:
        raise Forbidden("Only the host or a moderator can do this.", code="not_moderator")


@transaction.atomic
def participant_admit(*, actor: Participant, participant_id: str) -> Participant:
    """Let a waiting participant in, if there is a seat."""
    room = _lock_room(actor.room.public_id)
    _require_active(room)
    _require_moderator(actor, room)
    target = _lock_participant(room, participant_id)
    if target.state != Participant.State.WAITING:
        raise Conflict("This participant is not waiting.", code="not_waiting")
    now = timezone.now()
    if seated_participants(room=room, now=now).count() >= room.max_participants:
        raise Conflict("The room is full.", code="room_full", max_participants=room.max_participants)
    target.state = Participant.State.ADMITTED
    target.admitted_at = now
    target.last_seen_at = now
    target.save(update_fields=["state", "admitted_at", "last_seen_at"])
    events.to_participant(room.public_id, target.public_id, {"type": "lobby_admitted"})
    events.to_moderators(
        room.public_id, {"type": "lobby_resolved", "participantId": target.public_id, "outcome": "admitted"}
    )
    return target


@transaction.atomic
def participant_deny(*, actor: Participant, participant_id: str) -> Participant:
    room = _lock_room(actor.room.public_id)
    _require_moderator(actor, room)
    target = _lock_participant(room, participant_id)
    if target.state != Participant.State.WAITING:
        raise Conflict("This participant is not waiting.", code="not_waiting")
    target.state = Participant.State.DENIED
    target.left_at = timezone.now()
    target.grant_version = F("grant_version") + 1
    target.save(update_fields=["state", "left_at", "grant_version"])
    target.refresh_from_db(fields=["grant_version"])
    events.to_participant(room.public_id, target.public_id, {"type": "lobby_denied"})
    events.to_moderators(
        room.public_id, {"type": "lobby_resolved", "participantId": target.public_id, "outcome": "denied"}
    )
    return target


@transaction.atomic
def participant_remove(*, actor: Participant, participant_id: str) -> Participant:
    """Remove someone: their grant is revoked and their socket closed (close code 4009)."""
    room = _lock_room(actor.room.public_id)
    _require_moderator(actor, room)
    target = _lock_participant(room, participant_id)
    if target.pk == actor.pk:
        raise DomainError("Use leave to leave the room.", code="cannot_remove_self")
    if target.role == Role.HOST:
        raise Forbidden("The host cannot be removed.", code="cannot_remove_host")
    target.state = Participant.State.REMOVED
    target.left_at = timezone.now()
    target.grant_version = F("grant_version") + 1
    target.hand_raised_at = None
    target.save(update_fields=["state", "left_at", "grant_version", "hand_raised_at"])
    target.refresh_from_db(fields=["grant_version"])
    events.to_participant(room.public_id, target.public_id, {"type": "removed", "by": actor.public_id})
    events.to_room(room.public_id, {"type": "participant_left", "participantId": target.public_id, "reason": "removed"})
    return target


@transaction.atomic
def participant_set_role(*, actor: Participant, participant_id: str, role: str) -> Participant:
    """Promote to moderator or demote to participant (hosts and moderators)."""
    room = _lock_room(actor.room.public_id)
    _require_moderator(actor, room)
    if role not in (Role.MODERATOR, Role.PARTICIPANT):
        raise DomainError("The role must be moderator or participant.", code="invalid_role")
    target = _lock_participant(room, participant_id)
    if target.role == Role.HOST:
        raise Forbidden("The host's role cannot change.", code="cannot_change_host")
    if target.user_id is None and role == Role.MODERATOR:
        raise DomainError("Guests cannot be moderators; they need an account.", code="guest_cannot_moderate")
    target.role = role
    target.save(update_fields=["role"])
    events.to_room(room.public_id, {"type": "participant_updated", "participant": participant_public(target)})
    return target


@transaction.atomic
def room_set_lock(*, actor: Participant, locked: bool) -> Room:
    room = _lock_room(actor.room.public_id)
    _require_active(room)
    _require_moderator(actor, room)
    room.locked = locked
    room.save(update_fields=["locked", "updated_at"])
    events.to_room(room.public_id, {"type": "room_updated", "settings": room_settings_public(room)})
    return room


MEDIA_STATE_FIELDS = frozenset({"audio_muted", "video_muted", "screen_sharing"})


@transaction.atomic
def participant_update_media(*, participant: Participant, **state: bool) -> Participant:
    """Mirror a participant's own media state (muted, camera off, sharing) for everyone."""
    fields = [name for name in state if name in MEDIA_STATE_FIELDS]
    for name in fields:
        setattr(participant, name, bool(state[name]))
    if fields:
        participant.save(update_fields=fields)
        events.to_room(
            participant.room.public_id, {"type": "participant_updated", "participant": participant_public(participant)}
        )
    return participant


@transaction.atomic
def participant_set_hand(*, participant: Participant, raised: bool) -> Participant:
    if raised == (participant.hand_raised_at is not None):
        return participant
    participant.hand_raised_at = timezone.now() if raised else None
    participant.save(update_fields=["hand_raised_at"])
    events.to_room(
        participant.room.public_id, {"type": "participant_updated", "participant": participant_public(participant)}
    )
    return participant


@transaction.atomic
def room_lower_all_hands(*, actor: Participant) -> int:
    room = _lock_room(actor.room.public_id)
    _require_moderator(actor, room)
    raised = list(room.participants.filter(hand_raised_at__isnull=False))
    room.participants.filter(pk__in=[p.pk for p in raised]).update(hand_raised_at=None)
    for p in raised:
        p.hand_raised_at = None
        events.to_room(room.public_id, {"type": "participant_updated", "participant": participant_public(p)})
    return len(raised)


def participant_touch(*, participant_ids: list[int]) -> None:
    """Heartbeat: keep these participants' seats (no event)."""
    Participant.objects.filter(pk__in=participant_ids).update(last_seen_at=timezone.now())


@transaction.atomic
def participant_leave(*, participant: Participant, grant_version: int, reason: str = "left") -> bool:
    """The participant's socket went away (or they left): free the seat, tell the room.

    Only the socket holding the newest grant can leave: after a reload the old
    socket's late disconnect must not evict the new one. Returns whether the
    participant left.
    """
    current = (
        Participant.objects.select_for_update()
        .filter(
            pk=participant.pk,
            grant_version=grant_version,
            state__in=[Participant.State.ADMITTED, Participant.State.WAITING],
        )
        .only("state")
        .first()
    )
    if current is None:
        return False
    Participant.objects.filter(pk=participant.pk).update(
        state=Participant.State.LEFT, left_at=timezone.now(), hand_raised_at=None, screen_sharing=False
    )
    room_id = participant.room.public_id
    if current.state == Participant.State.WAITING:
        # Only moderators knew about someone in the lobby.
        events.to_moderators(
            room_id, {"type": "lobby_resolved", "participantId": participant.public_id, "outcome": "left"}
        )
    else:
        events.to_room(room_id, {"type": "participant_left", "participantId": participant.public_id, "reason": reason})
    return True


@transaction.atomic
def participant_connect(
    *, room_id: str, participant_pk: int, grant_version: int, media_state: Mapping[str, bool] | None = None
) -> Participant:
    """A room socket presented this participant's current grant: mark them present.

    Admitted: seen now, and the room gets ``participant_joined``. Waiting: seen
    now (the REST join already sent ``lobby_request``). Left (the socket dropped
    and came back with a still-valid grant, or a sweep timed them out): they
    take a seat again if there is one (``room_full`` otherwise; a locked room
    still takes them back: the grant proves they were in), or queue in the lobby
    again if they had never been admitted.

    ``room_id``: the room the grant is for (the socket checked it); the participant must be in it. The returned
    participant's ``room`` is the row read under the lock (current: presence.room_snapshot need not re-read it).
    ``media_state``: the client's muted / camera off / sharing (the join frame's, ``MEDIA_STATE_FIELDS``), saved
    with the rest, so ``participant_joined`` carries it and no ``participant_updated`` follows.
    """
    room = _lock_room(room_id)
    _require_active(room)
    participant = unique_or_none(room.participants.select_for_update().filter(pk=participant_pk))
    if participant is None:
        raise NotFound("No such participant.", code="participant_not_found")
    if participant.grant_version != grant_version:
        raise Gone("This join grant was replaced or revoked.", code="grant_revoked")
    if participant.state in (Participant.State.REMOVED, Participant.State.DENIED):
        raise Forbidden("You were removed from this room.", code="removed_from_room")
    return _connect_locked(room, participant, media_state)


@transaction.atomic
def participant_connect_by_grant(*, grant: Grant, media_state: Mapping[str, bool] | None = None) -> Participant:
    """``participant_connect`` for the participant a join grant names, checking the grant in the same transaction
    (the room socket's ``join``: one database hop, rooms/presence.py ``socket_join``).

    Rules, in order: the grant's room exists (``room_not_found``) and has not ended (``room_ended``); the
    participant it names is in that room (``participant_not_found``); was not removed (``removed_from_room``)
    or denied (``participant_denied``); the grant is its current one, for its user (``grant_revoked``); then as
    ``participant_connect``. The caller has checked the signature, age, room and user of the grant itself.
    """
    room = _lock_room(grant.room_id)
    _require_active(room)
    participant = unique_or_none(room.participants.select_for_update().filter(public_id=grant.participant_id))
    if participant is None:
        raise NotFound("No such participant.", code="participant_not_found")
    if participant.state == Participant.State.REMOVED:
        raise Forbidden("You were removed from this room.", code="removed_from_room")
    if participant.state == Participant.State.DENIED:
        raise Forbidden("You were not admitted.", code="participant_denied")
    if participant.grant_version != grant.version or participant.user_id != grant.user_id:
        raise Gone("This join grant was replaced or revoked.", code="grant_revoked")
    return _connect_locked(room, participant, media_state)


def _connect_locked(room: Room, participant: Participant, media_state: Mapping[str, bool] | None) -> Participant:
    """The connect itself, with the room and the participant locked and the grant checked."""
    participant.room = room
    now = timezone.now()
    if participant.state == Participant.State.LEFT:
        if participant.admitted_at is None:
            participant.state = Participant.State.WAITING
            events.to_moderators(
                room.public_id, {"type": "lobby_request", "participant": participant_public(participant)}
            )
        else:
            if seated_participants(room=room, now=now).exclude(pk=participant.pk).count() >= room.max_participants:
                raise Conflict("The room is full.", code="room_full", max_participants=room.max_participants)
            participant.state = Participant.State.ADMITTED
        participant.left_at = None
    participant.last_seen_at = now
    media = {name: bool(value) for name, value in (media_state or {}).items() if name in MEDIA_STATE_FIELDS}
    for name, value in media.items():
        setattr(participant, name, value)
    participant.save(update_fields=["state", "left_at", "last_seen_at", *media])
    if participant.state == Participant.State.ADMITTED:
        events.to_room(room.public_id, {"type": "participant_joined", "participant": participant_public(participant)})
    return participant


def participant_request_mute(*, actor: Participant, participant_id: str, kind: str) -> Participant:
    """Ask an admitted participant to mute their microphone or camera (``mute_request``; the client obeys)."""
    room = actor.room
    _require_moderator(actor, room)
    if kind not in ("audio", "video"):
        raise DomainError("kind must be audio or video.", code="invalid_kind")
    target = room.participants.filter(public_id=participant_id, state=Participant.State.ADMITTED).first()
    if target is None:
        raise NotFound("No admitted participant has this ID in this room.", code="participant_not_found")
    events.to_participant(
        room.public_id, target.public_id, {"type": "mute_request", "kind": kind, "by": actor.public_id}
    )
    return target


def room_sweep_absent(*, room_pk: int) -> list[str]:
    """Mark participants not seen for ``PRESENCE_TIMEOUT_SECONDS`` as left, so a crashed client or web
    process frees its seats. The room gets ``participant_left`` (reason ``timeout``), moderators get
    ``lobby_resolved`` (outcome ``left``) for the lobby. Returns the IDs of the formerly admitted ones.

    Safe to run concurrently from many sockets: each row is updated only if it is still stale,
    and only the sweep that updated it sends the event.
    """
    cutoff = presence_cutoff()
    active = [Participant.State.ADMITTED, Participant.State.WAITING]
    stale = list(
        Participant.objects.filter(room_id=room_pk, state__in=active, last_seen_at__lt=cutoff).values_list(
            "pk", "public_id", "state", "room__public_id"
        )
    )
    left: list[str] = []
    if not stale:
        return left
    now = timezone.now()
    with transaction.atomic():
        for pk, public_id, state, room_id in stale:
            updated = Participant.objects.filter(pk=pk, state=state, last_seen_at__lt=cutoff).update(
                state=Participant.State.LEFT, left_at=now, hand_raised_at=None, screen_sharing=False
            )
            if not updated:
                continue
            if state == Participant.State.ADMITTED:
                left.append(public_id)
                events.to_room(room_id, {"type": "participant_left", "participantId": public_id, "reason": "timeout"})
            else:
                events.to_moderators(room_id, {"type": "lobby_resolved", "participantId": public_id, "outcome": "left"})
    return left
