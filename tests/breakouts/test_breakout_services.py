"""Breakout rooms: who may split, assign and close; moving keeps the meeting's seat; the timer's guard."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from breakouts import services
from breakouts.models import Breakout, BreakoutSession
from breakouts.policy import auto_assign, breakout_names
from conference.errors import DomainError
from rooms import services as room_services
from rooms.models import Participant, Role
from rooms.selectors import seated_participants

pytestmark = pytest.mark.django_db


@pytest.fixture
def meeting(user_factory: Any) -> Any:
    """A meeting with its host and four people in it: two accounts and two guests."""
    host = user_factory("host")
    room = room_services.room_create(host=host, name="All hands")
    joined = {"host": room_services.participant_join(room_id=room.public_id, user=host).participant}
    for name in ("ann", "bob"):
        joined[name] = room_services.participant_join(room_id=room.public_id, user=user_factory(name)).participant
    for name in ("cy", "di"):
        joined[name] = room_services.participant_join(
            room_id=room.public_id, user=AnonymousUser(), display_name=name
        ).participant
    room.people = joined
    room.host_user = host
    return room


def _code(exc: pytest.ExceptionInfo[DomainError]) -> str:
    return exc.value.code


def test_auto_assign_spreads_evenly_and_keeps_fixed_choices() -> None:
    assert auto_assign(["a", "b", "c", "d", "e"], 2) == {"a": 0, "b": 1, "c": 0, "d": 1, "e": 0}
    assert auto_assign(["a", "b", "c"], 2, {"x": 0, "y": 0}) == {"x": 0, "y": 0, "a": 1, "b": 1, "c": 0}
    assert breakout_names(3, ["Design", " "]) == ["Design", "Room 2", "Room 3"]


def test_only_the_host_or_a_moderator_can_open_breakouts(meeting: Any) -> None:
    for who in ("ann", "cy"):
        with pytest.raises(DomainError) as exc:
            services.breakouts_open(meeting_id=meeting.public_id, actor=meeting.people[who], count=2)
        assert _code(exc) == "not_moderator"
    room_services.participant_set_role(
        actor=meeting.people["host"], participant_id=meeting.people["ann"].public_id, role=Role.MODERATOR
    )
    ann = Participant.objects.get(pk=meeting.people["ann"].pk)
    session = services.breakouts_open(meeting_id=meeting.public_id, actor=ann, count=2)
    assert session.breakouts.count() == 2
    with pytest.raises(DomainError) as exc:
        services.breakouts_open(meeting_id=meeting.public_id, user=meeting.host_user, count=2)
    assert _code(exc) == "breakouts_already_open"


def test_assign_automatically_puts_everyone_but_moderators_in_even_rooms(meeting: Any) -> None:
    session = services.breakouts_open(meeting_id=meeting.public_id, user=meeting.host_user, count=2, auto=True)
    state = services.session_public(session)
    sizes = sorted(len(b["assigned"]) for b in state["breakouts"])
    assert sizes == [2, 2]
    assigned = {pid for b in state["breakouts"] for pid in b["assigned"]}
    assert meeting.people["host"].public_id not in assigned
    assert assigned == {meeting.people[n].public_id for n in ("ann", "bob", "cy", "di")}


def test_bad_input_gets_clear_codes(meeting: Any, user_factory: Any) -> None:
    host = meeting.host_user
    cases = [
        ({"count": 0}, "invalid_breakout_count"),
        ({"count": 21}, "invalid_breakout_count"),
        ({"count": 2, "duration_minutes": 0}, "invalid_duration"),
        ({"count": 2, "assignments": {"nobody": 0}}, "participant_not_found"),
        ({"count": 2, "assignments": {meeting.people["ann"].public_id: 2}}, "invalid_breakout_index"),
    ]
    for kwargs, code in cases:
        with pytest.raises(DomainError) as exc:
            services.breakouts_open(meeting_id=meeting.public_id, user=host, **kwargs)
        assert _code(exc) == code, kwargs
    secret = room_services.room_create(host=host, name="Secret", e2ee=True)
    with pytest.raises(DomainError) as exc:
        services.breakouts_open(meeting_id=secret.public_id, user=host, count=2)
    assert _code(exc) == "breakouts_e2ee_unsupported"
    session = services.breakouts_open(meeting_id=meeting.public_id, user=host, count=1)
    child = session.breakouts.get().room
    with pytest.raises(DomainError) as exc:
        services.breakouts_open(meeting_id=child.public_id, user=host, count=2)
    assert _code(exc) == "breakouts_nested"


def test_entering_a_breakout_keeps_the_meeting_seat_and_needs_no_password_or_lobby(user_factory: Any) -> None:
    """A password-protected meeting with a waiting room: people admitted to it move without either."""
    host = user_factory("h2")
    room = room_services.room_create(host=host, name="Guarded", password="pw-secret-1", waiting_room=True)
    host_p = room_services.participant_join(room_id=room.public_id, user=host).participant
    ann = room_services.participant_join(
        room_id=room.public_id, user=user_factory("ann2"), password="pw-secret-1"
    ).participant
    assert ann.state == Participant.State.WAITING
    room_services.participant_admit(actor=host_p, participant_id=ann.public_id)
    session = services.breakouts_open(meeting_id=room.public_id, user=host, count=2, assignments={ann.public_id: 1})
    second = session.breakouts.get(index=1).room
    inner = services.breakout_enter(participant=ann, breakout_id=second.public_id)
    assert (inner.room_id, inner.state, inner.user_id) == (second.pk, Participant.State.ADMITTED, ann.user_id)
    assert inner.display_name == ann.display_name
    ann.refresh_from_db()
    assert ann.state == Participant.State.ADMITTED, "the meeting seat is kept"
    assert seated_participants(room=room).filter(pk=ann.pk).exists()
    # Entering again reuses the record and revokes the previous visit's grants.
    again = services.breakout_enter(participant=ann, breakout_id=second.public_id)
    assert again.pk == inner.pk and again.grant_version == inner.grant_version + 1


def test_participants_enter_only_their_own_breakout_moderators_visit_any(meeting: Any) -> None:
    ann = meeting.people["ann"]
    session = services.breakouts_open(
        meeting_id=meeting.public_id, user=meeting.host_user, count=2, assignments={ann.public_id: 0}
    )
    first, second = (b.room.public_id for b in session.breakouts.order_by("index"))
    with pytest.raises(DomainError) as exc:
        services.breakout_enter(participant=ann, breakout_id=second)
    assert _code(exc) == "not_assigned"
    with pytest.raises(DomainError) as exc:
        services.breakout_enter(participant=meeting.people["bob"], breakout_id=first)
    assert _code(exc) == "not_assigned", "an unassigned participant stays in the main room"
    with pytest.raises(DomainError) as exc:
        services.breakout_enter(participant=ann, breakout_id="nosuchroom")
    assert _code(exc) == "breakout_not_found"
    visit = services.breakout_enter(participant=meeting.people["host"], breakout_id=second)
    assert visit.role == Role.HOST
    services.breakout_assign(
        meeting_id=meeting.public_id, actor=meeting.people["host"], participant_id=ann.public_id, breakout_id=second
    )
    assert services.breakout_enter(participant=ann, breakout_id=second).room.public_id == second
    with pytest.raises(DomainError) as exc:
        services.breakout_assign(
            meeting_id=meeting.public_id, actor=ann, participant_id=ann.public_id, breakout_id=first
        )
    assert _code(exc) == "not_moderator"


def test_nobody_joins_a_breakout_room_directly_by_its_id(meeting: Any, user_factory: Any) -> None:
    session = services.breakouts_open(meeting_id=meeting.public_id, user=meeting.host_user, count=1)
    child = session.breakouts.get().room
    with pytest.raises(DomainError) as exc:
        room_services.participant_join(room_id=child.public_id, user=AnonymousUser(), display_name="Eve")
    assert _code(exc) == "guests_not_allowed"
    with pytest.raises(DomainError) as exc:
        room_services.participant_join(room_id=child.public_id, user=user_factory("eve"), password="guess")
    assert _code(exc) == "room_password_invalid"


def test_timer_tasks_fire_only_when_due_and_only_once(meeting: Any, eager: None) -> None:
    """Queued with a countdown, the tasks run at once here (eager): the row guard makes early runs no-ops."""
    ann = meeting.people["ann"]
    session = services.breakouts_open(
        meeting_id=meeting.public_id, user=meeting.host_user, count=2, duration_minutes=5, auto=True
    )
    session.refresh_from_db()
    assert session.status == BreakoutSession.Status.OPEN, "the eagerly run timer task fired early and did nothing"
    target = session.assignments.get(participant=ann).breakout
    inner = services.breakout_enter(participant=ann, breakout_id=target.room.public_id)
    later = session.ends_at + timedelta(seconds=1)
    assert services.breakouts_expire(session_pk=session.pk, now=session.ends_at - timedelta(seconds=1)) is False
    assert services.breakouts_expire(session_pk=session.pk, now=later) is True
    assert services.breakouts_expire(session_pk=session.pk, now=later) is False, "a second run changes nothing"
    session.refresh_from_db()
    assert session.status == BreakoutSession.Status.CLOSING
    assert session.closes_at == later + timedelta(seconds=60)
    with pytest.raises(DomainError) as exc:
        services.breakout_enter(participant=meeting.people["bob"], breakout_id=target.room.public_id)
    assert _code(exc) == "breakouts_closing"
    assert services.breakouts_finish(session_pk=session.pk, now=session.closes_at - timedelta(seconds=1)) is False
    assert services.breakouts_due(now=session.closes_at) == 1
    assert services.breakouts_finish(session_pk=session.pk, now=session.closes_at) is False
    session.refresh_from_db()
    inner.refresh_from_db()
    ann.refresh_from_db()
    assert session.status == BreakoutSession.Status.CLOSED
    assert inner.state == Participant.State.LEFT
    assert target.room.__class__.objects.get(pk=target.room.pk).is_ended
    assert ann.state == Participant.State.ADMITTED, "being in a breakout never counted as leaving the meeting"


def test_closing_needs_a_moderator_and_is_idempotent(meeting: Any) -> None:
    services.breakouts_open(meeting_id=meeting.public_id, user=meeting.host_user, count=2)
    with pytest.raises(DomainError) as exc:
        services.breakouts_close(meeting_id=meeting.public_id, actor=meeting.people["bob"])
    assert _code(exc) == "not_moderator"
    first = services.breakouts_close(meeting_id=meeting.public_id, actor=meeting.people["host"])
    again = services.breakouts_close(meeting_id=meeting.public_id, actor=meeting.people["host"], delay_seconds=5)
    assert first.closes_at == again.closes_at
    assert (first.closes_at - timezone.now()).total_seconds() > 50
    with pytest.raises(DomainError) as exc:
        services.breakouts_broadcast(meeting_id=meeting.public_id, actor=meeting.people["host"], text="  ")
    assert _code(exc) == "empty_message"


def test_ending_the_meeting_ends_its_breakouts(meeting: Any) -> None:
    session = services.breakouts_open(meeting_id=meeting.public_id, user=meeting.host_user, count=2)
    room_services.room_end(room_id=meeting.public_id, user=meeting.host_user)
    session.refresh_from_db()
    assert session.status == BreakoutSession.Status.CLOSED
    assert all(b.room.is_ended for b in Breakout.objects.filter(session=session).select_related("room"))
