"""Shared fixtures. Browser and service tests always run in CI (CI=true)."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Outside CI, deselect browser tests when Chromium is not installed (CI installs it and runs them)."""
    if IN_CI or shutil.which("chromium"):
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("e2e") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
        print(f"\n{len(dropped)} browser tests deselected: install Debian's chromium to run them (CI always does).")


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
