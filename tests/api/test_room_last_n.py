"""The room's last_n setting (large rooms): REST create/patch, validation, admin."""

from __future__ import annotations

import pytest

from rooms.models import Room

pytestmark = pytest.mark.django_db


def test_last_n_defaults_to_automatic_and_can_be_set_and_cleared(auth_client):
    c = auth_client()
    body = c.post("/api/v1/rooms", {"name": "Town hall", "max_participants": 100}, format="json").json()
    assert body["last_n"] is None  # by room size
    room_id = body["roomId"]
    r = c.patch(f"/api/v1/rooms/{room_id}", {"last_n": 4}, format="json")
    assert r.status_code == 200 and r.json()["last_n"] == 4
    assert Room.objects.get(public_id=room_id).last_n == 4
    r = c.patch(f"/api/v1/rooms/{room_id}", {"last_n": None}, format="json")
    assert r.status_code == 200 and r.json()["last_n"] is None
    created = c.post("/api/v1/rooms", {"name": "Audio only", "last_n": 0}, format="json").json()
    assert created["last_n"] == 0


@pytest.mark.parametrize("value", [-1, 101, "many", True, 2.5])
def test_invalid_last_n_is_rejected(auth_client, value):
    c = auth_client()
    room_id = c.post("/api/v1/rooms", {"name": "x"}, format="json").json()["roomId"]
    r = c.patch(f"/api/v1/rooms/{room_id}", {"last_n": value}, format="json")
    assert r.status_code == 400
    assert "last_n" in r.json()["error"]["details"]


def test_only_the_host_sets_last_n(auth_client):
    host, other = auth_client(), auth_client()
    room_id = host.post("/api/v1/rooms", {"name": "x"}, format="json").json()["roomId"]
    assert other.patch(f"/api/v1/rooms/{room_id}", {"last_n": 2}, format="json").status_code == 403
    assert Room.objects.get(public_id=room_id).last_n is None


def test_admin_edits_last_n(admin_client):
    from django.contrib.auth import get_user_model

    host = get_user_model().objects.create_user(username="h-lastn", password="pw-12345-long")
    room = Room.objects.create(name="Big", host=host)
    page = admin_client.get(f"/admin/rooms/room/{room.pk}/change/")
    assert page.status_code == 200 and b'name="last_n"' in page.content
    listing = admin_client.get("/admin/rooms/room/")
    assert b"column-last_n" in listing.content


def test_settings_page_sets_and_clears_last_n(client, user_factory):
    host = user_factory()
    room = Room.objects.create(name="Town hall", host=host)
    client.force_login(host)
    url = f"/rooms/{room.public_id}/settings"
    form = {"name": "Town hall", "max_participants": 50, "allow_guests": "on"}
    assert client.post(url, {**form, "last_n": "3"}).status_code == 200
    room.refresh_from_db()
    assert room.last_n == 3
    page = client.get(url)
    assert b'name="last_n"' in page.content and b'value="3"' in page.content
    client.post(url, {**form, "last_n": ""})
    room.refresh_from_db()
    assert room.last_n is None
    bad = client.post(url, {**form, "last_n": "500"})
    assert b"last_n" in bad.content
    room.refresh_from_db()
    assert room.last_n is None
