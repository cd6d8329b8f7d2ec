"""Accounts: registration, JWT, web login/signup."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_register_returns_tokens_and_creates_user(api_client):
    r = api_client.post(
        "/api/v1/auth/register", {"username": "ada", "password": "analytical-engine-1843"}, format="json"
    )
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["username"] == "ada" and body["access"] and body["refresh"]
    me = api_client.get("/api/v1/rooms", HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    assert me.status_code == 200 and me.json() == []


def test_register_rejects_taken_username_and_weak_password(api_client, user_factory):
    user_factory("grace")
    r = api_client.post(
        "/api/v1/auth/register", {"username": "GRACE", "password": "analytical-engine-1843"}, format="json"
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "username_taken"
    r = api_client.post("/api/v1/auth/register", {"username": "linus", "password": "123"}, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "weak_password"
    assert r.json()["error"]["details"]["reasons"]


def test_token_pair_and_refresh(api_client, user_factory):
    user_factory("alan", password="enigma-machine-1")
    r = api_client.post("/api/v1/auth/token", {"username": "alan", "password": "enigma-machine-1"}, format="json")
    assert r.status_code == 200
    refresh = r.json()["refresh"]
    r2 = api_client.post("/api/v1/auth/token/refresh", {"refresh": refresh}, format="json")
    assert r2.status_code == 200 and r2.json()["access"]


def test_bad_credentials_are_json_401(api_client, user_factory):
    user_factory("alan", password="enigma-machine-1")
    r = api_client.post("/api/v1/auth/token", {"username": "alan", "password": "nope"}, format="json")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "authentication_failed"


def test_unauthenticated_api_is_json_401(api_client):
    r = api_client.get("/api/v1/rooms")
    assert r.status_code == 401
    assert set(r.json()["error"]) == {"code", "message", "details"}


def test_malformed_json_is_json_400(api_client):
    r = api_client.post("/api/v1/auth/register", data="{nope", content_type="application/json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"


def test_unknown_api_path_is_json_404(client):
    r = client.get("/api/v1/does-not-exist")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_web_signup_login_logout(client):
    r = client.post(
        "/accounts/signup/",
        {"username": "hedy", "password1": "frequency-hopping-42", "password2": "frequency-hopping-42"},
    )
    assert r.status_code == 302
    assert client.get("/").context["user"].username == "hedy"
    client.post("/accounts/logout/")
    assert not client.get("/").context["user"].is_authenticated
    r = client.post("/accounts/login/", {"username": "hedy", "password": "frequency-hopping-42"})
    assert r.status_code == 302
    assert client.get("/").context["user"].is_authenticated


def test_login_page_has_standard_fields(client):
    html = client.get("/accounts/login/").content.decode()
    assert 'name="username"' in html and 'name="password"' in html
