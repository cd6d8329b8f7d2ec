"""Security headers (issue 18 item 5): CSP without inline script, Permissions-Policy, HSTS, check --deploy.

Before: no Strict-Transport-Security (neither Django nor deploy/nginx), no Content-Security-Policy,
check --deploy warned W004/W008; /api/docs/ loaded Swagger UI from a CDN (blank offline, broken by a CSP).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from rooms import services

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"


def _directives(header: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in header.split(";")) if d}


@pytest.mark.django_db
def test_pages_send_a_csp_without_inline_script_and_a_permissions_policy(user_factory):
    host = user_factory("hostess")
    room = services.room_create(host=host, name="Board", e2ee=True)
    client = Client()
    for path in ("/", f"/join/{room.public_id}", "/accounts/login/"):
        r = client.get(path)
        assert r.status_code == 200
        csp = _directives(r["Content-Security-Policy"])
        # call.js, its e2ee worker; the call page alone may compile WebAssembly (background effects, RNNoise)
        wasm = ["'wasm-unsafe-eval'"] if path.startswith("/join/") else []
        assert csp["script-src"] == ["'self'", *wasm] and csp["worker-src"] == ["'self'"]
        assert csp["default-src"] == ["'self'"] and csp["object-src"] == ["'none'"]
        assert csp["frame-ancestors"] == ["'none'"] and "'unsafe-inline'" not in csp["style-src"]
        policy = r["Permissions-Policy"]
        for feature in ("camera", "microphone", "display-capture"):
            assert f"{feature}=(self)" in policy
        assert "geolocation=()" in policy


def test_templates_have_no_inline_script_or_event_handlers():
    """Every <script> either loads a file (src) or is a JSON data block (json_script); no on*= attributes."""
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag, (template, tag)
        assert not re.search(r"\son[a-z]+\s*=", text), template


@pytest.mark.django_db
def test_api_docs_are_served_from_our_static_files():
    client = Client()
    for path in ("/api/docs/", "/api/redoc/"):
        r = client.get(path)
        assert r.status_code == 200
        scripts = re.findall(r'<script src="([^"]+)"', r.content.decode())
        assert scripts and all(src.startswith("/") for src in scripts), scripts  # no CDN
        assert "<script>" not in r.content.decode()  # no inline script: the CSP applies here too
        assert _directives(r["Content-Security-Policy"])["script-src"] == ["'self'"]


def _production_env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CONFERENCE_ENV"}}
    return {
        **clean,
        "DJANGO_SETTINGS_MODULE": "conference.settings",
        "CONFERENCE_ENV": "production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
        "MEDIA_SECRET": secrets.token_urlsafe(48),
        "DJANGO_ALLOWED_HOSTS": "meet.example.org",
    }


def test_check_deploy_is_clean_with_the_documented_production_settings():
    r = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no issues" in r.stdout


def test_production_sends_hsts_and_redirects_to_https_except_internal_routes():
    code = (
        "import django; django.setup(); from django.test import Client; c = Client(); "
        "r = c.get('/api/v1/rooms', secure=True, HTTP_HOST='meet.example.org'); "
        "print(r['Strict-Transport-Security'].replace(' ', '')); "
        "print(c.get('/api/v1/rooms', HTTP_HOST='meet.example.org').status_code); "
        "print(c.post('/internal/media/v1/events', HTTP_HOST='meet.example.org').status_code)"
    )
    env = {**_production_env(), "SQLITE_PATH": ":memory:"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    hsts, plain, internal = r.stdout.strip().split("\n")[-3:]
    assert "max-age=31536000" in hsts and "includeSubDomains" in hsts
    assert plain == "301"
    assert internal == "401"  # reached the view (no media secret), not redirected


def test_nginx_sends_hsts_everywhere():
    conf = (ROOT / "deploy" / "nginx" / "conference.conf").read_text()
    tls_server = conf.split("listen 443", 1)[1].split("\nserver {", 1)[0]
    assert tls_server.count('add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;') == 2
