"""Join grants and access control: roles, guests, password, lock, waiting room, capacity."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from rooms.grants import grant_read
from rooms.models import Participant

pytestmark = pytest.mark.django_db


@pytest.fixture
def make_room(auth_client):
    def make(**settings):
        host = auth_client()
        body = {"name": "Room", **settings}
        room_id = host.post("/api/v1/rooms", body, format="json").json()["roomId"]
        return host, room_id

    return make


def join(client, room_id, **body):
    return client.post(f"/api/v1/rooms/{room_id}/join", body, format="json")


def test_join_grant_shape_and_token_binding(make_room, auth_client):
    host, room_id = make_room()
    member = auth_client()
    r = join(member, room_id, userId=member.user.pk, stream_capabilities={"video": True, "audio": False})
    assert r.status_code == 200, r.content
    g = r.json()
    assert g["roomId"] == room_id and g["role"] == "participant" and g["status"] == "admitted"
    assert g["ws_url"] == f"ws://testserver/ws/rooms/{room_id}/"
    assert g["ice_servers"] == [] and g["token_expires_in"] == 120
    assert g["stream_capabilities"]["audio"] is False
    grant = grant_read(g["token"])
    assert grant is not None and grant.room_id == room_id and grant.user_id == member.user.pk
    assert grant.participant_id == g["participantId"]
    assert grant_read(g["token"] + "x") is None
    assert grant_read(g["token"], max_age=-1) is None  # expired


def test_host_gets_host_role(make_room):
    host, room_id = make_room()
    assert join(host, room_id).json()["role"] == "host"


def test_user_id_must_be_callers_own(make_room, auth_client):
    _, room_id = make_room()
    member = auth_client()
    r = join(member, room_id, userId=member.user.pk + 999)
    assert r.status_code == 403 and r.json()["error"]["code"] == "user_mismatch"


def test_guest_join_needs_name_and_room_allowing_guests(make_room, api_client):
    _, room_id = make_room()
    r = join(api_client, room_id)
    assert r.status_code == 400 and r.json()["error"]["code"] == "display_name_required"
    r = join(api_client, room_id, display_name="Visitor")
    assert r.status_code == 200 and r.json()["role"] == "guest"
    assert grant_read(r.json()["token"]).user_id is None
    _, closed = make_room(allow_guests=False)
    r = join(api_client, closed, display_name="Visitor")
    assert r.status_code == 403 and r.json()["error"]["code"] == "guests_not_allowed"


def test_room_password(make_room, auth_client):
    host, room_id = make_room(password="open-sesame")
    member = auth_client()
    assert join(member, room_id).json()["error"]["code"] == "room_password_required"
    assert join(member, room_id, password="wrong").json()["error"]["code"] == "room_password_invalid"
    assert join(member, room_id, password="open-sesame").status_code == 200
    assert join(host, room_id).status_code == 200  # the host needs no password
    assert join(member, room_id).status_code == 200  # already admitted: rejoin without it


def test_locked_room_admits_only_host_and_seated(make_room, auth_client):
    host, room_id = make_room()
    inside = auth_client()
    assert join(inside, room_id).status_code == 200
    host.patch(f"/api/v1/rooms/{room_id}", {"locked": True}, format="json")
    r = join(auth_client(), room_id)
    assert r.status_code == 403 and r.json()["error"]["code"] == "room_locked"
    assert join(host, room_id).status_code == 200
    assert join(inside, room_id).status_code == 200  # a reload of someone inside


def test_waiting_room_queues_non_moderators(make_room, auth_client, api_client):
    host, room_id = make_room(waiting_room=True)
    assert join(host, room_id).json()["status"] == "admitted"
    r = join(auth_client(), room_id)
    assert r.json()["status"] == "waiting"
    assert join(api_client, room_id, display_name="G").json()["status"] == "waiting"


def test_capacity_is_enforced_and_seats_free_up(make_room, auth_client):
    host, room_id = make_room(max_participants=2)
    assert join(host, room_id).status_code == 200
    second = auth_client()
    assert join(second, room_id).status_code == 200
    r = join(auth_client(), room_id)
    assert r.status_code == 409 and r.json()["error"]["code"] == "room_full"
    # A rejoin of someone seated does not need a new seat.
    assert join(second, room_id).status_code == 200
    # Presence timeout frees the seat of a participant that vanished.
    Participant.objects.filter(user=second.user).update(last_seen_at=timezone.now() - timedelta(minutes=5))
    assert join(auth_client(), room_id).status_code == 200


def test_rejoin_revokes_previous_grant(make_room, auth_client):
    _, room_id = make_room()
    member = auth_client()
    first = join(member, room_id).json()
    second = join(member, room_id).json()
    assert first["participantId"] == second["participantId"]
    from rooms.selectors import participant_for_grant

    assert participant_for_grant(grant=grant_read(first["token"])) is None
    assert participant_for_grant(grant=grant_read(second["token"])) is not None


def test_removed_participant_cannot_rejoin(make_room, auth_client):
    from rooms import services

    host, room_id = make_room()
    join(host, room_id)
    member = auth_client()
    join(member, room_id)
    host_p = Participant.objects.get(user=host.user)
    target = Participant.objects.get(user=member.user)
    services.participant_remove(actor=host_p, participant_id=target.public_id)
    r = join(member, room_id)
    assert r.status_code == 403 and r.json()["error"]["code"] == "removed_from_room"


@pytest.mark.parametrize(
    "body",
    [
        {"userId": "abc"},
        {"stream_capabilities": "yes"},
        {"stream_capabilities": {"video": "maybe"}},
        {"display_name": "x" * 500},
        [],
    ],
)
def test_bad_join_bodies_are_400(make_room, api_client, body):
    _, room_id = make_room()
    r = api_client.post(f"/api/v1/rooms/{room_id}/join", body, format="json")
    assert r.status_code == 400 and "error" in r.json()
