"""Each test counts its own rate limits: a fresh throttle key prefix (no cache flush, so a shared Redis is safe)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _own_throttle_counters(settings: Any) -> None:
    settings.RATELIMIT_CACHE_PREFIX = f"throttle-test-{uuid.uuid4().hex}:"
