"""The .ics invitations, parsed back with icalendar: times across daylight-saving changes, UID and SEQUENCE
on update and cancel, the VTIMEZONE, organizer and attendees. Recurrence rules and their validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from icalendar import Calendar
from meeting_helpers import event_of

from conference.errors import DomainError
from meetings import services
from meetings.recurrence import Schedule, local_start, rrule_normalize, time_zone_get

pytestmark = pytest.mark.django_db(transaction=True)  # invitations leave on commit

BERLIN = ZoneInfo("Europe/Berlin")


def schedule(user, **overrides):
    kwargs = {
        "owner": user,
        "title": "Weekly sync",
        "start": datetime(2027, 3, 22, 9, 0),  # a Monday; clocks go forward on Sunday 2027-03-28
        "time_zone": "Europe/Berlin",
        "duration_minutes": 30,
        "rrule": "FREQ=WEEKLY;BYDAY=MO;COUNT=4",
        "invitees": ["Ann@Example.org", "bob@example.org"],
        "base_url": "http://meet.test",
    }
    return services.meeting_create(**{**kwargs, **overrides})


def occurrences(event, count):
    """Expand the calendar's own DTSTART + RRULE as a calendar client does."""
    rule = rrulestr(event["RRULE"].to_ical().decode(), dtstart=event.decoded("DTSTART"))
    return list(rule)[:count]


