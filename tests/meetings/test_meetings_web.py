"""The server-rendered pages: "My meetings", the schedule/edit forms (errors shown, never a 500), cancel,
the friendly "not open yet" page, and the admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from meetings.models import Meeting

pytestmark = pytest.mark.django_db(transaction=True)  # invitations leave on commit


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


def form(**overrides):
    start = (timezone.now() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    return {
        "title": "Retro",
        "start": start,
        "time_zone": "Europe/Berlin",
        "duration_minutes": "60",
        "recurrence": "weekly",
        "rrule": "",
        "invitees": "ann@example.org, bob@example.org",
        **overrides,
    }


def test_schedule_list_edit_cancel_through_the_pages(user_factory, mailoutbox):
    user = user_factory()
    client = signed_in(user)
    assert client.get("/meetings/new").status_code == 200
    r = client.post("/meetings/new", form())
    assert r.status_code == 302 and r["Location"] == "/meetings/"
    meeting = Meeting.objects.get()
    assert meeting.rrule == "FREQ=WEEKLY" and len(mailoutbox) == 2
    page = client.get("/meetings/").content.decode()
    assert "Retro" in page and "Europe/Berlin" in page and f"/join/{meeting.room.public_id}" in page
    assert "2 invited" in page

    edit = client.get(f"/meetings/{meeting.public_id}/edit").content.decode()
    assert 'value="Retro"' in edit and "bob@example.org" in edit
    r = client.post(f"/meetings/{meeting.public_id}/edit", form(title="Retro (moved)", invitees="ann@example.org"))
    assert r.status_code == 302
    meeting.refresh_from_db()
    assert meeting.title == "Retro (moved)" and meeting.sequence == 1

    assert client.post(f"/meetings/{meeting.public_id}/cancel").status_code == 302
    meeting.refresh_from_db()
    assert meeting.is_cancelled
    assert "No upcoming meetings" in client.get("/meetings/").content.decode()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"start": "next tuesday"}, "Enter a date and time"),
        ({"recurrence": "custom", "rrule": "FREQ=MINUTELY"}, "FREQ must be DAILY"),
        ({"invitees": "ann@example.org, nope"}, "Not an e-mail address"),
        ({"time_zone": "Nowhere/Land"}, "Select a valid choice"),
        ({"start": "2020-01-01T10:00", "recurrence": "none"}, "already be over"),
        ({"title": ""}, "This field is required"),
    ],
)
def test_form_errors_are_shown_not_a_500(user_factory, overrides, message):
    client = signed_in(user_factory())
    r = client.post("/meetings/new", form(**overrides))
    assert r.status_code == 400
    assert message in r.content.decode()
    assert Meeting.objects.count() == 0


def test_other_users_meeting_pages_are_not_found(user_factory):
    owner_client = signed_in(user_factory())
    owner_client.post("/meetings/new", form())
    meeting = Meeting.objects.get()
    other = signed_in(user_factory())
    assert other.get(f"/meetings/{meeting.public_id}/edit").status_code == 404
    assert other.post(f"/meetings/{meeting.public_id}/cancel").status_code == 404
    assert "Retro" not in other.get("/meetings/").content.decode()
    assert not Meeting.objects.get().is_cancelled
    assert Client().get("/meetings/").status_code == 302  # sign in first


def test_join_page_before_the_room_opens_says_when(user_factory, settings):
    settings.SCHEDULED_ROOM_OPENS_MINUTES_BEFORE = 10
    owner = user_factory()
    owner_client = signed_in(owner)
    owner_client.post("/meetings/new", form(start="2027-07-05T09:00", time_zone="America/New_York"))
    meeting = Meeting.objects.get()
    r = signed_in(user_factory()).get(f"/join/{meeting.room.public_id}")
    assert r.status_code == 403
    # In the meeting's own zone (EDT, UTC-4), not the server's UTC.
    assert (
        "not open yet" in r.content.decode()
        and "Mon 5 Jul 2027, 08:50</strong> (America/New_York)" in r.content.decode()
    )
    listed = owner_client.get("/meetings/").content.decode()
    assert "Mon 5 Jul 2027, 09:00 (America/New_York)" in listed
    assert owner_client.get(f"/join/{meeting.room.public_id}").status_code == 200  # the host may go in


def test_admin_lists_and_shows_meetings(user_factory, admin_client):
    signed_in(user_factory()).post("/meetings/new", form())
    meeting = Meeting.objects.get()
    assert "Retro" in admin_client.get("/admin/meetings/meeting/").content.decode()
    page = admin_client.get(f"/admin/meetings/meeting/{meeting.pk}/change/").content.decode()
    assert "ann@example.org" in page and meeting.ical_uid in page
