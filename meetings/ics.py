"""The iCalendar invitation (RFC 5545 / iTIP RFC 5546) for a meeting, built with the ``icalendar`` library.

One VEVENT per meeting: UID stable for the meeting's life, SEQUENCE raised by every change, DTSTART with
TZID plus the matching VTIMEZONE (``add_missing_timezones`` writes it from the zone's rules), the RRULE,
ORGANIZER and one ATTENDEE per invitee, the join URL as URL/LOCATION. ``METHOD:REQUEST`` invites or
updates; ``METHOD:CANCEL`` with ``STATUS:CANCELLED`` removes it from the invitees' calendars.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from icalendar import Calendar, Event, vCalAddress, vRecur

PRODID = "-//Conference//Scheduled meetings//EN"
REQUEST = "REQUEST"
CANCEL = "CANCEL"
METHODS = frozenset({REQUEST, CANCEL})


@dataclass(frozen=True)
class Invitation:
    uid: str
    sequence: int
    title: str
    start: datetime  # aware, in the meeting's ZoneInfo
    duration: timedelta
    rrule: str
    join_url: str
    organizer_email: str
    organizer_name: str
    attendees: tuple[str, ...]


def _address(email: str, **params: str) -> vCalAddress:
    address = vCalAddress(f"mailto:{email}")
    for key, value in params.items():
        address.params[key] = value
    return address


def invitation_ics(invitation: Invitation, *, method: str, now: datetime | None = None) -> bytes:
    """The calendar (``text/calendar``) for ``method`` (REQUEST or CANCEL)."""
    if method not in METHODS:
        raise ValueError(f"unknown iTIP method {method!r}")
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("method", method)
    event = Event()
    event.add("uid", invitation.uid)
    event.add("sequence", invitation.sequence)
    event.add("dtstamp", (now or datetime.now(UTC)).astimezone(UTC))
    event.add("dtstart", invitation.start)
    event.add("dtend", invitation.start + invitation.duration)
    if invitation.rrule:
        event.add("rrule", vRecur.from_ical(invitation.rrule))
    event.add("summary", invitation.title)
    event.add("description", f"Join the meeting: {invitation.join_url}")
    event.add("location", invitation.join_url)
    event.add("url", invitation.join_url)
    event.add("status", "CANCELLED" if method == CANCEL else "CONFIRMED")
    event.add("organizer", _address(invitation.organizer_email, CN=invitation.organizer_name))
    for email in invitation.attendees:
        event.add(
            "attendee",
            _address(email, CUTYPE="INDIVIDUAL", ROLE="REQ-PARTICIPANT", PARTSTAT="NEEDS-ACTION", RSVP="TRUE"),
        )
    calendar.add_component(event)
    calendar.add_missing_timezones()
    return calendar.to_ical()