@pytest.mark.parametrize(
    ("first", "change_day"),
    [
        (datetime(2027, 3, 22, 9, 0), datetime(2027, 3, 28)),  # last Sunday of March: CET -> CEST
        (datetime(2027, 10, 25, 9, 0) - timedelta(days=7), datetime(2027, 10, 31)),  # last Sunday of October
    ],
)
def test_weekly_meeting_stays_at_nine_local_across_dst_and_utc_shifts(user_factory, invites, first, change_day):
    user = user_factory()
    user.email = "owner@example.org"
    user.save()
    schedule(user, start=first)
    sent = invites()
    assert sorted(to for to, _ in sent) == ["ann@example.org", "bob@example.org"]
    calendar = sent[0][1]
    assert calendar["METHOD"] == "REQUEST"
    event = event_of(calendar)
    dtstart = event.decoded("DTSTART")
    assert event["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert [tz["TZID"] for tz in calendar.walk("VTIMEZONE")] == ["Europe/Berlin"]
    assert dtstart.replace(tzinfo=None) == first
    starts = occurrences(event, 4)
    assert all((s.astimezone(BERLIN).hour, s.astimezone(BERLIN).minute) == (9, 0) for s in starts)
    before = [s for s in starts if s.replace(tzinfo=None) < change_day]
    after = [s for s in starts if s.replace(tzinfo=None) > change_day]
    assert before and after
    utc_before = {s.astimezone(UTC).hour for s in before}
    utc_after = {s.astimezone(UTC).hour for s in after}
    assert len(utc_before) == 1 and len(utc_after) == 1
    assert abs(utc_before.pop() - utc_after.pop()) == 1  # the UTC time moves by the hour the clocks moved
    assert str(event["ORGANIZER"]) == "mailto:owner@example.org"
    assert sorted(str(a) for a in event["ATTENDEE"]) == ["mailto:ann@example.org", "mailto:bob@example.org"]
    assert "http://meet.test/join/" in str(event["URL"])
    assert event.decoded("DTEND") - dtstart == timedelta(minutes=30)


def test_update_keeps_uid_and_raises_sequence_cancel_sends_method_cancel(user_factory, invites, mailoutbox):
    user = user_factory()
    meeting = schedule(user)
    first = event_of(invites()[0][1])
    assert first["SEQUENCE"] == 0
    uid = str(first["UID"])
    mailoutbox.clear()

    services.meeting_update(
        meeting_id=meeting.public_id,
        user=user,
        base_url="http://meet.test",
        start=datetime(2027, 3, 22, 10, 30),
        invitees=["ann@example.org", "carol@example.org"],
    )
    sent = {to: calendar for to, calendar in invites()}
    assert sent["ann@example.org"]["METHOD"] == "REQUEST" and sent["carol@example.org"]["METHOD"] == "REQUEST"
    assert sent["bob@example.org"]["METHOD"] == "CANCEL"  # taken off the list
    for calendar in sent.values():
        event = event_of(calendar)
        assert str(event["UID"]) == uid and event["SEQUENCE"] == 1
    assert event_of(sent["ann@example.org"]).decoded("DTSTART").replace(tzinfo=None) == datetime(2027, 3, 22, 10, 30)
    mailoutbox.clear()

    services.meeting_update(meeting_id=meeting.public_id, user=user, base_url="http://meet.test", title="Weekly sync")
    assert invites() == []  # nothing changed: nothing sent, SEQUENCE unchanged

    services.meeting_cancel(meeting_id=meeting.public_id, user=user, base_url="http://meet.test")
    sent = invites()
    assert sorted(to for to, _ in sent) == ["ann@example.org", "carol@example.org"]
    for _, calendar in sent:
        event = event_of(calendar)
        assert calendar["METHOD"] == "CANCEL" and event["STATUS"] == "CANCELLED"
        assert str(event["UID"]) == uid and event["SEQUENCE"] == 2
    meeting.refresh_from_db()
    assert meeting.room.is_ended
    mailoutbox.clear()
    services.meeting_cancel(meeting_id=meeting.public_id, user=user, base_url="http://meet.test")
    assert invites() == []  # cancelling twice sends nothing more


def test_rolled_back_change_sends_nothing(user_factory, mailoutbox):
    from django.db import transaction

    user = user_factory()
    with pytest.raises(RuntimeError), transaction.atomic():
        schedule(user)
        raise RuntimeError("rollback")
    assert mailoutbox == []


def test_until_without_zone_is_read_in_the_meetings_zone_and_written_in_utc():
    start = local_start(datetime(2027, 3, 22, 9, 0), time_zone_get("Europe/Berlin"))
    rule = rrule_normalize("RRULE:FREQ=WEEKLY;UNTIL=20270412", start=start)
    assert rule == "FREQ=WEEKLY;UNTIL=20270412T215959Z"
    timeline = Schedule(start=start, duration=timedelta(hours=1), rrule=rule)
    assert [o.start.day for o in timeline.upcoming(start, 10)] == [22, 29, 5, 12]
    assert timeline.last_end() == datetime(2027, 4, 12, 10, 0, tzinfo=BERLIN)


@pytest.mark.parametrize(
    ("rule", "code"),
    [
        ("FREQ=HOURLY", "invalid_rrule"),
        ("FREQ=WEEKLY;BYDAY=TU", "invalid_rrule"),  # the start (a Monday) would not be an occurrence
        ("FREQ=WEEKLY;COUNT=2;UNTIL=20270501", "invalid_rrule"),
        ("FREQ=DAILY;COUNT=100000", "invalid_rrule"),
        ("not a rule", "invalid_rrule"),
    ],
)
def test_invalid_rules_are_refused_with_a_code(rule, code):
    start = local_start(datetime(2027, 3, 22, 9, 0), time_zone_get("Europe/Berlin"))
    with pytest.raises(DomainError) as caught:
        rrule_normalize(rule, start=start)
    assert caught.value.code == code


def test_a_skipped_wall_clock_time_and_an_unknown_zone_are_refused():
    with pytest.raises(DomainError) as caught:
        local_start(datetime(2027, 3, 28, 2, 30), time_zone_get("Europe/Berlin"))
    assert caught.value.code == "nonexistent_time"
    for name in ("Mars/Olympus", "../etc/passwd", ""):
        with pytest.raises(DomainError) as caught:
            time_zone_get(name)
        assert caught.value.code == "invalid_time_zone"


def test_file_backend_writes_the_invitation_with_its_calendar_part(user_factory, settings, tmp_path):
    """With EMAIL_BACKEND=file the message lands in EMAIL_FILE_PATH, the .ics attached as text/calendar."""
    import email

    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    schedule(user_factory(), invitees=["ann@example.org"])
    (written,) = list(tmp_path.iterdir())
    message = email.message_from_bytes(written.read_bytes().split(b"\n" + b"-" * 79 + b"\n")[0])
    parts = [part for part in message.walk() if part.get_content_type() == "text/calendar"]
    assert len(parts) == 1 and parts[0].get_param("method") == "REQUEST"
    assert parts[0].get_filename() == "invite.ics"
    event = event_of(Calendar.from_ical(parts[0].get_payload(decode=True)))
    assert event.decoded("DTSTART").replace(tzinfo=None) == datetime(2027, 3, 22, 9, 0)
