"""The processing task and the cleanup job: idempotent, crash-safe, retried on transient errors."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone
from rec_helpers import write_two_party_spool

from recordings import services, tasks
from recordings.models import Recording
from rooms import services as room_services

pytestmark = [pytest.mark.django_db, pytest.mark.ffmpeg]


@pytest.fixture
def processing(user_factory: Any, spool: Any) -> Recording:
    """A recording whose media server has stopped: the spool is written, status processing."""
    host = user_factory()
    room = room_services.room_create(host=host, name="r")
    recording = Recording.objects.create(room=room, started_by=host, status=Recording.Status.RECORDING)
    write_two_party_spool(spool / recording.public_id, recording.public_id, room.public_id)
    return services.recording_transition(recording_id=recording.pk, to=Recording.Status.PROCESSING)


def test_process_makes_it_ready_and_a_rerun_is_a_no_op(processing, spool):
    assert tasks.process_recording(processing.pk, lease="a") == "ready"
    processing.refresh_from_db()
    assert processing.status == "ready" and processing.attempts == 1 and processing.lease == ""
    assert default_storage.exists(processing.file.name) and default_storage.exists(processing.thumbnail.name)
    assert processing.file.name == f"recordings/{processing.room.public_id}/{processing.public_id}.mp4"
    assert not (spool / processing.public_id).exists()
    assert tasks.process_recording(processing.pk, lease="b") == "skipped"  # re-run after success
    assert tasks.recording_process.apply(args=[processing.pk]).get() == "skipped"


def test_a_live_lease_blocks_a_second_worker_and_a_stale_one_is_taken_over(processing, settings):
    assert services.recording_claim(recording_id=processing.pk, lease="first") is not None
    assert tasks.process_recording(processing.pk, lease="second") == "skipped"
    Recording.objects.filter(pk=processing.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert tasks.process_recording(processing.pk, lease="second") == "ready"
    assert not services.recording_heartbeat(recording_id=processing.pk, lease="first")


def test_worker_crash_mid_task_is_requeued_by_cleanup_then_ready(
    processing, spool, eager, django_capture_on_commit_callbacks
):
    """A worker claimed it, left a half-written work dir and died (no heartbeat): cleanup re-queues, it finishes."""
    services.recording_claim(recording_id=processing.pk, lease="dead-worker")
    (spool / processing.public_id / "work-dead").mkdir()
    (spool / processing.public_id / "work-dead" / "recording.mp4").write_bytes(b"half")
    assert services.recordings_cleanup() == {"requeued": 0, "failed": 0, "stopped": 0}  # heartbeat still fresh
    later = timezone.now() + timedelta(minutes=5)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.recordings_cleanup(now=later)["requeued"] == 1
    processing.refresh_from_db()
    assert processing.status == "ready" and processing.attempts == 2


def test_worker_lost_too_often_fails_with_reason(processing, settings):
    settings.RECORDINGS_MAX_ATTEMPTS = 2
    Recording.objects.filter(pk=processing.pk).update(attempts=2, lease="x", heartbeat_at=timezone.now())
    assert services.recordings_cleanup(now=timezone.now() + timedelta(minutes=5))["failed"] == 1
    processing.refresh_from_db()
    assert processing.status == "failed" and processing.failure_reason == "worker_lost"


def test_transient_upload_error_retries_and_keeps_raw_files_until_success(processing, spool, eager, monkeypatch):
    calls = {"n": 0}
    real_save = default_storage.save

    def flaky_save(name: str, content: Any, **kw: Any) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            assert (spool / processing.public_id / "manifest.json").exists()  # raw files still there
            raise ConnectionError("storage hiccup")
        return real_save(name, content, **kw)

    monkeypatch.setattr(default_storage, "save", flaky_save)
    assert tasks.recording_process.apply(args=[processing.pk], throw=False).get() == "ready"
    processing.refresh_from_db()
    assert processing.status == "ready" and processing.attempts == 2
    assert not (spool / processing.public_id).exists()


def test_persistent_upload_errors_fail_after_max_attempts_and_keep_raw_files(
    processing, spool, eager, monkeypatch, settings
):
    settings.RECORDINGS_MAX_ATTEMPTS = 2

    def broken_save(name: str, content: Any, **kw: Any) -> str:
        raise OSError("bucket gone")

    monkeypatch.setattr(default_storage, "save", broken_save)
    assert tasks.recording_process.apply(args=[processing.pk], throw=False).get() == "failed"
    processing.refresh_from_db()
    assert processing.status == "failed" and "bucket gone" in processing.failure_reason
    assert (spool / processing.public_id / "manifest.json").exists()  # kept for a retry


def test_bad_manifest_fails_at_once(processing, spool):
    (spool / processing.public_id / "manifest.json").write_text('{"protocol": 9}')
    assert tasks.process_recording(processing.pk, lease="a") == "failed"
    processing.refresh_from_db()
    assert processing.status == "failed" and processing.failure_reason.startswith("bad_manifest")


def test_failed_recording_can_be_retried_by_the_host(
    processing, spool, auth_client, eager, django_capture_on_commit_callbacks
):
    (spool / processing.public_id / "manifest.json").rename(spool / processing.public_id / "saved.json")
    tasks.process_recording(processing.pk, lease="a")
    (spool / processing.public_id / "saved.json").rename(spool / processing.public_id / "manifest.json")
    host = auth_client(processing.started_by)
    with django_capture_on_commit_callbacks(execute=True):
        r = host.post(f"/api/v1/recordings/{processing.public_id}/retry")
    assert r.status_code == 202
    processing.refresh_from_db()
    assert processing.status == "ready" and processing.failure_reason == ""


def test_cleanup_stops_overdue_and_ended_room_recordings(
    user_factory, fake_media, eager, django_capture_on_commit_callbacks
):
    host = user_factory()
    overdue_room = room_services.room_create(host=host, name="a")
    ended_room = room_services.room_create(host=host, name="b")
    with django_capture_on_commit_callbacks(execute=True):
        overdue = services.recording_start(room_id=overdue_room.public_id, user=host, duration_minutes=1)
        ended = services.recording_start(room_id=ended_room.public_id, user=host, duration_minutes=60)
    Recording.objects.filter(pk=overdue.pk).update(started_at=timezone.now() - timedelta(minutes=2))
    ended_room.status = "ended"
    ended_room.save()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.recordings_cleanup()["stopped"] == 2
    overdue.refresh_from_db()
    ended.refresh_from_db()
    assert (overdue.stop_reason, overdue.status) == ("duration_limit", "ready")
    assert (ended.stop_reason, ended.status) == ("room_ended", "ready")


def test_cleanup_fails_recordings_the_media_server_lost(user_factory, fake_media, settings):
    host = user_factory()
    room = room_services.room_create(host=host, name="a")
    recording = services.recording_start(room_id=room.public_id, user=host)
    fake_media.stop()
    settings.MEDIA_CONTROL_TIMEOUT_SECONDS = 1
    with pytest.raises(services.MediaUnavailable):
        services.recording_stop(recording_id=recording.pk, reason="user")
    assert services.recordings_cleanup()["stopped"] == 0  # within the grace period: wait
    out = StringIO()
    Recording.objects.filter(pk=recording.pk).update(stop_requested_at=timezone.now() - timedelta(hours=1))
    call_command("recordings_cleanup", stdout=out)
    assert "failed=1" in out.getvalue()
    recording.refresh_from_db()
    assert recording.status == "failed" and recording.failure_reason == "media_lost"


def test_cleanup_fails_stuck_pending(user_factory, media_down):
    room = room_services.room_create(host=user_factory(), name="a")
    recording = Recording.objects.create(room=room)
    Recording.objects.filter(pk=recording.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    assert services.recordings_cleanup()["failed"] == 1
    recording.refresh_from_db()
    assert recording.failure_reason == "media_unavailable"
