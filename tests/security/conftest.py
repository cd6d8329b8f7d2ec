"""Each test counts its own rate limits: a fresh throttle key prefix (no cache flush, so a shared Redis is safe),
and a frozen throttle clock, so a slow run (hashing under load) never crosses a one-minute window boundary."""

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
