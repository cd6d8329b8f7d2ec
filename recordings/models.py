"""Server-side recordings and their state machine."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from rooms.ids import new_recording_id
from rooms.models import Room


class Recording(models.Model):
    """pending → recording → processing → ready, or failed (with a reason) from any non-final state."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RECORDING = "recording", "Recording"
        PROCESSING = "processing", "Processing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    TRANSITIONS: dict[str, frozenset[str]] = {
        Status.PENDING: frozenset({Status.RECORDING, Status.FAILED}),
        Status.RECORDING: frozenset({Status.PROCESSING, Status.FAILED}),
        Status.PROCESSING: frozenset({Status.READY, Status.FAILED}),
        Status.READY: frozenset(),
        Status.FAILED: frozenset({Status.PROCESSING}),  # a failed transcode may be retried
    }

    public_id = models.CharField(max_length=16, unique=True, default=new_recording_id, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="recordings")
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="recordings"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.TextField(blank=True)
    duration_limit_minutes = models.PositiveIntegerField(default=60)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    processing_started_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    file = models.FileField(upload_to="recordings/%Y/%m/", blank=True)
    thumbnail = models.FileField(upload_to="recordings/%Y/%m/", blank=True)
    # Why and when a stop was asked for (user, duration_limit, room_ended); the
    # media server confirms it with the manifest.
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=32, blank=True)
    # Processing lease: the worker holding ``lease`` bumps ``heartbeat_at``; a
    # stale heartbeat means the worker died and the cleanup job re-queues it.
    lease = models.CharField(max_length=64, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "heartbeat_at"]), models.Index(fields=["room", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.status})"


class RecordingShare(models.Model):
    """A user the host (or a moderator) let see and download one recording."""

    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="shares")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="shared_recordings")
    shared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [models.UniqueConstraint(fields=["recording", "user"], name="recording_share_unique")]

    def __str__(self) -> str:
        return f"{self.recording.public_id} → {self.user}"
