"""Rate limits (issue 18 item 1): room passwords, sign-in (web form and REST token), guest joins, lobby floods.

Before the fix: 40 wrong room passwords → 40 x 403 (each hashed), 40 wrong web sign-ins → 40 x 200,
60 guest joins of a waiting room in 6 s → 60 "is waiting" toasts.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client

from rooms import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def host(user_factory: Any) -> Any:
    return user_factory("hostess")


def _room(host: Any, **settings: Any) -> str:
    return services.room_create(host=host, name="Board", **settings).public_id


def _join(client: Any, room_id: str, **body: Any) -> Any:
    return client.post(f"/api/v1/rooms/{room_id}/join", body, format="json")


def _count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = PBKDF2PasswordHasher.verify

    def verify(self: Any, password: str, encoded: str) -> bool:
        calls.append(1)
        return original(self, password, encoded)

    monkeypatch.setattr(PBKDF2PasswordHasher, "verify", verify)
    return calls


def test_room_password_guesses_are_throttled_per_address_without_hashing(api_client, host, monkeypatch, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "guest_join_address": ""}
    room_id = _room(host, password="the-real-one")
    hashes = _count_hashes(monkeypatch)
    codes = [_join(api_client, room_id, display_name="x", password=f"g{n}").status_code for n in range(15)]
    assert codes[:10] == [403] * 10 and codes[10:] == [429] * 5
    assert len(hashes) == 10  # the throttled five were never hashed
    r = _join(api_client, room_id, display_name="x", password="the-real-one")
    assert r.status_code == 429 and len(hashes) == 10
    body = r.json()["error"]
    assert body["code"] == "throttled" and body["details"]["scope"] == "room_password_address"
    assert 1 <= int(r["Retry-After"]) <= 60 and body["details"]["retry_after_seconds"] == int(r["Retry-After"])


def test_room_password_guesses_are_throttled_per_room_across_addresses(api_client, host, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "room_password_room": "5/m"}
    room_id = _room(host, password="the-real-one")
    other_room = _room(host, password="the-real-one")
    for n in range(5):
        r = api_client.post(
            f"/api/v1/rooms/{room_id}/join",
            {"display_name": "x", "password": "no"},
            format="json",
            REMOTE_ADDR=f"192.0.2.{n + 1}",
        )
        assert r.status_code == 403
    r = _join(api_client, room_id, display_name="x", password="the-real-one")
    assert r.status_code == 429 and r.json()["error"]["details"]["scope"] == "room_password_room"
    # Another room is not affected, and a join without a password is not a password attempt.
    assert _join(api_client, other_room, display_name="y", password="the-real-one").status_code == 200
    assert _join(api_client, room_id, display_name="x").json()["error"]["code"] == "room_password_required"


def test_right_password_does_not_count(api_client, host):
    room_id = _room(host, password="the-real-one")
    codes = {_join(api_client, room_id, display_name=f"p{n}", password="the-real-one").status_code for n in range(12)}
    assert codes == {200}


def test_guest_joins_are_throttled_per_address_and_per_room(api_client, host, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "guest_join_address": "5/m", "guest_join_room": "8/m"}
    room_id = _room(host)
    codes = [_join(api_client, room_id, display_name=f"g{n}").status_code for n in range(6)]
    assert codes == [200] * 5 + [429]
    codes = [
        api_client.post(
            f"/api/v1/rooms/{room_id}/join", {"display_name": "z"}, format="json", REMOTE_ADDR=f"198.51.100.{n}"
        ).status_code
        for n in range(1, 6)
    ]
    assert codes == [200, 200, 200, 429, 429]  # 8 per room: 5 + 3


def test_signed_in_joins_are_not_guest_throttled(auth_client, host, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "guest_join_address": "1/m"}
    room_id = _room(host)
    for _ in range(3):
        member = auth_client()
        assert _join(member, room_id).status_code == 200


def test_lobby_requests_are_throttled_per_room(api_client, auth_client, host, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "lobby_room": "4/m"}
    room_id = _room(host, waiting_room=True)
    codes = [
        api_client.post(
            f"/api/v1/rooms/{room_id}/join", {"display_name": "w"}, format="json", REMOTE_ADDR=f"203.0.113.{n}"
        ).status_code
        for n in range(1, 7)
    ]
    assert codes == [200] * 4 + [429, 429]
    host_client = auth_client(host)
    assert _join(host_client, room_id).status_code == 200  # the host is never a lobby request


def test_web_login_is_throttled_per_address_and_account(user_factory, monkeypatch):
    user_factory("alan", password="enigma-machine-1")
    client = Client()
    codes = [client.post("/accounts/login/", {"username": "alan", "password": f"no{n}"}).status_code for n in range(12)]
    assert codes == [200] * 10 + [429, 429]  # 10/m per account
    hashes = _count_hashes(monkeypatch)
    r = client.post("/accounts/login/", {"username": "alan", "password": "enigma-machine-1"})
    assert r.status_code == 429 and int(r["Retry-After"]) >= 1 and hashes == []
    assert b"Too many failed sign-ins" in r.content
    # Another account from another address still signs in.
    user_factory("grace", password="cobol-compiler-1")
    r = Client(REMOTE_ADDR="192.0.2.50").post("/accounts/login/", {"username": "grace", "password": "cobol-compiler-1"})
    assert r.status_code == 302


def test_web_login_is_throttled_per_address_for_unknown_accounts():
    client = Client()
    codes = [
        client.post("/accounts/login/", {"username": f"nobody{n}", "password": "x"}).status_code for n in range(22)
    ]
    assert codes == [200] * 20 + [429, 429]  # 20/m per address, whatever the names


def test_rest_token_is_throttled_per_account(api_client, user_factory, monkeypatch):
    user_factory("alan", password="enigma-machine-1")
    codes = [
        api_client.post(
            "/api/v1/auth/token", {"username": "alan", "password": "no"}, format="json", REMOTE_ADDR=f"192.0.2.{n}"
        ).status_code
        for n in range(1, 13)
    ]
    assert codes == [401] * 10 + [429, 429]
    hashes = _count_hashes(monkeypatch)
    r = api_client.post("/api/v1/auth/token", {"username": "alan", "password": "enigma-machine-1"}, format="json")
    assert r.status_code == 429 and r.json()["error"]["code"] == "throttled" and hashes == []
    assert int(r["Retry-After"]) >= 1


def test_rest_token_ignores_forged_forwarded_for(api_client, user_factory, settings):
    """Before: a fresh X-Forwarded-For per request bypassed the 30/min token throttle."""
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "auth_address": "5/m"}
    codes = [
        api_client.post(
            "/api/v1/auth/token",
            {"username": f"u{n}", "password": "no"},
            format="json",
            HTTP_X_FORWARDED_FOR=f"10.9.{n}.1",
        ).status_code
        for n in range(7)
    ]
    assert codes == [401] * 5 + [429, 429]
