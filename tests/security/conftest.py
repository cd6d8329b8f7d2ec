"""Each test counts its own rate limits: a fresh throttle key prefix (no cache flush, so a shared Redis is safe),
a frozen throttle clock, so a slow run (hashing under load) never crosses a one-minute window boundary, and
counters that outlive the test: django-ratelimit stores each with a real-time TTL of the period + 5 s, so 15
password hashes that took 80 s on a busy machine found their count gone after the 65th second."""

from __future__ import annotations

import time
import types
import uuid
from typing import Any

import django_ratelimit.core
import pytest


@pytest.fixture(autouse=True)
def _own_throttle_counters(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.RATELIMIT_CACHE_PREFIX = f"throttle-test-{uuid.uuid4().hex}:"
    frozen = float(int(time.time()))
    monkeypatch.setattr(django_ratelimit.core, "time", types.SimpleNamespace(time=lambda: frozen))
    monkeypatch.setattr(django_ratelimit.core, "EXPIRATION_FUDGE", 3600)
