"""Every write to recordings goes through these functions.

Status changes go through :func:`recording_transition` (pending → recording →
processing → ready | failed with a reason; failed → processing to retry) and
tell everyone in the room with a ``recording_state`` frame on commit. Calls to
the media server (``recordings.media``) happen outside transactions.

Processing is guarded by a lease: a worker claims a processing recording
(:func:`recording_claim`), bumps ``heartbeat_at`` while it works and completes
or fails it only while it still holds the lease; the cleanup job
(:func:`recordings_cleanup`) re-queues recordings whose worker died, stops
overdue ones and fails those the media server lost.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from conference.errors import Conflict, DomainError, Forbidden, Gone, NotFound
from rooms import events
from rooms.models import Room
from rooms.permissions import is_room_moderator

from . import media
from .models import Recording, RecordingShare
from .spool import MANIFEST_NAME, recording_dir

logger = logging.getLogger(__name__)
ACTIVE = (Recording.Status.PENDING, Recording.Status.RECORDING)
STOP_REASONS = frozenset({"user", "duration_limit", "room_ended"})


class MediaUnavailable(DomainError):
    """503 with ``Retry-After`` and ``details.retry_after_seconds``: the media server is restarting or failing over."""

    status_code = 503
    code = "media_unavailable"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, retry_after_seconds=math.ceil(settings.MEDIA_RETRY_AFTER_SECONDS), **details)


class LeaseLost(Exception):
    """This worker no longer holds the recording's processing lease (another one took over)."""


def recording_state_frame(recording: Recording) -> dict[str, Any]:
    """The ``recording_state`` socket frame: the recording indicator everyone in the room sees."""
    return {
        "type": "recording_state",
        "recordingId": recording.public_id,
        "status": recording.status,
        "started_at": recording.started_at.isoformat() if recording.started_at else None,
        "stopped_at": recording.stopped_at.isoformat() if recording.stopped_at else None,
        "reason": recording.failure_reason or recording.stop_reason or None,
    }


def _enqueue_on_commit(task_name: str, recording_pk: int, *, countdown: float | None = None) -> None:
    """Queue a recordings task after commit; a broker outage is logged, the cleanup job catches up."""

    def send() -> None:
        from . import tasks  # tasks import this module

        try:
            getattr(tasks, task_name).apply_async(args=[recording_pk], countdown=countdown)
        except Exception:
            logger.exception("could not queue %s for recording %s", task_name, recording_pk)

    transaction.on_commit(send)


@transaction.atomic
def recording_transition(*, recording_id: int, to: str, reason: str = "") -> Recording:
    """Move a recording to ``to`` if the state machine allows it; ``failed`` needs a reason."""
    recording = Recording.objects.select_for_update().select_related("room").get(pk=recording_id)
    allowed = Recording.TRANSITIONS[recording.status]
    if to not in allowed:
        raise Conflict(
            f"A recording cannot go from {recording.status} to {to}.",
            code="invalid_recording_transition",
            status=recording.status,
        )
    if to == Recording.Status.FAILED and not reason:
        raise ValueError("a failed recording needs a reason")
    now = timezone.now()
    recording.status = to
    if to == Recording.Status.RECORDING:
        recording.started_at = now
    elif to == Recording.Status.PROCESSING:
        recording.stopped_at = recording.stopped_at or now
        recording.processing_started_at = now
        recording.failure_reason = ""
        recording.lease = ""
        recording.heartbeat_at = None
    elif to == Recording.Status.FAILED:
        recording.failure_reason = reason[:2000]
        recording.stopped_at = recording.stopped_at or now
        recording.lease = ""
    recording.save()
    events.to_room(recording.room.public_id, recording_state_frame(recording))
    return recording


# --- recording: start, stop, media events ------------------------------------


