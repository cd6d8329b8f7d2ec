"""Time-limited TURN credentials (coturn use-auth-secret): format, both implementations, grant, snapshot, config."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
import sys
import time

import pytest

from conference.turn import ice_servers_for, turn_credentials
from media_server import turn as media_turn
from media_server.config import ConfigError, IceServer, parse_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TURN_URLS = ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349?transport=tcp"]


def test_credentials_follow_the_turn_rest_api_convention():
    creds = turn_credentials(secret="north", user="alice", ttl=3600, now=1_700_000_000.9)
    assert creds["username"] == "1700003600:alice"
    # printf %s 1700003600:alice | openssl dgst -sha1 -hmac north -binary | base64
    assert creds["credential"] == "wjwSXO2ch1B6VaLTLMy2Avn5O9o="
    expected = hmac.new(b"north", b"1700003600:alice", hashlib.sha1).digest()
    assert base64.b64decode(creds["credential"]) == expected


@pytest.mark.parametrize(
    ("secret", "user", "ttl", "now"),
    [
        ("s3cret", "p-abc123", 60, 1_000.0),
        ("ünïcode-secret", "media-host_8790", 43_200, 1_750_000_123.5),
        ("x", "", 0, 0),
    ],
)
def test_web_and_media_server_mint_identical_credentials(secret, user, ttl, now):
    web = turn_credentials(secret=secret, user=user, ttl=ttl, now=now)
    assert media_turn.turn_credentials(secret=secret, user=user, ttl=ttl, now=now) == (
        web["username"],
        web["credential"],
    )


@pytest.mark.parametrize("mint", [turn_credentials, media_turn.turn_credentials])
def test_credentials_refuse_a_colon_in_the_user_and_an_empty_secret(mint):
    with pytest.raises(ValueError, match="':'"):
        mint(secret="s", user="a:b", ttl=1, now=0)
    with pytest.raises(ValueError, match="secret"):
        mint(secret="", user="a", ttl=1, now=0)


def test_ice_servers_are_the_static_ones_without_turn(settings):
    settings.ICE_SERVERS = [{"urls": "stun:stun.example.org"}]
    settings.TURN_SECRET, settings.TURN_URLS = "", TURN_URLS  # URLs without a secret: no TURN entry
    assert ice_servers_for(user="p1") == [{"urls": "stun:stun.example.org"}]


def test_ice_servers_add_a_turn_entry_with_fresh_credentials(settings):
    settings.ICE_SERVERS = [{"urls": "stun:stun.example.org"}]
    settings.TURN_SECRET, settings.TURN_URLS, settings.TURN_TTL_SECONDS = "shh", TURN_URLS, 600
    servers = ice_servers_for(user="p1", now=1_000)
    assert servers == [
        {"urls": "stun:stun.example.org"},
        {"urls": TURN_URLS, **turn_credentials(secret="shh", user="p1", ttl=600, now=1_000)},
    ]
    assert servers[1]["username"] == "1600:p1"
    assert settings.ICE_SERVERS == [{"urls": "stun:stun.example.org"}]  # not mutated


@pytest.mark.django_db
def test_join_grant_and_room_snapshot_hand_out_fresh_turn_credentials(settings, auth_client):
    from rooms.models import Participant
    from rooms.presence import room_snapshot

    settings.ICE_SERVERS = []
    settings.TURN_SECRET, settings.TURN_URLS, settings.TURN_TTL_SECONDS = "shh", TURN_URLS, 600
    host = auth_client()
    room_id = host.post("/api/v1/rooms", {"name": "Behind a NAT"}, format="json").json()["roomId"]
    before = int(time.time())
    grant = host.post(f"/api/v1/rooms/{room_id}/join", {}, format="json").json()
    (entry,) = grant["ice_servers"]
    expiry, user = entry["username"].split(":")
    assert user == grant["participantId"] and entry["urls"] == TURN_URLS
    assert before + 600 <= int(expiry) <= int(time.time()) + 600
    assert entry["credential"] == turn_credentials(secret="shh", user=user, ttl=0, now=int(expiry))["credential"]

    participant = Participant.objects.get(public_id=grant["participantId"])
    (snap_entry,) = room_snapshot(participant=participant)["ice_servers"]
    assert snap_entry["username"].endswith(":" + grant["participantId"]) and snap_entry["urls"] == TURN_URLS


def _settings_in(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import django; django.setup(); from django.conf import settings as s; print(s.TURN_URLS)"
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CONFERENCE_ENV"}}
    full = {**clean, "DJANGO_SETTINGS_MODULE": "conference.settings", **env}
    return subprocess.run([sys.executable, "-c", code], env=full, cwd=ROOT, capture_output=True, text=True)


def test_production_refuses_turn_urls_without_a_secret():
    prod = {
        "CONFERENCE_ENV": "production",
        "DJANGO_SECRET_KEY": "k" * 50,
        "DJANGO_ALLOWED_HOSTS": "meet.example.org",
        "MEDIA_SECRET": "m" * 40,
        "TURN_URLS": ",".join(TURN_URLS),
    }
    r = _settings_in(prod)
    assert r.returncode != 0 and "TURN_SECRET" in r.stderr
    r = _settings_in({**prod, "TURN_SECRET": "t" * 32})
    assert r.returncode == 0, r.stderr
    assert "turns:turn.example.org:5349" in r.stdout


def test_media_server_config_turn():
    assert parse_config(["--dev"], env={}).turn_urls == ()
    with pytest.raises(ConfigError, match="MEDIA_TURN_SECRET"):
        parse_config(["--dev"], env={"MEDIA_TURN_URLS": "turn:t.example:3478"})
    with pytest.raises(ConfigError, match="not a turn"):
        parse_config(["--dev"], env={"MEDIA_TURN_SECRET": "s", "MEDIA_TURN_URLS": "stun:t.example:3478"})
    cfg = parse_config(
        ["--dev", "--node-id", "sfu1:8790"],
        env={
            "MEDIA_TURN_SECRET": "shh",
            "MEDIA_TURN_URLS": "turn:t.example:3478?transport=udp, turn:t.example:3478?transport=tcp",
            "MEDIA_TURN_TTL_SECONDS": "600",
            "MEDIA_ICE_SERVERS": '[{"urls": "stun:s.example"}]',
        },
    )
    assert cfg.turn_urls == ("turn:t.example:3478?transport=udp", "turn:t.example:3478?transport=tcp")
    stun, turn = media_turn.ice_servers(cfg, now=1_000)
    assert stun == IceServer(urls=("stun:s.example",))
    assert turn.urls == cfg.turn_urls and turn.username == "1600:media-sfu1_8790"
    assert turn.credential == turn_credentials(secret="shh", user="media-sfu1_8790", ttl=600, now=1_000)["credential"]
    no_turn = parse_config(["--dev"], env={"MEDIA_ICE_SERVERS": '[{"urls": "stun:s.example"}]'})
    assert media_turn.ice_servers(no_turn) == no_turn.ice_servers
