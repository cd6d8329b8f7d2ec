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
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.status})"