def recording_start(*, room_id: str, user: User, duration_minutes: int = 60) -> Recording:
    """Start recording a room (host or moderator). The media server must accept within the control timeout.

    Errors: ``room_ended`` (410), ``not_moderator`` (403), ``recording_e2ee``
    and ``recording_in_progress`` (409), ``media_unavailable`` (503: the
    recording is failed with that reason), ``recording_refused`` (409: the
    media server said no). A duration-limit stop is scheduled with the worker.
    """
    with transaction.atomic():
        room = Room.objects.select_for_update().filter(public_id=room_id).first()
        if room is None:
            raise NotFound("No room has this ID.", code="room_not_found", room_id=room_id)
        if not is_room_moderator(room=room, user=user):
            raise Forbidden("Only the host or a moderator can record.", code="not_moderator")
        if room.is_ended:
            raise Gone("This room has ended.", code="room_ended")
        if room.e2ee:
            raise Conflict(
                "End-to-end encrypted rooms cannot be recorded: the server cannot see the media.",
                code="recording_e2ee",
            )
        active = room.recordings.filter(status__in=ACTIVE).first()
        if active is not None:
            raise Conflict(
                "This room is already being recorded.", code="recording_in_progress", recordingId=active.public_id
            )
        recording = Recording.objects.create(room=room, started_by=user, duration_limit_minutes=duration_minutes)
    try:
        media.start_recording(room=room.public_id, recording=recording.public_id)
    except media.MediaRecordingError as exc:
        reason = "media_unavailable" if exc.unavailable else f"media_refused: {exc.code}"
        recording_transition(recording_id=recording.pk, to=Recording.Status.FAILED, reason=reason)
        if exc.unavailable:
            raise MediaUnavailable(
                "The media server cannot be reached; nothing is being recorded.", recordingId=recording.public_id
            ) from exc
        raise Conflict(
            "The media server refused to record this room.",
            code="recording_refused",
            recordingId=recording.public_id,
            media_code=exc.code,
        ) from exc
    with transaction.atomic():
        recording = recording_transition(recording_id=recording.pk, to=Recording.Status.RECORDING)
        _enqueue_on_commit("recording_enforce_limit", recording.pk, countdown=duration_minutes * 60)
    if recording.stop_requested_at is not None:  # the room ended while we were starting
        recording = recording_stop(recording_id=recording.pk, reason=recording.stop_reason or "room_ended")
    return recording


@transaction.atomic
def _mark_stop_requested(recording_id: int, reason: str) -> Recording:
    recording = Recording.objects.select_for_update().select_related("room").get(pk=recording_id)
    if recording.status in ACTIVE and recording.stop_requested_at is None:
        recording.stop_requested_at = timezone.now()
        recording.stop_reason = reason
        recording.save(update_fields=["stop_requested_at", "stop_reason", "updated_at"])
    return recording


def recording_stop(*, recording_id: int, reason: str = "user") -> Recording:
    """Stop a recording (idempotent): ask the media server, then start processing its manifest.

    Raises :class:`MediaUnavailable` if the media server cannot be reached; the
    stop request is kept and the cleanup job retries it. A pending recording is
    stopped by ``recording_start`` once the media server has answered.
    """
    if reason not in STOP_REASONS:
        raise ValueError(f"unknown stop reason {reason!r}")
    recording = _mark_stop_requested(recording_id, reason)
    if recording.status != Recording.Status.RECORDING:
        return recording
    try:
        media.stop_recording(room=recording.room.public_id, recording=recording.public_id)
    except media.MediaRecordingError as exc:
        if exc.unavailable:
            raise MediaUnavailable(
                "The media server cannot be reached; the recording will be stopped when it is back.",
                recordingId=recording.public_id,
            ) from exc
        # The media server no longer knows it (e.g. it restarted): use what reached the spool.
        logger.warning("media server refused to stop %s: %s", recording.public_id, exc.code)
        if not _manifest_exists(recording):
            return recording_fail(recording_id=recording.pk, reason=f"media_lost: {exc.code}")
    return recording_media_stopped(recording_id=recording.public_id)


def _manifest_exists(recording: Recording) -> bool:
    return (recording_dir(settings.RECORDINGS_SPOOL_DIR, recording.public_id) / MANIFEST_NAME).is_file()


