"""Production refuses weak configuration (issue 18 item 4), the media server outside --dev likewise.

Before: CONFERENCE_ENV=production started with DJANGO_SECRET_KEY=a, MEDIA_SECRET=a, DJANGO_DEBUG=1 and
DJANGO_ALLOWED_HOSTS=*; the media server outside --dev accepted MEDIA_SECRET=dev-media-secret.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from media_server.config import ConfigError, parse_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOOD = {
    "CONFERENCE_ENV": "production",
    "DJANGO_SECRET_KEY": "k" * 50,
    "DJANGO_ALLOWED_HOSTS": "meet.example.org",
    "MEDIA_SECRET": "m" * 40,
}


def _start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import django; django.setup(); from django.conf import settings as s; print(s.DEBUG)"
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CONFERENCE_ENV"}}
    full = {**clean, "DJANGO_SETTINGS_MODULE": "conference.settings", **env}
    return subprocess.run([sys.executable, "-c", code], env=full, cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("change", "named", "advice"),
    [
        ({"DJANGO_SECRET_KEY": "a"}, "DJANGO_SECRET_KEY is shorter than 32", "secrets.token_urlsafe"),
        ({"MEDIA_SECRET": "a"}, "MEDIA_SECRET is shorter than 32", "secrets.token_urlsafe"),
        ({"MEDIA_SECRET": "dev-media-secret"}, "MEDIA_SECRET is a development value", "generate a new one"),
        (
            {"DJANGO_SECRET_KEY": "django-insecure-conference-local-development-only"},
            "DJANGO_SECRET_KEY is a development value",
            "generate a new one",
        ),
        ({"DJANGO_DEBUG": "1"}, "DJANGO_DEBUG is on", "unset it"),
        ({"DJANGO_ALLOWED_HOSTS": "*"}, "DJANGO_ALLOWED_HOSTS contains a wildcard", "host names"),
        ({"DJANGO_ALLOWED_HOSTS": "meet.example.org,*"}, "DJANGO_ALLOWED_HOSTS contains a wildcard", "host names"),
        ({"DJANGO_ALLOWED_HOSTS": ""}, "DJANGO_ALLOWED_HOSTS is not set", "host names"),
    ],
)
def test_production_refuses_weak_settings_naming_the_variable(change, named, advice):
    r = _start({**GOOD, **change})
    assert r.returncode != 0
    assert "ImproperlyConfigured" in r.stderr and named in r.stderr and advice in r.stderr


def test_production_lists_every_problem_at_once():
    r = _start({**GOOD, "DJANGO_DEBUG": "1", "MEDIA_SECRET": "short"})
    assert "DJANGO_DEBUG is on" in r.stderr and "MEDIA_SECRET is shorter" in r.stderr


def test_production_starts_with_strong_settings():
    r = _start(GOOD)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("dev-media-secret", "MEDIA_SECRET is a development value"),
        ("django-insecure-conference-local-development-only", "MEDIA_SECRET is a development value"),
        ("a", "MEDIA_SECRET is shorter than 32"),
        ("x" * 31, "MEDIA_SECRET is shorter than 32"),
    ],
)
def test_media_server_refuses_weak_secret_outside_dev(secret, message):
    with pytest.raises(ConfigError, match=message):
        parse_config([], env={"MEDIA_SECRET": secret})
    assert parse_config(["--dev"], env={"MEDIA_SECRET": secret}).secret == secret  # --dev: anything goes
    assert parse_config([], env={"MEDIA_SECRET": "x" * 32}).secret == "x" * 32


def test_media_server_process_exits_with_the_reason():
    env = {**os.environ, "MEDIA_SECRET": "dev-media-secret", "MEDIA_CONTROL_PORT": "0"}
    env.pop("MEDIA_DEV", None)
    r = subprocess.run(
        [sys.executable, "-m", "media_server"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode != 0 and "MEDIA_SECRET is a development value" in (r.stderr + r.stdout)
