"""Breakout rooms over REST: the host's controls, errors as JSON with a code, and the admin pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser

from rooms import services as room_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def meeting(auth_client: Any, user_factory: Any) -> Any:
    host = auth_client()
    room = room_services.room_create(host=host.user, name="Town hall")
    member = auth_client()
    people = [
        room_services.participant_join(room_id=room.public_id, user=member.user).participant,
        room_services.participant_join(room_id=room.public_id, user=AnonymousUser(), display_name="Guest").participant,
    ]
    return {"room": room, "host": host, "member": member, "people": people}


def test_the_host_opens_assigns_announces_and_closes_over_rest(meeting: Any) -> None:
    host, room_id = meeting["host"], meeting["room"].public_id
    base = f"/api/v1/rooms/{room_id}/breakouts"
    opened = host.post(base, {"count": 2, "duration_minutes": 15, "auto": True}, format="json")
    assert opened.status_code == 201, opened.content
    body = opened.json()
    assert body["status"] == "open" and body["ends_at"] and len(body["breakouts"]) == 2
    assert sorted(len(b["assigned"]) for b in body["breakouts"]) == [1, 1]
    guest = meeting["people"][1].public_id
    second = body["breakouts"][1]["breakoutId"]
    moved = host.post(f"{base}/assign", {"participantId": guest, "breakoutId": second}, format="json")
    assert moved.status_code == 200 and guest in moved.json()["breakouts"][1]["assigned"]
    assert host.post(f"{base}/broadcast", {"text": "Wrap up"}, format="json").status_code == 200
    closing = host.post(f"{base}/close", {}, format="json")
    assert closing.status_code == 200 and closing.json()["status"] == "closing" and closing.json()["closes_at"]
    assert meeting["member"].get(base).json()["status"] == "closing", "people admitted may read the state"


def test_rest_errors_are_json_with_a_code(meeting: Any, api_client: Any) -> None:
    base = f"/api/v1/rooms/{meeting['room'].public_id}/breakouts"
    refused = meeting["member"].post(base, {"count": 2}, format="json")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "not_moderator")
    assert api_client.post(base, {"count": 2}, format="json").status_code == 401
    bad = meeting["host"].post(base, {"count": 0}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"]
    closed = meeting["host"].post(f"{base}/close", {}, format="json")
    assert (closed.status_code, closed.json()["error"]["code"]) == (404, "breakouts_not_open")
    nulls = meeting["host"].post(base, {"count": 1, "names": ["a\x00b"]}, format="json")
    assert nulls.status_code == 400


def test_the_admin_lists_breakout_sessions_and_rooms(meeting: Any, admin_client: Any) -> None:
    meeting["host"].post(f"/api/v1/rooms/{meeting['room'].public_id}/breakouts", {"count": 2}, format="json")
    for path in ("/admin/breakouts/breakoutsession/", "/admin/breakouts/breakout/", "/admin/breakouts/breakoutseat/"):
        assert admin_client.get(path).status_code == 200, path
    from breakouts.models import BreakoutSession

    session = BreakoutSession.objects.get()
    page = admin_client.get(f"/admin/breakouts/breakoutsession/{session.pk}/change/")
    assert page.status_code == 200 and b"Room 2" in page.content
