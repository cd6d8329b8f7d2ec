"""Every write to breakout rooms goes through these functions (docs/architecture.md "Breakout rooms").

Locking order, everywhere: the meeting's room row first (``rooms.services._lock_room``), then the
breakout session row, then participants. Events reach sockets only after commit (``rooms.events``); each
change of the split goes to the meeting's room and to every breakout room as ``breakouts_state``.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.utils import timezone

from conference.errors import Conflict, DomainError, Forbidden, NotFound
from rooms import events
from rooms.models import MODERATOR_ROLES, Participant, Role, Room
from rooms.services import _lock_room, _require_active

from .models import (
    DEFAULT_CLOSE_DELAY_SECONDS,
    MAX_BREAKOUTS,
    MAX_CLOSE_DELAY_SECONDS,
    MAX_DURATION_MINUTES,
    Breakout,
    BreakoutAssignment,
    BreakoutSeat,
    BreakoutSession,
)
from .policy import auto_assign, breakout_names

logger = logging.getLogger(__name__)
MAX_BROADCAST_LENGTH = 1000


# --- reads used by the services and the interfaces ---------------------------------------------------------


def live_session(*, meeting: Room) -> BreakoutSession | None:
    """The meeting's open or closing breakout session, if any."""
    return (
        BreakoutSession.objects.filter(meeting=meeting, status__in=[BreakoutSession.Status.OPEN, "closing"])
        .order_by("-created_at")
        .first()
    )


def session_public(session: BreakoutSession | None) -> dict[str, Any]:
    """The split as every member of the meeting sees it (``breakouts_state`` frame, REST output)."""
    if session is None:
        return {"status": "none", "breakouts": [], "ends_at": None, "closes_at": None}
    breakouts = list(session.breakouts.select_related("room"))
    assigned: dict[int, list[str]] = {b.pk: [] for b in breakouts}
    for breakout_pk, pid in session.assignments.filter(breakout__isnull=False).values_list(
        "breakout_id", "participant__public_id"
    ):
        assigned[breakout_pk].append(pid)
    present: dict[int, list[str]] = {b.pk: [] for b in breakouts}
    for breakout_pk, pid in BreakoutSeat.objects.filter(
        breakout__session=session, participant__state=Participant.State.ADMITTED
    ).values_list("breakout_id", "main_participant__public_id"):
        present[breakout_pk].append(pid)
    return {
        "status": session.status,
        "ends_at": session.ends_at.isoformat() if session.ends_at else None,
        "closes_at": session.closes_at.isoformat() if session.closes_at else None,
        "breakouts": [
            {
                "breakoutId": b.room.public_id,
                "name": b.name,
                "index": b.index,
                "assigned": sorted(assigned[b.pk]),
                "present": sorted(present[b.pk]),
            }
            for b in breakouts
        ],
    }


def _meeting_of(room: Room) -> Room:
    """A breakout's meeting, or the room itself."""
    breakout = Breakout.objects.filter(room=room).select_related("session__meeting").first()
    return breakout.session.meeting if breakout is not None else room


def _to_everyone(session: BreakoutSession, event: dict[str, Any]) -> None:
    """``event`` to the meeting's room and to every breakout room of the session (after commit)."""
    events.to_room(session.meeting.public_id, event)
    for room_id in session.breakouts.values_list("room__public_id", flat=True):
        events.to_room(room_id, event)


def _state_changed(session: BreakoutSession) -> None:
    _to_everyone(session, {"type": "breakouts_state", "breakouts": session_public(session)})


def _require_moderator(meeting: Room, *, actor: Participant | None, user: User | AnonymousUser | None) -> None:
    """The host (by account, in the call or not) or an admitted moderator of the meeting."""
    if user is not None and user.is_authenticated and meeting.host_id == user.pk:
        return
    if (
        actor is not None
        and actor.room_id == meeting.pk
        and actor.role in MODERATOR_ROLES
        and actor.state == Participant.State.ADMITTED
    ):
        return
    if user is not None and user.is_authenticated:
        if meeting.participants.filter(
            user=user, role=Role.MODERATOR, state=Participant.State.ADMITTED
        ).exists():  # a moderator over REST
            return
    raise Forbidden("Only the host or a moderator can manage breakout rooms.", code="not_moderator")


