"""Recording state machine: every status change goes through ``recording_transition``."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from conference.errors import Conflict

from .models import Recording


@transaction.atomic
def recording_transition(*, recording_id: int, to: str, reason: str = "") -> Recording:
    """Move a recording to ``to`` if the state machine allows it; ``failed`` needs a reason."""
    recording = Recording.objects.select_for_update().get(pk=recording_id)
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
    elif to == Recording.Status.FAILED:
        recording.failure_reason = reason
    recording.save()
    return recording