def recording_media_stopped(*, recording_id: str) -> Recording:
    """The media server wrote the manifest (``DELETE`` answered, or ``recording_stopped``): process it.

    Idempotent: only a recording that is still recording moves to processing.
    """
    with transaction.atomic():
        recording = Recording.objects.select_for_update().filter(public_id=recording_id).first()
        if recording is None:
            raise NotFound("No recording has this ID.", code="recording_not_found")
        if recording.status != Recording.Status.RECORDING:
            return recording
        recording = recording_transition(recording_id=recording.pk, to=Recording.Status.PROCESSING)
        _enqueue_on_commit("recording_process", recording.pk)
    return recording


def recording_media_event(*, event: dict[str, Any]) -> Recording | None:
    """Handle ``recording_stopped`` / ``recording_failed`` from the media server (docs/protocol.md §3)."""
    kind, room, rec = event.get("type"), event.get("room"), event.get("recording")
    if not isinstance(room, str) or not isinstance(rec, str):
        return None
    recording = Recording.objects.filter(public_id=rec, room__public_id=room).first()
    if recording is None:
        logger.warning("media event %s for unknown recording %s in %s", kind, rec, room)
        return None
    if kind == "recording_stopped":
        if recording.status == Recording.Status.PENDING:
            # The media server stopped before our start request finished: record the start first.
            recording = recording_transition(recording_id=recording.pk, to=Recording.Status.RECORDING)
        return recording_media_stopped(recording_id=rec)
    if kind == "recording_failed":
        reason = event.get("reason")
        return recording_fail(recording_id=recording.pk, reason=f"media: {reason if isinstance(reason, str) else '?'}")
    return None


def recordings_fail_for_lost_node(*, room_ids: list[str], node: str) -> int:
    """A media node died (``rooms.media_monitor``): its recordings of these rooms are gone.

    Each one still recording fails with reason ``media_lost: node <node> stopped``
    (its track files have no manifest; the room moves to another node without
    them). Returns how many failed.
    """
    ids = Recording.objects.filter(room__public_id__in=room_ids, status=Recording.Status.RECORDING).values_list(
        "pk", flat=True
    )
    failed = 0
    for pk in list(ids):
        recording = recording_fail(recording_id=pk, reason=f"media_lost: node {node} stopped")
        failed += recording.status == Recording.Status.FAILED
    return failed


def recordings_stop_for_room_end(*, room: Room) -> int:
    """Called by ``rooms.services.room_end`` inside its transaction: stop the room's active recordings.

    Marks them (so a start in flight stops too) and queues ``recording_stop_task``
    on commit: ending a room never waits for the media server.
    """
    ids = list(room.recordings.filter(status__in=ACTIVE).values_list("pk", flat=True))
    if ids:
        Recording.objects.filter(pk__in=ids, stop_requested_at__isnull=True).update(
            stop_requested_at=timezone.now(), stop_reason="room_ended"
        )
    for pk in ids:
        _enqueue_on_commit("recording_stop_task", pk)
    return len(ids)


# --- processing: lease, heartbeat, completion --------------------------------


def recording_claim(*, recording_id: int, lease: str) -> Recording | None:
    """Take the processing lease if the recording is processing and nobody live holds it; counts an attempt."""
    stale = timezone.now() - timedelta(seconds=settings.RECORDINGS_STALE_SECONDS)
    claimed = (
        Recording.objects.filter(pk=recording_id, status=Recording.Status.PROCESSING)
        .filter(Q(lease="") | Q(lease=lease) | Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale))
        .update(lease=lease, heartbeat_at=timezone.now(), attempts=F("attempts") + 1)
    )
    if not claimed:
        return None
    return Recording.objects.select_related("room").get(pk=recording_id)


def recording_heartbeat(*, recording_id: int, lease: str) -> bool:
    """Keep the lease alive; False if it was lost (the worker must stop)."""
    return bool(
        Recording.objects.filter(pk=recording_id, lease=lease, status=Recording.Status.PROCESSING).update(
            heartbeat_at=timezone.now()
        )
    )