def _lock_live_session(meeting: Room) -> BreakoutSession:
    session = (
        BreakoutSession.objects.select_for_update()
        .filter(meeting=meeting, status__in=[BreakoutSession.Status.OPEN, BreakoutSession.Status.CLOSING])
        .first()
    )
    if session is None:
        raise NotFound("This meeting has no breakout rooms open.", code="breakouts_not_open")
    session.meeting = meeting
    return session


def _enqueue_on_commit(task_name: str, session_pk: int, *, countdown: float) -> None:
    """Queue a breakouts task after commit; a broker outage is logged, the periodic ``breakouts_due`` catches up."""

    def send() -> None:
        from . import tasks  # tasks import this module

        try:
            getattr(tasks, task_name).apply_async(args=[session_pk], countdown=max(0.0, countdown))
        except Exception:
            logger.exception("could not queue %s for breakout session %s", task_name, session_pk)

    transaction.on_commit(send)


# --- the split ------------------------------------------------------------------------------------------


@transaction.atomic
def breakouts_open(
    *,
    meeting_id: str,
    count: int,
    actor: Participant | None = None,
    user: User | AnonymousUser | None = None,
    names: list[str] | None = None,
    duration_minutes: int | None = None,
    assignments: dict[str, int] | None = None,
    auto: bool = False,
) -> BreakoutSession:
    """Split the meeting into ``count`` breakout rooms, optionally with a timer and assignments.

    Rules, in order: the meeting exists and has not ended; it is not itself a breakout
    (``breakouts_nested``); the caller is its host or an admitted moderator (``not_moderator``); it is not
    end-to-end encrypted (``breakouts_e2ee_unsupported``); no split is live (``breakouts_already_open``);
    ``1 ≤ count ≤ MAX_BREAKOUTS`` (``invalid_breakout_count``); ``duration_minutes`` is empty or
    ``1…MAX_DURATION_MINUTES`` (``invalid_duration``); names hold no NUL or lone surrogate
    (``invalid_characters``); every assignment names an admitted participant of
    the meeting (``participant_not_found``) and an index below ``count`` (``invalid_breakout_index``).
    ``auto`` then spreads the admitted participants who are not hosts or moderators and not assigned yet
    evenly (``policy.auto_assign``). Each breakout is a new room (no password, no lobby: the meeting's
    admission covers it). With a timer, the countdown starts by itself at ``ends_at``.
    """
    meeting = _lock_room(meeting_id)
    _require_active(meeting)
    if Breakout.objects.filter(room=meeting).exists():
        raise DomainError("A breakout room cannot have breakout rooms.", code="breakouts_nested")
    _require_moderator(meeting, actor=actor, user=user)
    if meeting.e2ee:
        raise DomainError(
            "Breakout rooms are not available in end-to-end encrypted meetings.", code="breakouts_e2ee_unsupported"
        )
    if live_session(meeting=meeting) is not None:
        raise Conflict("Breakout rooms are already open; close them first.", code="breakouts_already_open")
    if not isinstance(count, int) or not 1 <= count <= MAX_BREAKOUTS:
        raise DomainError(f"count must be between 1 and {MAX_BREAKOUTS}.", code="invalid_breakout_count")
    if duration_minutes is not None and not 1 <= duration_minutes <= MAX_DURATION_MINUTES:
        raise DomainError(
            f"duration_minutes must be empty or between 1 and {MAX_DURATION_MINUTES}.", code="invalid_duration"
        )
    if any("\x00" in name or any("\ud800" <= ch <= "\udfff" for ch in name) for name in names or []):
        raise DomainError("A name cannot contain NUL or a lone surrogate.", code="invalid_characters")
    admitted = list(
        meeting.participants.filter(state=Participant.State.ADMITTED)
        .order_by("admitted_at", "pk")
        .only("pk", "public_id", "role")
    )
    by_id = {p.public_id: p for p in admitted}
    chosen = dict(assignments or {})
    unknown = sorted(set(chosen) - set(by_id))
    if unknown:
        raise NotFound("No admitted participant has this ID.", code="participant_not_found", participants=unknown)
    if any(not isinstance(i, int) or not 0 <= i < count for i in chosen.values()):
        raise DomainError(f"A breakout index is between 0 and {count - 1}.", code="invalid_breakout_index")
    if auto:
        movable = [p.public_id for p in admitted if p.role not in MODERATOR_ROLES]
        chosen = auto_assign(movable, count, chosen)
    now = timezone.now()
    session = BreakoutSession.objects.create(
        meeting=meeting,
        created_by=actor if actor is not None and actor.room_id == meeting.pk else None,
        ends_at=now + timedelta(minutes=duration_minutes) if duration_minutes else None,
    )
    breakouts = []
    for index, name in enumerate(breakout_names(count, names)):
        room = Room.objects.create(
            host_id=meeting.host_id,
            name=f"{meeting.name} · {name}"[:200],
            max_participants=meeting.max_participants,
            # Nobody joins a breakout by its ID: only breakout_enter, which checks the meeting's admission,
            # lets people in. An unusable password (Django's "!" prefix never matches) and no guests make
            # rooms.services.participant_join refuse everyone but the host.
            password_hash=UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(16),
            allow_guests=False,
            last_n=meeting.last_n,
        )
        breakouts.append(Breakout.objects.create(session=session, room=room, index=index, name=name))
    BreakoutAssignment.objects.bulk_create(
        BreakoutAssignment(session=session, participant=by_id[pid], breakout=breakouts[index])
        for pid, index in chosen.items()
    )
    _state_changed(session)
    if session.ends_at is not None:
        _enqueue_on_commit("breakouts_expire_task", session.pk, countdown=(session.ends_at - now).total_seconds())
    return session


