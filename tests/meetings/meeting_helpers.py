"""Reading invitations back: each mail's text/calendar part parsed by icalendar."""

from __future__ import annotations

from typing import Any

from icalendar import Calendar


def calendar_of(message: Any) -> tuple[Calendar, str]:
    """The parsed calendar of a sent message and the ``method`` parameter of its Content-Type."""
    for part in message.message().walk():
        if part.get_content_type() == "text/calendar":
            return Calendar.from_ical(part.get_payload(decode=True)), part.get_param("method")
    raise AssertionError("no text/calendar part")


def sent_calendars(outbox: list[Any]) -> list[tuple[str, Calendar]]:
    found = []
    for message in outbox:
        calendar, method = calendar_of(message)
        assert calendar["METHOD"] == method  # the MIME parameter matches the calendar's METHOD
        found.extend((to, calendar) for to in message.to)
    return found


def event_of(calendar: Calendar) -> Any:
    events = calendar.walk("VEVENT")
    assert len(events) == 1
    return events[0]
