"""Removed means removed (issue 18 item 3).

Before: a removed guest rejoined at once by reopening the link with another name (removed signed-in users
were already blocked).
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from rooms import services
from rooms.grants import grant_read
from rooms.models import Participant
from rooms.removals import COOKIE

pytestmark = pytest.mark.django_db


def _join(client: Any, room_id: str, **body: Any) -> Any:
    return client.post(f"/api/v1/rooms/{room_id}/join", body, format="json")


@pytest.fixture
def meeting(auth_client: Any) -> tuple[Any, str, Participant]:
    host = auth_client()
    room_id = host.post("/api/v1/rooms", {"name": "Board"}, format="json").json()["roomId"]
    grant = _join(host, room_id).json()
    return host, room_id, Participant.objects.get(public_id=grant["participantId"])


def test_removed_guest_browser_cannot_rejoin_under_another_name(meeting):
    host, room_id, host_participant = meeting
    guest = APIClient()
    first = _join(guest, room_id, display_name="Troll")
    assert first.status_code == 200 and first.cookies[COOKIE]["httponly"]
    services.participant_remove(actor=host_participant, participant_id=first.json()["participantId"])
    again = _join(guest, room_id, display_name="Someone Else")
    assert again.status_code == 403 and again.json()["error"]["code"] == "removed_from_room"
    # The grant was revoked by the removal.
    removed = Participant.objects.get(public_id=first.json()["participantId"])
    assert grant_read(first.json()["token"]).version != removed.grant_version
    # Another browser (no cookie) is a different guest.
    assert _join(APIClient(), room_id, display_name="New").status_code == 200


def test_forged_cookie_is_a_new_browser_not_a_bypass(meeting):
    host, room_id, host_participant = meeting
    guest = APIClient()
    first = _join(guest, room_id, display_name="Troll")
    services.participant_remove(actor=host_participant, participant_id=first.json()["participantId"])
    key = first.cookies[COOKIE].value
    forged = APIClient()
    forged.cookies[COOKIE] = key.split(":", 1)[0] + ":forged"
    r = _join(forged, room_id, display_name="x")
    assert r.status_code == 200 and r.cookies[COOKIE].value != key


def test_host_can_undo_a_removal(meeting, auth_client):
    host, room_id, host_participant = meeting
    guest = APIClient()
    first = _join(guest, room_id, display_name="Oops").json()
    services.participant_remove(actor=host_participant, participant_id=first["participantId"])
    assert _join(guest, room_id, display_name="Oops").status_code == 403
    stranger = auth_client()
    r = stranger.delete(f"/api/v1/rooms/{room_id}/removals/{first['participantId']}")
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_host"
    assert host.delete(f"/api/v1/rooms/{room_id}/removals/{first['participantId']}").status_code == 204
    assert _join(guest, room_id, display_name="Oops").status_code == 200
    r = host.delete(f"/api/v1/rooms/{room_id}/removals/{first['participantId']}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_removed"


def test_host_can_undo_a_signed_in_removal(meeting, auth_client):
    host, room_id, host_participant = meeting
    member = auth_client()
    grant = _join(member, room_id).json()
    services.participant_remove(actor=host_participant, participant_id=grant["participantId"])
    assert _join(member, room_id).json()["error"]["code"] == "removed_from_room"
    assert host.delete(f"/api/v1/rooms/{room_id}/removals/{grant['participantId']}").status_code == 204
    assert _join(member, room_id).status_code == 200