@transaction.atomic
def breakout_assign(
    *,
    meeting_id: str,
    participant_id: str,
    breakout_id: str | None,
    actor: Participant | None = None,
    user: User | AnonymousUser | None = None,
) -> BreakoutSession:
    """Assign one meeting participant to a breakout (``breakout_id`` = its room ID), or to none.

    Rules, in order: the meeting exists and has not ended; the caller may manage breakouts
    (``not_moderator``); a split is live (``breakouts_not_open``); the participant is admitted to the
    meeting (``participant_not_found``); the breakout belongs to this split (``breakout_not_found``).
    Someone already inside another breakout stays there until they move (the panel offers them the move).
    """
    meeting = _lock_room(meeting_id)
    _require_active(meeting)
    _require_moderator(meeting, actor=actor, user=user)
    session = _lock_live_session(meeting)
    target = meeting.participants.filter(public_id=participant_id, state=Participant.State.ADMITTED).first()
    if target is None:
        raise NotFound("No admitted participant has this ID.", code="participant_not_found")
    breakout = None
    if breakout_id is not None:
        breakout = session.breakouts.filter(room__public_id=breakout_id).first()
        if breakout is None:
            raise NotFound("No breakout room of this meeting has this ID.", code="breakout_not_found")
    BreakoutAssignment.objects.update_or_create(session=session, participant=target, defaults={"breakout": breakout})
    _state_changed(session)
    return session


@transaction.atomic
def breakouts_broadcast(
    *, meeting_id: str, text: str, actor: Participant | None = None, user: User | AnonymousUser | None = None
) -> BreakoutSession:
    """Show a message from the host in every breakout room and the main room (``breakout_broadcast``).

    Rules, in order: the meeting exists and has not ended; the caller may manage breakouts; a split is
    live; the text is 1…1000 characters after trimming (``empty_message``, ``message_too_long``).
    """
    meeting = _lock_room(meeting_id)
    _require_active(meeting)
    _require_moderator(meeting, actor=actor, user=user)
    session = _lock_live_session(meeting)
    text = (text or "").strip()
    if not text:
        raise DomainError("A message needs text.", code="empty_message")
    if len(text) > MAX_BROADCAST_LENGTH:
        raise DomainError(f"A message has at most {MAX_BROADCAST_LENGTH} characters.", code="message_too_long")
    sender = actor.display_name if actor is not None else (user.get_username() if user is not None else "Host")
    _to_everyone(session, {"type": "breakout_broadcast", "text": text, "from": sender})
    return session


def _start_closing(session: BreakoutSession, *, now: datetime, delay_seconds: int) -> None:
    session.status = BreakoutSession.Status.CLOSING
    session.closes_at = now + timedelta(seconds=delay_seconds)
    session.save(update_fields=["status", "closes_at"])
    _to_everyone(
        session,
        {"type": "breakouts_closing", "closes_at": session.closes_at.isoformat(), "seconds": delay_seconds},
    )
    _state_changed(session)
    _enqueue_on_commit("breakouts_finish_task", session.pk, countdown=delay_seconds)


