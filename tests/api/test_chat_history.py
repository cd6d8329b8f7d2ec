"""Chat history: cursor pagination newest-last, admitted people only, private messages."""

from __future__ import annotations

import pytest

from chat.services import chat_post
from conference.errors import DomainError
from rooms import services
from rooms.models import Participant

pytestmark = pytest.mark.django_db


@pytest.fixture
def room_with_people(auth_client):
    host = auth_client()
    room_id = host.post("/api/v1/rooms", {"name": "chatty"}, format="json").json()["roomId"]
    host.post(f"/api/v1/rooms/{room_id}/join", {}, format="json")
    member = auth_client()
    member.post(f"/api/v1/rooms/{room_id}/join", {}, format="json")
    hp = Participant.objects.get(user=host.user)
    mp = Participant.objects.get(user=member.user)
    return host, member, room_id, hp, mp


def test_sequence_is_gap_free_and_history_pages_newest_last(room_with_people):
    host, _, room_id, hp, _ = room_with_people
    for i in range(7):
        chat_post(sender=hp, text=f"m{i}")
    r = host.get(f"/api/v1/rooms/{room_id}/chat?limit=3")
    page = r.json()
    assert [m["seq"] for m in page["results"]] == [5, 6, 7]
    assert page["has_more"] is True and page["head_seq"] == 7 and page["next"] is None
    older = host.get(page["previous"]).json()
    assert [m["text"] for m in older["results"]] == ["m1", "m2", "m3"]
    oldest = host.get(older["previous"]).json()
    assert [m["seq"] for m in oldest["results"]] == [1] and oldest["has_more"] is False
    after = host.get(f"/api/v1/rooms/{room_id}/chat?after=2&limit=2").json()
    assert [m["seq"] for m in after["results"]] == [3, 4] and after["has_more"] is True
    rest = host.get(after["next"]).json()
    assert [m["seq"] for m in rest["results"]] == [5, 6]


def test_only_admitted_people_read_history(room_with_people, auth_client, api_client):
    _, _, room_id, _, _ = room_with_people
    r = auth_client().get(f"/api/v1/rooms/{room_id}/chat")
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_admitted"
    assert api_client.get(f"/api/v1/rooms/{room_id}/chat").status_code == 401


def test_guest_reads_history_with_grant(room_with_people, api_client):
    _, _, room_id, hp, _ = room_with_people
    chat_post(sender=hp, text="welcome")
    grant = api_client.post(f"/api/v1/rooms/{room_id}/join", {"display_name": "G"}, format="json").json()
    r = api_client.get(f"/api/v1/rooms/{room_id}/chat", HTTP_AUTHORIZATION=f"Grant {grant['token']}")
    assert r.status_code == 200 and r.json()["results"][0]["text"] == "welcome"
    bad = api_client.get(f"/api/v1/rooms/{room_id}/chat", HTTP_AUTHORIZATION="Grant forged")
    assert bad.status_code == 401


def test_private_messages_visible_to_sender_and_recipient_only(room_with_people, auth_client):
    host, member, room_id, hp, mp = room_with_people
    third = auth_client()
    third.post(f"/api/v1/rooms/{room_id}/join", {}, format="json")
    chat_post(sender=hp, text="psst", recipient_id=mp.public_id)
    chat_post(sender=hp, text="hello all")
    assert [m["text"] for m in member.get(f"/api/v1/rooms/{room_id}/chat").json()["results"]] == ["psst", "hello all"]
    assert [m["text"] for m in host.get(f"/api/v1/rooms/{room_id}/chat").json()["results"]] == ["psst", "hello all"]
    assert [m["text"] for m in third.get(f"/api/v1/rooms/{room_id}/chat").json()["results"]] == ["hello all"]


def test_html_is_stored_verbatim_as_text(room_with_people):
    host, _, room_id, hp, _ = room_with_people
    chat_post(sender=hp, text="<script>alert(1)</script>")
    assert host.get(f"/api/v1/rooms/{room_id}/chat").json()["results"][0]["text"] == "<script>alert(1)</script>"


def test_client_id_makes_sends_idempotent(room_with_people):
    _, _, _, hp, _ = room_with_people
    first, created = chat_post(sender=hp, text="once", client_id="c-1")
    again, created_again = chat_post(sender=hp, text="once", client_id="c-1")
    assert created and not created_again and first.pk == again.pk and first.seq == again.seq


@pytest.mark.parametrize(
    "text,code", [("", "empty_message"), ("   ", "empty_message"), ("x" * 4001, "message_too_long")]
)
def test_bad_messages_are_refused(room_with_people, text, code):
    _, _, _, hp, _ = room_with_people
    with pytest.raises(DomainError) as exc:
        chat_post(sender=hp, text=text)
    assert exc.value.code == code


@pytest.mark.parametrize("query", ["after=-1", "before=0", "limit=0", "limit=1000", "after=1&before=5", "after=abc"])
def test_bad_cursors_are_400(room_with_people, query):
    host, _, room_id, _, _ = room_with_people
    r = host.get(f"/api/v1/rooms/{room_id}/chat?{query}")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid"


def test_waiting_participant_cannot_chat(auth_client):
    host = auth_client()
    room_id = host.post("/api/v1/rooms", {"name": "lobby", "waiting_room": True}, format="json").json()["roomId"]
    waiter = auth_client()
    waiter.post(f"/api/v1/rooms/{room_id}/join", {}, format="json")
    wp = Participant.objects.get(user=waiter.user)
    with pytest.raises(DomainError) as exc:
        chat_post(sender=wp, text="let me in")
    assert exc.value.code == "not_admitted"
    assert waiter.get(f"/api/v1/rooms/{room_id}/chat").status_code == 403
    _ = services
