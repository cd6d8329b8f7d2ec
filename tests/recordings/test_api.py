"""Recording REST API and services: start/stop against a fake media server, indicator events, access, links."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core import signing
from rec_helpers import MEDIA_SECRET

from conference.errors import Conflict
from media_server import signing as media_signing
from recordings import services
from recordings.models import Recording
from rooms.models import Room
from tests.conftest import MEDIA_EVENTS_PATH, media_events_request

pytestmark = pytest.mark.django_db


def start(client: Any, room_id: str, minutes: int = 60) -> Any:
    return client.post(f"/api/v1/rooms/{room_id}/record", {"duration_minutes": minutes}, format="json")


def test_host_starts_recording_everyone_sees_indicator(
    room_with_host, fake_media, eager, sent_events, django_capture_on_commit_callbacks
):
    host, room_id = room_with_host
    with django_capture_on_commit_callbacks(execute=True):
        r = start(host, room_id, 30)
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["status"] == "started" and body["recordingId"].startswith("rec") and body["duration_minutes"] == 30
    method, path, request_body, auth = fake_media.requests[0]
    assert (method, path) == ("POST", f"/v1/rooms/{room_id}/recordings")
    assert request_body == {"protocol": 1, "recording": body["recordingId"]}
    raw = json.dumps(request_body).encode()  # signed over the exact body sent (docs/protocol.md §2)
    assert media_signing.verify(MEDIA_SECRET, method, path, raw, auth, guard=media_signing.ReplayGuard()) is None
    recording = Recording.objects.get(public_id=body["recordingId"])
    assert recording.status == "recording" and recording.duration_limit_minutes == 30
    frames = [f for g, f in sent_events if g.endswith(room_id) and f["type"] == "recording_state"]
    assert frames == [
        {
            "type": "recording_state",
            "recordingId": recording.public_id,
            "status": "recording",
            "started_at": recording.started_at.isoformat(),
            "stopped_at": None,
            "reason": None,
        }
    ]
    # The duration-limit task ran at once (eager) and saw it is not due: still recording.
    assert start(host, room_id).json()["error"]["code"] == "recording_in_progress"


def test_only_host_or_moderator_can_record(room_with_host, auth_client, fake_media):
    _, room_id = room_with_host
    r = start(auth_client(), room_id)
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_moderator"
    assert not fake_media.requests and not Recording.objects.exists()


def test_e2ee_room_refuses_recording_with_clear_error(auth_client, fake_media):
    host = auth_client()
    room_id = host.post("/api/v1/rooms", {"name": "secret", "e2ee": True}, format="json").json()["roomId"]
    r = start(host, room_id)
    assert r.status_code == 409 and r.json()["error"]["code"] == "recording_e2ee"
    assert "encrypted" in r.json()["error"]["message"] and not fake_media.requests


def test_media_server_down_answers_503_and_fails_the_recording(room_with_host, media_down):
    host, room_id = room_with_host
    r = start(host, room_id)
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["code"] == "media_unavailable"
    assert error["details"]["retry_after_seconds"] == 1 and r["Retry-After"] == "1"  # retryable, and when
    recording = Recording.objects.get(public_id=error["details"]["recordingId"])
    assert recording.status == "failed" and recording.failure_reason == "media_unavailable"
    # Not stuck: a new attempt is allowed.
    assert start(host, room_id).status_code == 503


def test_media_server_refusal_is_a_409(room_with_host, fake_media):
    fake_media.fail_start = 409
    host, room_id = room_with_host
    r = start(host, room_id)
    assert r.status_code == 409 and r.json()["error"]["code"] == "recording_refused"
    assert r.json()["error"]["details"]["media_code"] == "room_busy"
    assert Recording.objects.get().failure_reason == "media_refused: room_busy"


@pytest.mark.ffmpeg
def test_stop_processes_to_ready_and_download_link_works(
    room_with_host, fake_media, eager, sent_events, django_capture_on_commit_callbacks, spool
):
    host, room_id = room_with_host
    with django_capture_on_commit_callbacks(execute=True):
        rec_id = start(host, room_id).json()["recordingId"]
    with django_capture_on_commit_callbacks(execute=True):
        r = host.post(f"/api/v1/recordings/{rec_id}/stop")
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "processing" and r.json()["stop_reason"] == "user"
    assert fake_media.requests[-1][:2] == ("DELETE", f"/v1/rooms/{room_id}/recordings/{rec_id}")

    detail = host.get(f"/api/v1/recordings/{rec_id}").json()
    assert detail["status"] == "ready", detail
    assert abs(detail["duration_seconds"] - 2.0) <= 0.2 and detail["size_bytes"] > 0
    assert detail["url_expires_in"] == 300 and detail["can_manage"] is True
    statuses = [f["status"] for _, f in sent_events if f["type"] == "recording_state"]
    assert statuses == ["recording", "processing", "ready"]
    assert not (spool / rec_id).exists()  # raw files removed after the upload

    video = host.get(detail["download_url"].removeprefix("http://testserver"))
    assert video.status_code == 200 and video["Content-Disposition"].startswith("attachment")
    data = b"".join(video.streaming_content)
    assert data[4:8] == b"ftyp" and len(data) == detail["size_bytes"]
    thumb = host.get(detail["thumbnail_url"].removeprefix("http://testserver"))
    assert thumb.status_code == 200 and b"".join(thumb.streaming_content)[:2] == b"\xff\xd8"

    listing = host.get(f"/api/v1/rooms/{room_id}/recordings").json()
    assert [x["recordingId"] for x in listing] == [rec_id]


@pytest.mark.ffmpeg
def test_download_links_expire_and_cannot_be_forged(
    room_with_host, fake_media, eager, django_capture_on_commit_callbacks, settings, client
):
    host, room_id = room_with_host
    with django_capture_on_commit_callbacks(execute=True):
        rec_id = start(host, room_id).json()["recordingId"]
    with django_capture_on_commit_callbacks(execute=True):
        host.post(f"/api/v1/recordings/{rec_id}/stop")
    url = host.get(f"/api/v1/recordings/{rec_id}").json()["download_url"].removeprefix("http://testserver")
    assert client.get(url).status_code == 200  # the link itself is the credential (no session needed)
    token = url.rsplit("/", 1)[1]
    forged = signing.dumps({**signing.loads(token, salt="recordings.download"), "r": 999}, salt="other")
    assert client.get(f"/recordings/files/{forged}").status_code == 403
    settings.RECORDINGS_URL_EXPIRE_SECONDS = -1
    r = client.get(url)
    assert r.status_code == 410 and r.json()["error"]["code"] == "link_expired"


def test_recordings_visible_to_moderators_and_shared_users_only(
    room_with_host, auth_client, fake_media, eager, django_capture_on_commit_callbacks
):
    host, room_id = room_with_host
    with django_capture_on_commit_callbacks(execute=True):
        rec_id = start(host, room_id).json()["recordingId"]
    viewer, stranger = auth_client(), auth_client()
    assert viewer.get(f"/api/v1/recordings/{rec_id}").status_code == 404
    assert viewer.get(f"/api/v1/rooms/{room_id}/recordings").json() == []
    assert viewer.post(f"/api/v1/recordings/{rec_id}/stop").status_code == 404

    r = host.post(f"/api/v1/recordings/{rec_id}/shares", {"username": viewer.user.username}, format="json")
    assert r.status_code == 201 and r.json()["username"] == viewer.user.username
    assert host.post(f"/api/v1/recordings/{rec_id}/shares", {"username": "nobody"}, format="json").status_code == 404
    seen = viewer.get(f"/api/v1/recordings/{rec_id}").json()
    assert seen["recordingId"] == rec_id and seen["can_manage"] is False
    assert [x["recordingId"] for x in viewer.get(f"/api/v1/rooms/{room_id}/recordings").json()] == [rec_id]
    # Shared users may look, not manage.
    assert viewer.post(f"/api/v1/recordings/{rec_id}/stop").status_code == 403
    assert (
        viewer.post(
            f"/api/v1/recordings/{rec_id}/shares", {"username": stranger.user.username}, format="json"
        ).status_code
        == 403
    )
    assert stranger.get(f"/api/v1/recordings/{rec_id}").status_code == 404

    assert host.delete(f"/api/v1/recordings/{rec_id}/shares/{viewer.user.username}").status_code == 204
    assert viewer.get(f"/api/v1/recordings/{rec_id}").status_code == 404


def test_room_end_stops_the_recording(room_with_host, fake_media, eager, django_capture_on_commit_callbacks):
    host, room_id = room_with_host
    with django_capture_on_commit_callbacks(execute=True):
        rec_id = start(host, room_id).json()["recordingId"]
    with django_capture_on_commit_callbacks(execute=True):
        assert host.post(f"/api/v1/rooms/{room_id}/end").status_code == 200
    recording = Recording.objects.get(public_id=rec_id)
    assert recording.stop_reason == "room_ended" and recording.status == "ready"
    assert ("DELETE", f"/v1/rooms/{room_id}/recordings/{rec_id}") in [r[:2] for r in fake_media.requests]
    assert start(host, room_id).json()["error"]["code"] == "room_ended"


def test_duration_limit_stops_the_recording(room_with_host, fake_media, eager, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from recordings.tasks import recording_enforce_limit

    host, room_id = room_with_host
    with django_capture_on_commit_callbacks(execute=True):
        rec_id = start(host, room_id, 1).json()["recordingId"]
    recording = Recording.objects.get(public_id=rec_id)
    assert recording_enforce_limit(recording.pk) == "not_due"
    Recording.objects.filter(pk=recording.pk).update(started_at=recording.started_at - timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert recording_enforce_limit(recording.pk) == "stopped"
    recording.refresh_from_db()
    assert recording.stop_reason == "duration_limit" and recording.status == "ready"


def test_media_events_stop_or_fail_the_recording(
    room_with_host, fake_media, client, django_capture_on_commit_callbacks, monkeypatch
):
    host, room_id = room_with_host
    queued: list[int] = []
    monkeypatch.setattr("recordings.tasks.recording_process.apply_async", lambda args, **kw: queued.append(args[0]))
    rec_ids = []
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            rec_ids.append(start(host, room_id).json()["recordingId"])
        if len(rec_ids) == 1:
            events = [
                {
                    "type": "recording_stopped",
                    "room": room_id,
                    "recording": rec_ids[0],
                    "manifest": f"{rec_ids[0]}/manifest.json",
                }
            ]
        else:
            events = [{"type": "recording_failed", "room": room_id, "recording": rec_ids[1], "reason": "disk_full"}]
        body, headers = media_events_request({"protocol": 1, "events": events * 2})  # duplicates are harmless
        with django_capture_on_commit_callbacks(execute=True):
            r = client.post(MEDIA_EVENTS_PATH, body, content_type="application/json", headers=headers)
        assert r.status_code == 204
    first, second = (Recording.objects.get(public_id=i) for i in rec_ids)
    assert first.status == "processing" and queued == [first.pk]
    assert second.status == "failed" and second.failure_reason == "media: disk_full"


def test_stop_with_media_down_keeps_the_request_for_cleanup(
    room_with_host, fake_media, settings, django_capture_on_commit_callbacks
):
    host, room_id = room_with_host
    rec_id = start(host, room_id).json()["recordingId"]
    fake_media.stop()
    settings.MEDIA_CONTROL_TIMEOUT_SECONDS = 1
    r = host.post(f"/api/v1/recordings/{rec_id}/stop")
    assert r.status_code == 503 and r.json()["error"]["code"] == "media_unavailable"
    recording = Recording.objects.get(public_id=rec_id)
    assert recording.status == "recording" and recording.stop_requested_at is not None


def test_transitions_are_guarded(room_with_host):
    _, room_id = room_with_host
    recording = Recording.objects.create(room=Room.objects.get(public_id=room_id))
    with pytest.raises(Conflict, match="cannot go from pending to ready"):
        services.recording_transition(recording_id=recording.pk, to="ready")
    with pytest.raises(ValueError, match="reason"):
        services.recording_transition(recording_id=recording.pk, to="failed")