@transaction.atomic
def breakouts_close(
    *,
    meeting_id: str,
    actor: Participant | None = None,
    user: User | AnonymousUser | None = None,
    delay_seconds: int = DEFAULT_CLOSE_DELAY_SECONDS,
) -> BreakoutSession:
    """Start the "returning in N s" countdown; when it ends everyone is back in the main room.

    Rules, in order: the meeting exists; the caller may manage breakouts; a split is live
    (``breakouts_not_open``); ``0 ≤ delay_seconds ≤ MAX_CLOSE_DELAY_SECONDS`` (``invalid_delay``).
    Closing a split that is already counting down changes nothing (idempotent). ``delay_seconds=0``
    brings everyone back at once.
    """
    meeting = _lock_room(meeting_id)
    _require_moderator(meeting, actor=actor, user=user)
    session = _lock_live_session(meeting)
    if not isinstance(delay_seconds, int) or not 0 <= delay_seconds <= MAX_CLOSE_DELAY_SECONDS:
        raise DomainError(f"delay_seconds must be between 0 and {MAX_CLOSE_DELAY_SECONDS}.", code="invalid_delay")
    if session.status == BreakoutSession.Status.CLOSING:
        return session
    now = timezone.now()
    if delay_seconds == 0:
        session.status = BreakoutSession.Status.CLOSING
        session.closes_at = now
        _finish(session, now=now)
        return session
    _start_closing(session, now=now, delay_seconds=delay_seconds)
    return session


def _finish(session: BreakoutSession, *, now: datetime) -> None:
    """Close the split: the breakout rooms end quietly (no ``room_ended``: their sockets go back to the
    meeting on ``breakouts_ended`` instead of closing), their participant records leave."""
    session.status = BreakoutSession.Status.CLOSED
    session.closed_at = now
    session.save(update_fields=["status", "closes_at", "closed_at"])
    rooms = Room.objects.filter(breakout__session=session)
    Participant.objects.filter(room__in=rooms, state=Participant.State.ADMITTED).update(
        state=Participant.State.LEFT, left_at=now, hand_raised_at=None, screen_sharing=False
    )
    rooms.update(status=Room.Status.ENDED, ended_at=now)
    _to_everyone(session, {"type": "breakouts_ended"})
    _state_changed(session)


@transaction.atomic
def breakouts_expire(*, session_pk: int, now: datetime | None = None) -> bool:
    """The timer ran out: start the countdown if the split is still open and ``ends_at`` has passed.

    The guard that makes the timer safe to fire more than once, early, or from several workers (a lease
    on the row): the session row is locked and the change happens only if it is still due. Returns
    whether this call started the countdown.
    """
    now = now or timezone.now()
    session = _locked_if_due(session_pk, status=BreakoutSession.Status.OPEN, deadline="ends_at", now=now)
    if session is None:
        return False
    _start_closing(session, now=now, delay_seconds=DEFAULT_CLOSE_DELAY_SECONDS)
    return True


@transaction.atomic
def breakouts_finish(*, session_pk: int, now: datetime | None = None) -> bool:
    """The countdown ran out: bring everyone back (same guard as :func:`breakouts_expire`)."""
    now = now or timezone.now()
    session = _locked_if_due(session_pk, status=BreakoutSession.Status.CLOSING, deadline="closes_at", now=now)
    if session is None:
        return False
    _finish(session, now=now)
    return True


def _locked_if_due(session_pk: int, *, status: str, deadline: str, now: datetime) -> BreakoutSession | None:
    """The session row, locked, if it is still in ``status`` and its ``deadline`` field has passed; else None
    (the timers' guard: an early, repeated or concurrent run finds nothing to do)."""
    session = BreakoutSession.objects.select_for_update().select_related("meeting").filter(pk=session_pk).first()
    if session is None or session.status != status:
        return None
    due: datetime | None = getattr(session, deadline)
    if due is None or due > now:
        return None
    return session


