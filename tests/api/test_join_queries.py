"""The join path's database work, pinned: the REST join and the socket join (issue 19).

A join is the hottest write path of the web tier (docs/benchmarks.md §4: ~40 ms of daphne CPU per join, spread
over DRF, Channels and the database hops). Each count below is what the path needs today; a change that adds
a query to every join shows up here.
"""

from __future__ import annotations

from typing import Any

import pytest

from rooms import events, presence
from rooms.grants import grant_read

pytestmark = pytest.mark.django_db

# Counted inside the test's transaction, so each atomic block adds a SAVEPOINT and its RELEASE.
# room, [room locked with its scheduled meeting (if any), seated count, INSERT with the browser key]
GUEST_REST_JOIN = 6
# room, removed-browser check, [room locked with its meeting, seated count, INSERT]: a browser that has a key
RETURNING_GUEST_REST_JOIN = 7
MEMBER_REST_JOIN = 8  # user (JWT), room, [room locked with its meeting, own earlier participant, seated, INSERT]
# one database hop: [room locked, participant locked (the grant checked against it), UPDATE], seated list, recording
SOCKET_JOIN = 7


@pytest.fixture
def room_id(auth_client: Any) -> str:
    host = auth_client()
    return str(host.post("/api/v1/rooms", {"name": "Room"}, format="json").json()["roomId"])


def rest_join(client: Any, room_id: str, **body: Any) -> dict[str, Any]:
    r = client.post(f"/api/v1/rooms/{room_id}/join", body, format="json")
    assert r.status_code == 200, r.content
    return dict(r.json())


def socket_join(
    grant: dict[str, Any], room_id: str, user: Any = None, media_state: dict[str, bool] | None = None
) -> presence.Entry:
    """The database hop of the room socket's ``join`` frame (rooms/consumers.py ``_join``)."""
    (_session, entry), _outgoing = events.collecting(presence.socket_join)(
        grant=grant_read(grant["token"]), room_id=room_id, user=user, last_seq=None, media_state=media_state
    )
    return entry


def test_guest_rest_join_queries(room_id: str, api_client: Any, django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(GUEST_REST_JOIN):
        rest_join(api_client, room_id, display_name="Ada")


def test_a_guest_browser_with_a_key_is_checked_for_removal_a_new_one_is_not(
    room_id: str, api_client: Any, django_assert_num_queries: Any
) -> None:
    """A browser without the key cookie gets a new random key, which no removed participant can have."""
    rest_join(api_client, room_id, display_name="Ada")  # sets the cookie
    with django_assert_num_queries(RETURNING_GUEST_REST_JOIN):
        rest_join(api_client, room_id, display_name="Ada again")


def test_member_rest_join_queries(room_id: str, auth_client: Any, django_assert_num_queries: Any) -> None:
    member = auth_client()
    with django_assert_num_queries(MEMBER_REST_JOIN):
        rest_join(member, room_id, userId=member.user.pk)


def test_socket_join_queries(room_id: str, api_client: Any, django_assert_num_queries: Any) -> None:
    grant = rest_join(api_client, room_id, display_name="Ada")
    with django_assert_num_queries(SOCKET_JOIN):
        entry = socket_join(grant, room_id)
    assert entry.frames[0]["type"] == "room_snapshot"


def test_socket_join_with_media_state_costs_no_extra_query(
    room_id: str, api_client: Any, django_assert_num_queries: Any
) -> None:
    """The first ``media_state`` folded into the join frame is saved by the connect's own UPDATE: the separate
    ``media_state`` frame it replaces cost a database hop of its own and a ``participant_updated`` to the room."""
    grant = rest_join(api_client, room_id, display_name="Ada")
    muted = {"audio_muted": True, "video_muted": True, "screen_sharing": False}
    with django_assert_num_queries(SOCKET_JOIN):
        entry = socket_join(grant, room_id, media_state=muted)
    assert {k: entry.frames[0]["you"][k] for k in muted} == muted


def test_the_snapshot_lists_each_seated_participant_as_participant_public(
    room_id: str, api_client: Any, auth_client: Any
) -> None:
    """The snapshot's list is read as columns (``services.participants_public``), not model instances: each entry
    is still exactly what ``participant_public`` makes of the row (a guest, an account, a raised hand, muted)."""
    from django.utils import timezone

    from rooms import services
    from rooms.models import Participant

    member = auth_client()
    rest_join(member, room_id, userId=member.user.pk)
    Participant.objects.filter(user=member.user).update(hand_raised_at=timezone.now(), audio_muted=True)
    grant = rest_join(api_client, room_id, display_name="Ada")
    entry = socket_join(grant, room_id, media_state={"video_muted": True})
    seated = Participant.objects.filter(room__public_id=room_id, state=Participant.State.ADMITTED)
    expected = [services.participant_public(p) for p in seated.order_by("created_at")]
    assert entry.frames[0]["participants"] == expected
    assert {p["is_guest"] for p in expected} == {True, False}
    assert any(p["hand_raised_at"] for p in expected)


def test_a_room_id_that_names_no_room_is_not_found(api_client: Any) -> None:
    """The join's unique-key reads (``selectors.unique_or_none``) still say 404 for an unknown room."""
    r = api_client.post("/api/v1/rooms/abcdefghjkmn/join", {"display_name": "Ada"}, format="json")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "room_not_found"