def recording_release(*, recording_id: int, lease: str) -> None:
    """Give the lease back (before a retry), so the next attempt can claim it at once."""
    Recording.objects.filter(pk=recording_id, lease=lease).update(lease="", heartbeat_at=None)


@transaction.atomic
def recording_complete(
    *, recording_id: int, lease: str, file_name: str, thumbnail_name: str, duration_seconds: float, size_bytes: int
) -> Recording:
    """Record the uploaded result and mark the recording ready (only while holding the lease)."""
    recording = Recording.objects.select_for_update().get(pk=recording_id)
    if recording.lease != lease or recording.status != Recording.Status.PROCESSING:
        raise LeaseLost(recording.public_id)
    recording.file.name = file_name
    recording.thumbnail.name = thumbnail_name
    recording.duration_seconds = duration_seconds
    recording.size_bytes = size_bytes
    recording.lease = ""
    recording.save(update_fields=["file", "thumbnail", "duration_seconds", "size_bytes", "lease", "updated_at"])
    return recording_transition(recording_id=recording_id, to=Recording.Status.READY)


def recording_fail(*, recording_id: int, reason: str, lease: str | None = None) -> Recording:
    """Fail a recording with a reason (idempotent; with ``lease``, only while holding it)."""
    with transaction.atomic():
        recording = Recording.objects.select_for_update().get(pk=recording_id)
        if recording.status in (Recording.Status.FAILED, Recording.Status.READY):
            return recording
        if lease is not None and recording.lease != lease:
            raise LeaseLost(recording.public_id)
        return recording_transition(recording_id=recording_id, to=Recording.Status.FAILED, reason=reason)


def recording_retry(*, recording_id: str, user: User) -> Recording:
    """Process a failed recording again (host/moderator), if its raw files are still in the spool."""
    with transaction.atomic():
        recording = _get_managed(recording_id=recording_id, user=user, lock=True)
        if recording.status != Recording.Status.FAILED:
            raise Conflict("Only a failed recording can be retried.", code="recording_not_failed")
        if not _manifest_exists(recording):
            raise Conflict("The raw recording is gone; it cannot be processed again.", code="recording_raw_missing")
        Recording.objects.filter(pk=recording.pk).update(attempts=0)
        recording = recording_transition(recording_id=recording.pk, to=Recording.Status.PROCESSING)
        _enqueue_on_commit("recording_process", recording.pk)
    return recording


# --- sharing -----------------------------------------------------------------


def _get_managed(*, recording_id: str, user: User, lock: bool = False) -> Recording:
    qs = Recording.objects.select_related("room")
    if lock:
        qs = qs.select_for_update()
    recording = qs.filter(public_id=recording_id).first()
    if recording is None or not (is_room_moderator(room=recording.room, user=user) or _shared_with(recording, user)):
        raise NotFound("No recording has this ID.", code="recording_not_found")
    if not is_room_moderator(room=recording.room, user=user):
        raise Forbidden("Only the room's host or a moderator can do this.", code="not_moderator")
    return recording


def _shared_with(recording: Recording, user: User) -> bool:
    return recording.shares.filter(user=user).exists()


def recording_stop_by_user(*, recording_id: str, user: User) -> Recording:
    recording = _get_managed(recording_id=recording_id, user=user)
    if recording.status not in ACTIVE:
        raise Conflict("This recording is not running.", code="recording_not_running", status=recording.status)
    return recording_stop(recording_id=recording.pk, reason="user")


@transaction.atomic
def recording_share(*, recording_id: str, user: User, username: str) -> RecordingShare:
    """Let ``username`` see and download the recording (host/moderator). Idempotent."""
    recording = _get_managed(recording_id=recording_id, user=user)
    target = get_user_model().objects.filter(username=username).first()
    if target is None:
        raise NotFound("No user has this username.", code="user_not_found")
    share, _ = RecordingShare.objects.get_or_create(recording=recording, user=target, defaults={"shared_by": user})
    return share


