"""Rooms REST API: seed shapes, settings, ending."""

from __future__ import annotations

import pytest

from rooms.ids import ROOM_ID_RE
from rooms.models import Room

pytestmark = pytest.mark.django_db


def test_create_room_seed_shape(auth_client):
    c = auth_client()
    r = c.post("/api/v1/rooms", {"name": "Team Meeting", "max_participants": 50}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert ROOM_ID_RE.match(body["roomId"])
    assert body["join_url"] == f"http://testserver/join/{body['roomId']}"
    assert body["name"] == "Team Meeting" and body["max_participants"] == 50
    assert body["is_host"] is True and body["status"] == "active"


def test_room_ids_are_unguessable_and_distinct(auth_client):
    c = auth_client()
    ids = {c.post("/api/v1/rooms", {"name": f"r{i}"}, format="json").json()["roomId"] for i in range(20)}
    assert len(ids) == 20
    assert all(len(i) == 12 for i in ids)


@pytest.mark.parametrize("capacity", [1, 101, 0, -5])
def test_capacity_outside_2_to_100_is_rejected(auth_client, capacity):
    r = auth_client().post("/api/v1/rooms", {"name": "x", "max_participants": capacity}, format="json")
    assert r.status_code == 400
    assert "max_participants" in r.json()["error"]["details"]


def test_password_is_stored_hashed(auth_client):
    r = auth_client().post("/api/v1/rooms", {"name": "secret", "password": "open-sesame"}, format="json")
    room = Room.objects.get(public_id=r.json()["roomId"])
    assert room.password_hash and "open-sesame" not in room.password_hash
    assert r.json()["has_password"] is True and "password" not in r.json()


def test_get_room_is_public_but_list_is_mine(auth_client, api_client):
    host = auth_client()
    other = auth_client()
    room_id = host.post("/api/v1/rooms", {"name": "mine"}, format="json").json()["roomId"]
    assert api_client.get(f"/api/v1/rooms/{room_id}").json()["name"] == "mine"
    assert [r["roomId"] for r in host.get("/api/v1/rooms").json()] == [room_id]
    assert other.get("/api/v1/rooms").json() == []


def test_unknown_or_malformed_room_id_is_404(api_client):
    for rid in ("abcdefghjkmn", "x", "../../etc", "A" * 300):
        r = api_client.get(f"/api/v1/rooms/{rid}")
        assert r.status_code == 404 and r.json()["error"]["code"] in {"room_not_found", "not_found"}


def test_patch_settings_host_only(auth_client):
    host, other = auth_client(), auth_client()
    room_id = host.post("/api/v1/rooms", {"name": "a"}, format="json").json()["roomId"]
    r = other.patch(f"/api/v1/rooms/{room_id}", {"locked": True}, format="json")
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_host"
    r = host.patch(
        f"/api/v1/rooms/{room_id}", {"locked": True, "waiting_room": True, "password": "pw", "name": "b"}, format="json"
    )
    assert r.status_code == 200
    assert r.json()["locked"] and r.json()["waiting_room"] and r.json()["has_password"] and r.json()["name"] == "b"
    r = host.patch(f"/api/v1/rooms/{room_id}", {"password": ""}, format="json")
    assert r.json()["has_password"] is False
    r = host.patch(f"/api/v1/rooms/{room_id}", {"max_participants": 500}, format="json")
    assert r.status_code == 400


def test_end_room_host_only_and_ended_rooms_refuse_joins(auth_client):
    host, other = auth_client(), auth_client()
    room_id = host.post("/api/v1/rooms", {"name": "a"}, format="json").json()["roomId"]
    assert other.post(f"/api/v1/rooms/{room_id}/end").status_code == 403
    r = host.post(f"/api/v1/rooms/{room_id}/end")
    assert r.status_code == 200 and r.json()["status"] == "ended"
    r = other.post(f"/api/v1/rooms/{room_id}/join", {}, format="json")
    assert r.status_code == 410 and r.json()["error"]["code"] == "room_ended"
    assert host.patch(f"/api/v1/rooms/{room_id}", {"locked": True}, format="json").status_code == 410


def test_record_endpoint_needs_a_moderator_and_answers_503_json_when_media_is_down(auth_client, settings):
    """Recording ships (tests/recordings); with no media server reachable the API answers 503, never a 500."""
    settings.MEDIA_CONTROL_URL = "http://127.0.0.1:9"  # discard port: connection refused
    host, other = auth_client(), auth_client()
    room_id = host.post("/api/v1/rooms", {"name": "a"}, format="json").json()["roomId"]
    assert other.post(f"/api/v1/rooms/{room_id}/record", {"duration_minutes": 60}, format="json").status_code == 403
    r = host.post(f"/api/v1/rooms/{room_id}/record", {"duration_minutes": 60}, format="json")
    assert r.status_code == 503 and r.json()["error"]["code"] == "media_unavailable"
