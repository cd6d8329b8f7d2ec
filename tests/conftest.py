"""Shared fixtures. Browser and service tests always run in CI (CI=true)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _run_tag() -> str:
    """This test process's tag: every Redis key it writes starts with it (see redis_test_prefix), and its session
    sweeps it at the end (``_redis_sweep``).

    Kept in the environment so that a second import of this module (``from tests.conftest import …``) agrees, but
    only for the process that made it (the pid is in the tag): child processes inherit the environment, and the
    pytest-xdist workers are children of the controller, which imports this module first. With an inherited tag
    both workers wrote under one tag, and the first worker to finish swept the other's live keys (channel-layer
    groups of a running test: its sockets then missed every room event).
    """
    tag = os.environ.get("CONFERENCE_TEST_RUN", "")
    if not tag.startswith(f"test-{os.getpid()}-"):
        tag = os.environ["CONFERENCE_TEST_RUN"] = f"test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return tag


RUN_TAG = _run_tag()


def redis_test_url() -> str:
    """The Redis database tests use: REDIS_URL's server (else 127.0.0.1:6379), database REDIS_TEST_DB (default 15).

    Never the application's database (REDIS_URL's own number, 0 by default); and within this database a test only
    writes keys under its redis_test_prefix() and deletes them, so data it did not create is never touched.
    """
    base = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    server = base.split("?", 1)[0]
    if server.count("/") > 2:  # redis://host:port/<db>
        server = server.rsplit("/", 1)[0]
    return f"{server}/{int(os.environ.get('REDIS_TEST_DB', '15'))}"


def redis_test_prefix(name: str) -> str:
    """A fresh key prefix for one test (or process) under this run's tag: ``test-<pid>-<run>-<name>-<random>``."""
    return f"{RUN_TAG}-{name}-{uuid.uuid4().hex[:8]}"


def redis_delete_prefix(prefix: str, url: str | None = None) -> int:
    """Delete every key starting with ``prefix`` in the test database; returns how many there were."""
    import redis

    client = redis.Redis.from_url(url or redis_test_url(), socket_connect_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


def _redis_reachable() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(redis_test_url(), socket_connect_timeout=1).ping())
    except Exception:
        return False


def _e2e_missing() -> str | None:
    if os.geteuid() != 0:
        return "root (for a network namespace)"
    if not shutil.which("chromium"):
        return "Debian's chromium"
    if shutil.which("ip") is None:
        return "iproute2 (ip)"
    return None


def _firefox_missing() -> str | None:
    from pathlib import Path

    if not Path("/usr/bin/firefox-esr").exists():
        return "Debian's firefox-esr"
    if not shutil.which("node"):
        return "Node (Debian's nodejs)"
    if not (Path(__file__).parent / "e2e" / "firefox" / "node_modules" / "puppeteer-core").exists():
        return "puppeteer-core (npm ci in tests/e2e/firefox)"
    return None


REQUIREMENTS = {
    "e2e": _e2e_missing,
    "firefox": _firefox_missing,
    "redis": lambda: None if _redis_reachable() else "a Redis server (REDIS_URL or 127.0.0.1:6379)",
    "ffmpeg": lambda: None if shutil.which("ffmpeg") else "ffmpeg (apt-get install ffmpeg)",
    "nginx": lambda: None if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx") else "Debian's nginx",
    "coturn": lambda: None if shutil.which("turnserver") else "Debian's coturn",
    "native": lambda: None if importlib.util.find_spec("_sfu_native") else "the C fast path (gcc, then make venv)",
    "iptables": lambda: None if shutil.which("iptables") else "Debian's iptables (random loss in a namespace)",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Outside CI, deselect tests whose requirement (browser, Redis, ffmpeg) is missing,
    with a note. CI installs and runs everything: there, a missing requirement fails the test.

    Browser tests run last: Playwright's sync API keeps an event loop running in
    the main thread until its session fixture ends, which async tests cannot share.
    """
    items.sort(key=lambda item: bool(item.get_closest_marker("e2e")))  # stable: keeps each group's order
    if IN_CI:
        return
    missing: dict[str, str | None] = {}
    kept, dropped = [], []
    for item in items:
        reason = None
        for marker, check in REQUIREMENTS.items():
            if item.get_closest_marker(marker):
                if marker not in missing:
                    missing[marker] = check()
                reason = reason or missing[marker]
        (dropped if reason else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
        needs = sorted({v for v in missing.values() if v})
        print(f"\n{len(dropped)} tests deselected here, needing {', '.join(needs)}; CI always runs them.")


def pytest_configure(config: pytest.Config) -> None:
    """With REDIS_URL set (CI), the test process's channel layer, cache and Celery producer use the test database
    under this run's tag instead of the application's keys (``conference:…`` in REDIS_URL's database)."""
    from django.conf import settings

    if not getattr(settings, "REDIS_URL", ""):
        return
    url = redis_test_url()
    layer = settings.CHANNEL_LAYERS["default"].get("CONFIG", {})
    for host in layer.get("hosts", []):
        host["address"] = url
    layer["prefix"] = f"{RUN_TAG}-layer"
    settings.CACHES["default"].update(LOCATION=url, KEY_PREFIX=f"{RUN_TAG}-cache")
    from conference.celery import app

    app.conf.broker_url = url
    app.conf.broker_transport_options = {"global_keyprefix": f"{RUN_TAG}-celery-"}


@pytest.fixture(scope="session", autouse=True)
def _redis_sweep() -> Iterator[None]:
    """Deletes whatever this run left under its tag in the test database (tests delete their own keys; this only
    catches what a crashed test or process left behind) and says so, because such a leak is a bug."""
    yield
    if not _redis_reachable():
        return
    left = redis_delete_prefix(RUN_TAG)
    if left:
        print(f"\nRedis: deleted {left} keys this run left under {RUN_TAG}* in {redis_test_url()}")


@pytest.fixture
def eager() -> Iterator[None]:
    """Celery tasks run in the calling process when queued (recordings, meeting invitations)."""
    from conference.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


@pytest.fixture
def user_factory(db: Any) -> Any:
    from django.contrib.auth import get_user_model

    User = get_user_model()
    counter = {"n": 0}

    def make(username: str | None = None, password: str = "correct-horse-9") -> Any:
        counter["n"] += 1
        return User.objects.create_user(username=username or f"user{counter['n']}", password=password)

    return make


@pytest.fixture
def api_client() -> Any:
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def auth_client(user_factory: Any) -> Any:
    """An APIClient authenticated with a real JWT, and its user as `.user`."""
    from rest_framework.test import APIClient
    from rest_framework_simplejwt.tokens import RefreshToken

    def make(user: Any = None) -> Any:
        user = user or user_factory()
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
        client.user = user
        return client

    return make


MEDIA_EVENTS_PATH = "/internal/media/v1/events"


def media_events_request(body: Any) -> tuple[str, dict[str, str]]:
    """A media event batch as the media server sends it: the JSON text and its signed ``Authorization`` header
    (``media_server/signing.py``, docs/protocol.md §2). Post the text as is: the signature covers its bytes."""
    from django.conf import settings

    from media_server import signing

    text = body if isinstance(body, str) else json.dumps(body)
    return text, {"Authorization": signing.sign(settings.MEDIA_SECRET, "POST", MEDIA_EVENTS_PATH, text.encode())}
