"""Scheduled-meeting fixtures: Celery eager (the task runs in the test, on commit), invitations read back
from Django's locmem outbox with the icalendar library."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _eager_celery(eager: None) -> None:
    """Every test here sends its invitations in the test process (tests/conftest.py ``eager``)."""


@pytest.fixture
def invites(mailoutbox: list[Any]) -> Any:
    """Parse the outbox: [(recipient, calendar)] for every message sent so far."""
    from meeting_helpers import sent_calendars

    return lambda: sent_calendars(mailoutbox)
