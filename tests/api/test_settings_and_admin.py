"""Settings from the environment, production refusals, the admin."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rooms import services

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def settings_in(env: dict[str, str], expr: str) -> subprocess.CompletedProcess[str]:
    code = f"import django, os; os.environ['DJANGO_SETTINGS_MODULE']='conference.settings'; django.setup(); from django.conf import settings as s; print({expr})"
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CONFERENCE_ENV"}}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, cwd=ROOT, capture_output=True, text=True)


def test_embedded_defaults_need_no_services():
    r = settings_in(
        {},
        "s.DATABASES['default']['ENGINE'], s.CHANNEL_LAYERS['default']['BACKEND'], s.CELERY_BROKER_URL, s.STORAGES['default']['BACKEND']",
    )
    assert r.returncode == 0, r.stderr
    assert "sqlite3" in r.stdout and "InMemoryChannelLayer" in r.stdout and "filesystem://" in r.stdout
    assert "FileSystemStorage" in r.stdout


def test_urls_switch_to_postgres_and_redis():
    r = settings_in(
        {"DATABASE_URL": "postgres://u@db:5432/x", "REDIS_URL": "redis://cache:6379/0"},
        "s.DATABASES['default']['ENGINE'], s.CHANNEL_LAYERS['default']['BACKEND'], s.CELERY_BROKER_URL, s.CACHES['default']['BACKEND']",
    )
    assert r.returncode == 0, r.stderr
    assert "postgresql" in r.stdout and "RedisChannelLayer" in r.stdout and "redis://cache:6379/0" in r.stdout
    assert "RedisCache" in r.stdout


def test_s3_storage_when_bucket_configured():
    r = settings_in({"S3_BUCKET": "recs", "S3_ENDPOINT_URL": "http://127.0.0.1:9"}, "s.STORAGES['default']['BACKEND']")
    assert "S3Storage" in r.stdout, r.stderr


@pytest.mark.parametrize(
    "env",
    [
        {"CONFERENCE_ENV": "production"},
        {"CONFERENCE_ENV": "production", "DJANGO_SECRET_KEY": "k" * 50, "MEDIA_SECRET": "m" * 30},
        {"CONFERENCE_ENV": "production", "DJANGO_ALLOWED_HOSTS": "a.example", "MEDIA_SECRET": "m" * 30},
        {
            "CONFERENCE_ENV": "production",
            "DJANGO_SECRET_KEY": "django-insecure-conference-local-development-only",
            "DJANGO_ALLOWED_HOSTS": "a.example",
            "MEDIA_SECRET": "m" * 30,
        },
    ],
)
def test_production_refuses_to_start_without_secrets_and_hosts(env):
    r = settings_in(env, "s.SECRET_KEY")
    assert r.returncode != 0 and "ImproperlyConfigured" in r.stderr


def test_production_starts_when_configured():
    r = settings_in(
        {
            "CONFERENCE_ENV": "production",
            "DJANGO_SECRET_KEY": "k" * 50,
            "DJANGO_ALLOWED_HOSTS": "meet.example.org",
            "MEDIA_SECRET": "m" * 40,
        },
        "s.DEBUG, s.ALLOWED_HOSTS",
    )
    assert r.returncode == 0, r.stderr
    assert "False" in r.stdout and "meet.example.org" in r.stdout


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model", ["rooms/room", "rooms/participant", "chat/message", "recordings/recording", "auth/user"]
)
def test_admin_changelists_work_with_search_and_filters(admin_client, admin_user, model):
    room = services.room_create(host=admin_user, name="Board")
    services.participant_join(room_id=room.public_id, user=admin_user)
    r = admin_client.get(f"/admin/{model}/?q=Board")
    assert r.status_code == 200
    assert admin_client.get(f"/admin/{model}/").status_code == 200


@pytest.mark.django_db
def test_admin_room_page_shows_audit_fields_read_only(admin_client, admin_user):
    room = services.room_create(host=admin_user, name="Board")
    html = admin_client.get(f"/admin/rooms/room/{room.pk}/change/").content.decode()
    assert 'name="name"' in html
    assert (
        'name="public_id"' not in html
        and 'name="created_at"' not in html
        and "chat_seq" in html.lower().replace(" ", "_")
    )


def test_schema_and_docs_are_served(client):
    r = client.get("/api/schema/?format=json")
    assert r.status_code == 200
    assert "/api/v1/rooms/{room_id}/join" in r.json()["paths"]
    assert client.get("/api/docs/").status_code == 200
