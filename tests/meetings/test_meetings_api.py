"""REST API of scheduled meetings: create/list/retrieve/update/cancel, owner only, JSON errors with codes,
the room's opening window for joins, and a list whose query count does not grow with the meetings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from meetings.models import Meeting
from meetings.selectors import room_opens_at

pytestmark = pytest.mark.django_db(transaction=True)  # invitations leave on commit


def body(**overrides):
    start = (timezone.now() + timedelta(days=2)).astimezone(UTC).replace(tzinfo=None, second=0, microsecond=0)
    return {
        "title": "Planning",
        "start": start.isoformat(),
        "time_zone": "UTC",
        "duration_minutes": 45,
        "rrule": "",
        "invitees": ["ann@example.org"],
        **overrides,
    }


def create(client, **overrides):
    r = client.post("/api/v1/meetings", body(**overrides), format="json")
    assert r.status_code == 201, r.content
    return r.json()


def test_create_list_retrieve_update_cancel(auth_client, mailoutbox):
    owner = auth_client()
    made = create(owner, rrule="RRULE:FREQ=WEEKLY;COUNT=3", time_zone="Europe/Berlin")
    assert made["rrule"] == "FREQ=WEEKLY;COUNT=3" and made["sequence"] == 0 and made["status"] == "scheduled"
    assert made["join_url"] == f"http://testserver/join/{made['roomId']}"
    assert made["next_occurrence"]["start"] == made["start"] and made["invitees"] == ["ann@example.org"]
    assert len(mailoutbox) == 1
    listed = owner.get("/api/v1/meetings").json()
    assert [m["meetingId"] for m in listed] == [made["meetingId"]]
    assert owner.get(f"/api/v1/meetings/{made['meetingId']}").json()["title"] == "Planning"

    r = owner.patch(f"/api/v1/meetings/{made['meetingId']}", {"title": "Planning v2"}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["title"] == "Planning v2" and r.json()["sequence"] == 1 and r.json()["start"] == made["start"]
    assert owner.get(f"/api/v1/rooms/{made['roomId']}").json()["name"] == "Planning v2"  # the room follows

    r = owner.post(f"/api/v1/meetings/{made['meetingId']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["sequence"] == 2
    assert r.json()["next_occurrence"] is None
    assert owner.get("/api/v1/meetings").json() == []
    r = owner.patch(f"/api/v1/meetings/{made['meetingId']}", {"title": "x"}, format="json")
    assert r.status_code == 410 and r.json()["error"]["code"] == "meeting_cancelled"


def test_another_user_can_neither_see_nor_change_nor_cancel(auth_client, api_client):
    owner, other = auth_client(), auth_client()
    made = create(owner)
    url = f"/api/v1/meetings/{made['meetingId']}"
    assert other.get("/api/v1/meetings").json() == []
    for response in (
        other.get(url),
        other.patch(url, {"title": "mine now"}, format="json"),
        other.post(f"{url}/cancel"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "meeting_not_found"
    assert api_client.get("/api/v1/meetings").status_code == 401
    assert Meeting.objects.get(public_id=made["meetingId"]).title == "Planning"


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"time_zone": "Mars/Base"}, 400, "invalid_time_zone"),
        ({"rrule": "FREQ=SECONDLY"}, 400, "invalid_rrule"),
        ({"start": "2020-01-01T09:00:00"}, 400, "meeting_in_past"),
        ({"start": "2027-03-28T02:30:00", "time_zone": "Europe/Berlin"}, 400, "nonexistent_time"),
        ({"invitees": ["not-an-address"]}, 400, "invalid"),
        ({"duration_minutes": 0}, 400, "invalid"),
        ({"title": "   "}, 400, "invalid"),
    ],
)
def test_bad_input_is_a_json_error_with_a_code(auth_client, overrides, status, code):
    r = auth_client().post("/api/v1/meetings", body(**overrides), format="json")
    assert r.status_code == status, r.content
    assert r["Content-Type"].startswith("application/json")
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
    assert Meeting.objects.count() == 0


def test_room_opens_a_configured_time_before_the_start(auth_client, settings):
    settings.SCHEDULED_ROOM_OPENS_MINUTES_BEFORE = 10
    owner, guest = auth_client(), auth_client()
    soon = (timezone.now() + timedelta(minutes=30)).replace(tzinfo=None, microsecond=0)
    made = create(owner, start=soon.isoformat())
    join = f"/api/v1/rooms/{made['roomId']}/join"
    r = guest.post(join, {}, format="json")
    assert r.status_code == 403 and r.json()["error"]["code"] == "meeting_not_open"
    opens_at = datetime.fromisoformat(r.json()["error"]["details"]["opens_at"])
    assert opens_at == datetime.fromisoformat(made["opens_at"]) == soon.replace(tzinfo=UTC) - timedelta(minutes=10)
    assert 0 < int(r["Retry-After"]) <= 20 * 60
    assert owner.post(join, {}, format="json").status_code == 200  # the host may open it early

    r = owner.patch(
        f"/api/v1/meetings/{made['meetingId']}", {"start": (soon - timedelta(minutes=25)).isoformat()}, format="json"
    )
    assert r.status_code == 200, r.content
    assert guest.post(join, {}, format="json").status_code == 200  # starts in 5 minutes: open


def test_a_recurring_meetings_room_opens_before_each_occurrence(auth_client, settings):
    settings.SCHEDULED_ROOM_OPENS_MINUTES_BEFORE = 10
    owner = auth_client()
    start = datetime(2027, 3, 22, 9, 0, tzinfo=UTC)
    made = create(owner, start="2027-03-22T09:00:00", rrule="FREQ=DAILY", duration_minutes=60)
    room = Meeting.objects.get(public_id=made["meetingId"]).room
    next_day = start + timedelta(days=1)
    assert room_opens_at(room=room, now=next_day - timedelta(minutes=15)) == next_day - timedelta(minutes=10)
    assert room_opens_at(room=room, now=next_day - timedelta(minutes=5)) is None
    assert room_opens_at(room=room, now=next_day + timedelta(minutes=59)) is None  # in progress
    assert room_opens_at(room=room, now=next_day + timedelta(hours=2)) == next_day + timedelta(days=1, minutes=-10)


def test_list_query_count_does_not_grow_with_meetings(auth_client):
    owner = auth_client()
    create(owner, invitees=["a@example.org"])

    def count():
        with CaptureQueriesContext(connection) as ctx:
            assert owner.get("/api/v1/meetings").status_code == 200
        return len(ctx.captured_queries)

    one = count()
    for n in range(4):
        create(owner, invitees=[f"x{n}@example.org", f"y{n}@example.org"], rrule="FREQ=DAILY")
    assert count() == one
    assert len(owner.get("/api/v1/meetings").json()) == 5


def test_schema_documents_the_meeting_operations(api_client):
    schema = api_client.get("/api/schema/?format=json").json()
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {"meetings_list", "meetings_create", "meetings_retrieve", "meetings_update", "meetings_cancel"} <= operations


def test_a_mail_server_outage_loses_no_meeting_and_the_task_asks_to_retry(auth_client, settings, caplog):
    """SMTP on a loopback port nobody listens on (a real refused connection): the meeting is still created and
    the task asks Celery to retry (a worker retries with backoff; eager mode hands the Retry back at once, and
    the service logs it instead of failing the request)."""
    import socket

    from celery.exceptions import Retry

    with socket.socket() as probe:  # a free port, closed again: connections to it are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 5
    made = create(auth_client())
    assert Meeting.objects.filter(public_id=made["meetingId"]).exists()
    failures = [r for r in caplog.records if "could not queue REQUEST invitations" in r.getMessage()]
    assert len(failures) == 1
    retry = failures[0].exc_info[1]
    assert isinstance(retry, Retry) and isinstance(retry.exc, ConnectionRefusedError)
