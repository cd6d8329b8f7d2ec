"""Celery tasks for recordings: they take IDs and call services.

``recording_process`` is idempotent and crash-safe: it claims a processing
lease (a re-run after success, or while another worker is alive, is a no-op),
renders into a fresh per-attempt work directory, uploads under deterministic
names (replacing a half-finished earlier upload), marks the recording ready,
and only then removes the raw spool files. Transient failures (storage or
network errors, ffmpeg killed) retry with exponential backoff up to
``RECORDINGS_MAX_ATTEMPTS`` attempts; a broken manifest or input fails at once.
``acks_late`` plus the heartbeat mean a worker that dies mid-task leaves the
recording processing with a stale heartbeat, which ``recordings_cleanup``
re-queues.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from celery import shared_task
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.utils import timezone

from . import services
from .compose import Canvas, ComposeError
from .models import Recording
from .spool import ManifestError, manifest_load, recording_dir
from .transcode import Abandoned, TranscodeError, TranscodeInterrupted, render

logger = logging.getLogger(__name__)
TRANSIENT = (OSError, BotoCoreError, ClientError, TranscodeInterrupted)


def canvas_from_settings() -> Canvas:
    return Canvas(
        width=settings.RECORDINGS_WIDTH,
        height=settings.RECORDINGS_HEIGHT,
        fps=settings.RECORDINGS_FPS,
        preset=settings.RECORDINGS_X264_PRESET,
    )


def storage_names(recording: Recording) -> tuple[str, str]:
    base = f"recordings/{recording.room.public_id}/{recording.public_id}"
    return f"{base}.mp4", f"{base}.jpg"


def _upload(local: Path, name: str) -> str:
    if default_storage.exists(name):  # a crashed earlier attempt got this far
        default_storage.delete(name)
    with local.open("rb") as fh:
        return default_storage.save(name, File(fh, name=Path(name).name))


def process_recording(recording_id: int, *, lease: str) -> str:
    """The body of ``recording_process``; returns what happened (skipped, ready, failed, abandoned)."""
    recording = services.recording_claim(recording_id=recording_id, lease=lease)
    if recording is None:
        return "skipped"
    if recording.attempts > settings.RECORDINGS_MAX_ATTEMPTS:
        services.recording_fail(recording_id=recording_id, reason="too_many_attempts", lease=lease)
        return "failed"
    spool = recording_dir(settings.RECORDINGS_SPOOL_DIR, recording.public_id)
    for old in spool.glob("work-*"):
        shutil.rmtree(old, ignore_errors=True)
    work = spool / f"work-{uuid.uuid4().hex[:12]}"
    try:
        manifest = manifest_load(spool, recording_id=recording.public_id)
        rendered = render(
            manifest,
            spool,
            work,
            canvas=canvas_from_settings(),
            heartbeat=lambda: services.recording_heartbeat(recording_id=recording_id, lease=lease),
            heartbeat_seconds=settings.RECORDINGS_HEARTBEAT_SECONDS,
            ffmpeg=settings.RECORDINGS_FFMPEG,
            ffprobe=settings.RECORDINGS_FFPROBE,
        )
        if not services.recording_heartbeat(recording_id=recording_id, lease=lease):
            raise Abandoned()
        video_name, thumb_name = storage_names(recording)
        video_name = _upload(rendered.video, video_name)
        thumb_name = _upload(rendered.thumbnail, thumb_name)
        services.recording_complete(
            recording_id=recording_id,
            lease=lease,
            file_name=video_name,
            thumbnail_name=thumb_name,
            duration_seconds=round(rendered.duration, 3),
            size_bytes=rendered.size,
        )
    except (ManifestError, ComposeError) as exc:
        services.recording_fail(recording_id=recording_id, reason=f"bad_manifest: {exc}", lease=lease)
        shutil.rmtree(work, ignore_errors=True)
        return "failed"
    except TranscodeError as exc:
        services.recording_fail(recording_id=recording_id, reason=f"transcode_failed: {exc}", lease=lease)
        shutil.rmtree(work, ignore_errors=True)
        return "failed"
    except (Abandoned, services.LeaseLost):
        logger.warning("recording %s: lease lost, leaving it to the new holder", recording.public_id)
        shutil.rmtree(work, ignore_errors=True)
        return "abandoned"
    # Uploaded and committed: only now may the raw files go.
    shutil.rmtree(spool, ignore_errors=True)
    return "ready"


@shared_task(bind=True, acks_late=True, max_retries=None, name="recordings.tasks.recording_process")
def recording_process(self: Any, recording_id: int) -> str:
    lease = str(self.request.id or uuid.uuid4())
    try:
        return process_recording(recording_id, lease=lease)
    except TRANSIENT as exc:
        services.recording_release(recording_id=recording_id, lease=lease)
        attempts = Recording.objects.filter(pk=recording_id).values_list("attempts", flat=True).first() or 0
        if attempts >= settings.RECORDINGS_MAX_ATTEMPTS:
            services.recording_fail(recording_id=recording_id, reason=f"transient_errors: {exc}"[:500])
            return "failed"
        countdown = min(600, 10 * 2**attempts)
        logger.warning("recording %s: transient error, retry in %s s: %s", recording_id, countdown, exc)
        raise self.retry(exc=exc, countdown=countdown) from exc


@shared_task(acks_late=True, name="recordings.tasks.recording_enforce_limit")
def recording_enforce_limit(recording_id: int) -> str:
    """Stop a recording that reached its duration limit (scheduled at start with a countdown)."""
    recording = Recording.objects.filter(pk=recording_id).select_related("room").first()
    if recording is None or recording.status != Recording.Status.RECORDING or recording.started_at is None:
        return "not_recording"
    due = recording.started_at + timedelta(minutes=recording.duration_limit_minutes)
    if due > timezone.now() + timedelta(seconds=5):  # delivered early (e.g. broker redelivery)
        return "not_due"
    try:
        services.recording_stop(recording_id=recording_id, reason="duration_limit")
    except services.MediaUnavailable:
        return "media_unavailable"  # the cleanup job retries
    return "stopped"


@shared_task(acks_late=True, name="recordings.tasks.recording_stop_task")
def recording_stop_task(recording_id: int) -> str:
    """Stop a recording (queued when its room ends)."""
    recording = Recording.objects.filter(pk=recording_id).first()
    if recording is None:
        return "missing"
    try:
        services.recording_stop(recording_id=recording_id, reason=recording.stop_reason or "room_ended")
    except services.MediaUnavailable:
        return "media_unavailable"  # the cleanup job retries
    return "stopped"


@shared_task(name="recordings.tasks.recordings_cleanup")
def recordings_cleanup() -> dict[str, int]:
    """Beat job: re-queue recordings of dead workers, stop overdue ones, fail lost ones."""
    return services.recordings_cleanup()
