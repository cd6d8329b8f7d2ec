"""Rejoin tokens: a reload takes the same seat again, without password, waiting room or lock; a bad token is a clear
error after which the client joins normally."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from rooms import services
from rooms.grants import grant_read, rejoin_read
from rooms.models import Participant
from rooms.selectors import participant_for_grant

pytestmark = pytest.mark.django_db


@pytest.fixture
def make_room(auth_client: Any) -> Any:
    def make(**settings: Any) -> tuple[Any, str, Participant]:
        host = auth_client()
        room_id = host.post("/api/v1/rooms", {"name": "Room", **settings}, format="json").json()["roomId"]
        assert join(host, room_id).status_code == 200
        return host, room_id, Participant.objects.get(user=host.user, room__public_id=room_id)

    return make


def join(client: Any, room_id: str, **body: Any) -> Any:
    return client.post(f"/api/v1/rooms/{room_id}/join", body, format="json")


def error_code(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_an_admitted_guest_of_a_waiting_room_reloads_into_the_same_seat_without_the_lobby(make_room: Any) -> None:
    _, room_id, host_p = make_room(waiting_room=True)
    guest = APIClient()
    first = join(guest, room_id, display_name="Visitor").json()
    assert first["status"] == "waiting" and first["rejoin_expires_in"] == 12 * 3600
    services.participant_admit(actor=host_p, participant_id=first["participantId"])

    again = join(guest, room_id, rejoin_token=first["rejoin_token"])
    assert again.status_code == 200, again.content
    grant = again.json()
    assert (grant["participantId"], grant["status"], grant["display_name"]) == (
        first["participantId"],
        "admitted",
        "Visitor",
    )
    assert participant_for_grant(grant=grant_read(first["token"])) is None  # the old grant is revoked
    assert participant_for_grant(grant=grant_read(grant["token"])) is not None
    claim = rejoin_read(grant["rejoin_token"])  # a fresh one (its lifetime counts from this join), same seat
    assert claim is not None and claim.participant_id == first["participantId"]
    assert Participant.objects.filter(room__public_id=room_id).count() == 2  # no second guest record


def test_a_guest_still_waiting_waits_again_as_the_same_participant(make_room: Any) -> None:
    _, room_id, _ = make_room(waiting_room=True)
    guest = APIClient()
    first = join(guest, room_id, display_name="Visitor").json()
    again = join(guest, room_id, rejoin_token=first["rejoin_token"]).json()
    assert (again["participantId"], again["status"]) == (first["participantId"], "waiting")


def test_a_password_room_takes_the_rejoin_token_instead_of_the_password_even_after_leaving(make_room: Any) -> None:
    _, room_id, _ = make_room(password="open-sesame")
    guest = APIClient()
    assert error_code(join(guest, room_id, display_name="Visitor")) == (403, "room_password_required")
    first = join(guest, room_id, display_name="Visitor", password="open-sesame").json()
    participant = Participant.objects.get(public_id=first["participantId"])
    # The reload closed the old socket first: the participant has left.
    services.participant_leave(participant=participant, grant_version=participant.grant_version)
    again = join(guest, room_id, rejoin_token=first["rejoin_token"])
    assert again.status_code == 200, again.content
    assert (again.json()["participantId"], again.json()["status"]) == (first["participantId"], "admitted")


def test_a_locked_room_takes_back_someone_who_was_admitted(make_room: Any) -> None:
    host, room_id, _ = make_room()
    guest = APIClient()
    first = join(guest, room_id, display_name="Visitor").json()
    host.patch(f"/api/v1/rooms/{room_id}", {"locked": True}, format="json")
    participant = Participant.objects.get(public_id=first["participantId"])
    services.participant_leave(participant=participant, grant_version=participant.grant_version)
    assert error_code(join(APIClient(), room_id, display_name="New")) == (403, "room_locked")
    assert join(guest, room_id, rejoin_token=first["rejoin_token"]).json()["status"] == "admitted"


def test_a_rejoin_needs_a_free_seat_unless_still_seated(make_room: Any) -> None:
    _, room_id, _ = make_room(max_participants=2)
    guest = APIClient()
    first = join(guest, room_id, display_name="Visitor").json()
    assert join(guest, room_id, rejoin_token=first["rejoin_token"]).status_code == 200  # still seated
    participant = Participant.objects.get(public_id=first["participantId"])
    services.participant_leave(participant=participant, grant_version=participant.grant_version)
    assert join(APIClient(), room_id, display_name="Other").status_code == 200  # takes the free seat
    assert error_code(join(guest, room_id, rejoin_token=first["rejoin_token"])) == (409, "room_full")


@pytest.mark.parametrize("how", ["forged", "other_room", "expired", "garbage"])
def test_an_invalid_rejoin_token_is_rejoin_token_invalid_and_a_normal_join_still_works(
    make_room: Any, settings: Any, how: str
) -> None:
    _, room_id, _ = make_room()
    _, other_room, _ = make_room()
    guest = APIClient()
    token = join(guest, room_id, display_name="Visitor").json()["rejoin_token"]
    target = room_id
    if how == "forged":
        token = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    elif how == "other_room":
        target = other_room
    elif how == "expired":
        settings.REJOIN_TOKEN_TTL_SECONDS = -1
    else:
        token = "not-a-token"
    r = join(guest, target, rejoin_token=token)
    assert error_code(r) == (403, "rejoin_token_invalid")
    assert r.json()["error"]["message"] == "This rejoin token is invalid or has expired; join the room again."
    settings.REJOIN_TOKEN_TTL_SECONDS = 3600
    assert join(guest, target, display_name="Visitor").status_code == 200  # the fallback


def test_the_token_is_bound_to_the_user_and_the_browser_session(make_room: Any, user_factory: Any) -> None:
    _, room_id, _ = make_room()
    member = user_factory()
    browser = APIClient()
    browser.force_login(member)
    token = join(browser, room_id).json()["rejoin_token"]
    assert join(browser, room_id, rejoin_token=token).status_code == 200  # same session: a reload
    other_browser = APIClient()
    other_browser.force_login(member)  # the same account, another session
    assert error_code(join(other_browser, room_id, rejoin_token=token)) == (403, "rejoin_token_invalid")
    assert error_code(join(APIClient(), room_id, rejoin_token=token)) == (403, "rejoin_token_invalid")  # a guest
    guest = APIClient()
    guest_token = join(guest, room_id, display_name="Visitor").json()["rejoin_token"]
    assert error_code(join(browser, room_id, rejoin_token=guest_token)) == (403, "rejoin_token_invalid")


@pytest.mark.parametrize("outcome", ["removed", "denied", "ended"])
def test_removal_denial_or_the_rooms_end_void_the_token(make_room: Any, outcome: str) -> None:
    host, room_id, host_p = make_room(waiting_room=True)
    guest = APIClient()
    first = join(guest, room_id, display_name="Visitor").json()
    if outcome == "denied":
        services.participant_deny(actor=host_p, participant_id=first["participantId"])
    else:
        services.participant_admit(actor=host_p, participant_id=first["participantId"])
    if outcome == "removed":
        services.participant_remove(actor=host_p, participant_id=first["participantId"])
    if outcome == "ended":
        assert host.post(f"/api/v1/rooms/{room_id}/end").status_code == 200
    expected = (410, "room_ended") if outcome == "ended" else (403, "removed_from_room")
    assert error_code(join(guest, room_id, rejoin_token=first["rejoin_token"])) == expected