@transaction.atomic
def recording_unshare(*, recording_id: str, user: User, username: str) -> None:
    recording = _get_managed(recording_id=recording_id, user=user)
    deleted, _ = recording.shares.filter(user__username=username).delete()
    if not deleted:
        raise NotFound("This recording is not shared with that user.", code="share_not_found")


# --- cleanup -----------------------------------------------------------------


def recordings_cleanup(*, now: datetime | None = None) -> dict[str, int]:
    """Find recordings stuck in any state and move them on; safe to run concurrently and often.

    * processing with a stale heartbeat (dead worker) or never claimed: re-queued,
      or failed ``worker_lost`` after ``RECORDINGS_MAX_ATTEMPTS`` attempts;
    * recording past its duration limit, or in an ended room: stopped;
    * stop requested but no manifest after ``RECORDINGS_STOP_GRACE_SECONDS``:
      the stop is retried; if the media server is still gone, the manifest in
      the spool is used, else the recording fails ``media_lost``;
    * pending for longer than ``RECORDINGS_PENDING_TIMEOUT_SECONDS``: failed ``media_unavailable``.
    """
    now = now or timezone.now()
    counts = {"requeued": 0, "failed": 0, "stopped": 0}
    stale = now - timedelta(seconds=settings.RECORDINGS_STALE_SECONDS)
    processing = Recording.objects.filter(status=Recording.Status.PROCESSING).filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, processing_started_at__lt=stale)
    )
    for pk, attempts in processing.values_list("pk", "attempts"):
        try:
            if attempts >= settings.RECORDINGS_MAX_ATTEMPTS:
                recording_fail(recording_id=pk, reason="worker_lost")
                counts["failed"] += 1
                continue
            with transaction.atomic():
                Recording.objects.filter(pk=pk, status=Recording.Status.PROCESSING).update(
                    lease="", heartbeat_at=None, processing_started_at=now
                )
                _enqueue_on_commit("recording_process", pk)
            counts["requeued"] += 1
        except Exception:
            logger.exception("cleanup: could not re-queue recording %s", pk)

    running = Recording.objects.filter(status=Recording.Status.RECORDING).select_related("room")
    for recording in running:
        limit = (
            recording.started_at + timedelta(minutes=recording.duration_limit_minutes) if recording.started_at else now
        )
        grace = timedelta(seconds=settings.RECORDINGS_STOP_GRACE_SECONDS)
        reason = ""
        if recording.stop_requested_at is not None:
            reason = recording.stop_reason or "user"
        elif recording.room.is_ended:
            reason = "room_ended"
        elif limit <= now:
            reason = "duration_limit"
        if not reason:
            continue
        try:
            recording_stop(recording_id=recording.pk, reason=reason)
            counts["stopped"] += 1
        except MediaUnavailable:
            requested = recording.stop_requested_at or now
            if requested + grace > now:
                continue
            if _manifest_exists(recording):
                recording_media_stopped(recording_id=recording.public_id)
                counts["stopped"] += 1
            else:
                recording_fail(recording_id=recording.pk, reason="media_lost")
                counts["failed"] += 1
        except Exception:
            logger.exception("cleanup: could not stop recording %s", recording.public_id)

    pending_cutoff = now - timedelta(seconds=settings.RECORDINGS_PENDING_TIMEOUT_SECONDS)
    stuck = Recording.objects.filter(status=Recording.Status.PENDING, created_at__lt=pending_cutoff)
    for pk, rec_id, room_id in stuck.values_list("pk", "public_id", "room__public_id"):
        try:
            try:  # the web process may have died after the media server started: stop it there too
                media.stop_recording(room=room_id, recording=rec_id)
            except media.MediaRecordingError:
                pass
            recording_fail(recording_id=pk, reason="media_unavailable")
            counts["failed"] += 1
        except Exception:
            logger.exception("cleanup: could not fail pending recording %s", pk)
    return counts
