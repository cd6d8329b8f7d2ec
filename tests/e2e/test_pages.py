"""The server-rendered pages behind the web UI (Django test client; the browser tests are in test_call.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rooms import services
from rooms.models import Room

pytestmark = pytest.mark.django_db
CALL_JS = sorted((Path(__file__).resolve().parents[2] / "static" / "js" / "call").glob("*.js"))


def _room(host: Any, **kw: Any) -> Room:
    return services.room_create(host=host, name="Standup", **kw)


def test_join_page_renders_the_prejoin_screen_with_the_room_config(client: Any, user_factory: Any) -> None:
    room = _room(user_factory("host"))
    response = client.get(f"/join/{room.public_id}")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="join-form"' in html and 'for="display-name"' in html
    assert 'id="room-password"' not in html
    # "Join now" waits for the call page's script: a click before it loads must not submit the form natively
    assert '<button type="submit" id="join-button" disabled>' in html
    assert response.cookies.get("csrftoken"), "the page sets the CSRF cookie the join POST needs"
    config = json.loads(html.split('id="room-config" type="application/json">', 1)[1].split("</script>", 1)[0])
    assert config["roomId"] == room.public_id
    assert config["signedIn"] is False and config["isHost"] is False


def test_join_page_asks_guests_for_the_password_but_not_the_host(client: Any, user_factory: Any) -> None:
    host = user_factory("host")
    room = _room(host, password="s3cret-pass")
    assert 'id="room-password"' in client.get(f"/join/{room.public_id}").content.decode()
    client.force_login(host)
    assert 'id="room-password"' not in client.get(f"/join/{room.public_id}").content.decode()


def test_join_page_for_an_unknown_room_is_404(client: Any) -> None:
    assert client.get("/join/zzzzzzzzzzzz").status_code == 404
    assert client.get("/join/NOT-AN-ID").status_code == 404


def test_room_names_are_escaped_in_pages(client: Any, user_factory: Any) -> None:
    room = services.room_create(host=user_factory("host"), name="<script>alert(1)</script>")
    html = client.get(f"/join/{room.public_id}").content.decode()
    assert "<script>alert(1)</script>" not in html


def test_host_changes_settings_through_the_settings_page(client: Any, user_factory: Any) -> None:
    host = user_factory("host")
    room = _room(host)
    client.force_login(host)
    assert client.get(f"/rooms/{room.public_id}/settings").status_code == 200
    response = client.post(
        f"/rooms/{room.public_id}/settings",
        {"name": "Renamed", "max_participants": 10, "new_password": "pw-12345", "waiting_room": "on"},
    )
    assert response.status_code == 200 and b"Saved." in response.content
    room.refresh_from_db()
    assert (room.name, room.max_participants, room.waiting_room, room.locked, room.has_password) == (
        "Renamed",
        10,
        True,
        False,
        True,
    )
    client.post(
        f"/rooms/{room.public_id}/settings", {"name": "Renamed", "max_participants": 10, "remove_password": "on"}
    )
    room.refresh_from_db()
    assert not room.has_password


def test_settings_reject_invalid_capacity(client: Any, user_factory: Any) -> None:
    host = user_factory("host")
    room = _room(host)
    client.force_login(host)
    response = client.post(f"/rooms/{room.public_id}/settings", {"name": "x", "max_participants": 500})
    assert response.status_code == 200 and b"Saved." not in response.content
    room.refresh_from_db()
    assert room.max_participants == 50


def test_only_the_host_sees_settings_and_recordings(client: Any, user_factory: Any) -> None:
    room = _room(user_factory("host"))
    assert client.get(f"/rooms/{room.public_id}/settings").status_code == 302  # to the login page
    client.force_login(user_factory("other"))
    assert client.get(f"/rooms/{room.public_id}/settings").status_code == 403
    assert (
        client.post(f"/rooms/{room.public_id}/settings", {"name": "hijack", "max_participants": 5}).status_code == 403
    )
    assert client.get(f"/rooms/{room.public_id}/recordings").status_code == 403
    room.refresh_from_db()
    assert room.name == "Standup"


def test_recordings_page_shows_an_empty_state(client: Any, user_factory: Any) -> None:
    host = user_factory("host")
    room = _room(host)
    client.force_login(host)
    response = client.get(f"/rooms/{room.public_id}/recordings")
    assert response.status_code == 200 and b"No recordings yet." in response.content


def test_home_creates_a_room_with_a_waiting_room(client: Any, user_factory: Any) -> None:
    client.force_login(user_factory("host"))
    response = client.post("/", {"create": "", "name": "Interviews", "waiting_room": "on"})
    room = Room.objects.get(name="Interviews")
    assert response.status_code == 302 and response["Location"] == f"/join/{room.public_id}"
    assert room.waiting_room


def test_call_js_never_renders_user_text_as_html() -> None:
    assert CALL_JS, "the call's modules moved"
    source = "".join(path.read_text() for path in CALL_JS)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert sink not in source
