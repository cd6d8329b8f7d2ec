"""Scheduled-meeting fixtures: Celery eager (the task runs in the test, on commit), invitations read back
from Django's locmem outbox with the icalendar library."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def eager_celery() -> Iterator[None]:
    from conference.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


@pytest.fixture
def invites(mailoutbox: list[Any]) -> Any:
    """Parse the outbox: [(recipient, calendar)] for every message sent so far."""
    from meeting_helpers import sent_calendars

    return lambda: sent_calendars(mailoutbox)