def breakouts_due(*, now: datetime | None = None) -> int:
    """Expire and finish every split whose time has come (the periodic catch-up for lost timer tasks)."""
    now = now or timezone.now()
    done = 0
    for pk in BreakoutSession.objects.filter(status=BreakoutSession.Status.OPEN, ends_at__lte=now).values_list(
        "pk", flat=True
    ):
        done += breakouts_expire(session_pk=pk, now=now)
    for pk in BreakoutSession.objects.filter(status=BreakoutSession.Status.CLOSING, closes_at__lte=now).values_list(
        "pk", flat=True
    ):
        done += breakouts_finish(session_pk=pk, now=now)
    return done


def breakouts_end_for_meeting(*, meeting: Room) -> None:
    """The meeting ended (inside ``rooms.services.room_end``'s transaction): its breakout rooms end too, and
    their sockets hear ``room_ended`` (they close like the meeting's)."""
    session = live_session(meeting=meeting)
    if session is None:
        return
    now = timezone.now()
    session.status = BreakoutSession.Status.CLOSED
    session.closed_at = now
    session.save(update_fields=["status", "closed_at"])
    rooms = Room.objects.filter(breakout__session=session)
    Participant.objects.filter(room__in=rooms, state=Participant.State.ADMITTED).update(
        state=Participant.State.LEFT, left_at=now
    )
    room_ids = list(rooms.values_list("public_id", flat=True))
    rooms.update(status=Room.Status.ENDED, ended_at=now)
    for room_id in room_ids:
        events.to_room(room_id, {"type": "room_ended", "reason": "ended_by_host"})


# --- moving between rooms ----------------------------------------------------------------------------------


@transaction.atomic
def breakout_enter(*, participant: Participant, breakout_id: str) -> Participant:
    """Give a meeting participant their participant record in a breakout room, admitted and seen now.

    ``participant``: the person's participant record in the meeting (their seat there is kept).

    Rules, in order: the meeting exists and has not ended; a split is live (``breakouts_not_open``) and
    still open, not counting down (``breakouts_closing``); the breakout belongs to it
    (``breakout_not_found``); the person is admitted to the meeting (``not_admitted``); a participant
    may only enter the breakout they are assigned to (``not_assigned``), hosts and moderators any
    (visiting). No password, lobby or lock: the meeting admitted them. Their role carries over; each
    visit revokes the grants of the previous one (``grant_version``).
    """
    meeting = _lock_room(participant.room.public_id)
    _require_active(meeting)
    session = _lock_live_session(meeting)
    if session.status != BreakoutSession.Status.OPEN:
        raise Conflict("The breakout rooms are closing.", code="breakouts_closing")
    breakout = session.breakouts.select_related("room").filter(room__public_id=breakout_id).first()
    if breakout is None:
        raise NotFound("No breakout room of this meeting has this ID.", code="breakout_not_found")
    main = meeting.participants.select_for_update().filter(pk=participant.pk).first()
    if main is None or main.state != Participant.State.ADMITTED:
        raise Forbidden("Only people admitted to the meeting can enter its breakout rooms.", code="not_admitted")
    if main.role not in MODERATOR_ROLES:
        assigned = session.assignments.filter(participant=main).values_list("breakout_id", flat=True).first()
        if assigned != breakout.pk:
            raise Forbidden("You are not assigned to this breakout room.", code="not_assigned")
    seat = BreakoutSeat.objects.select_related("participant").filter(breakout=breakout, main_participant=main).first()
    now = timezone.now()
    if seat is None:
        inner = Participant(room=breakout.room, user_id=main.user_id, browser_key=main.browser_key, grant_version=0)
    else:
        inner = seat.participant
    inner.display_name = main.display_name
    inner.role = main.role
    inner.stream_capabilities = main.stream_capabilities
    inner.audio_muted = main.audio_muted
    inner.video_muted = main.video_muted
    inner.screen_sharing = False
    inner.hand_raised_at = None
    inner.state = Participant.State.ADMITTED
    inner.admitted_at = inner.admitted_at or now
    inner.last_seen_at = now
    inner.left_at = None
    inner.grant_version = (inner.grant_version or 0) + 1
    inner.save()
    if seat is None:
        BreakoutSeat.objects.create(breakout=breakout, main_participant=main, participant=inner)
    inner.room = breakout.room
    return inner


def breakout_state_changed(*, meeting_id: str) -> None:
    """Someone moved: everyone's panel shows who is where (``breakouts_state``)."""
    meeting = Room.objects.filter(public_id=meeting_id).first()
    session = live_session(meeting=meeting) if meeting is not None else None
    if session is not None:
        _state_changed(session)
