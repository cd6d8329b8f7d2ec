"""Celery tasks for scheduled meetings: they take IDs and call services."""

from __future__ import annotations

import smtplib

from celery import shared_task

from . import services


@shared_task(autoretry_for=(OSError, smtplib.SMTPException), retry_backoff=True, max_retries=5)
def meeting_invites_send(meeting_id: int, method: str, emails: list[str], base_url: str) -> int:
    """Mail the meeting's invitation (REQUEST or CANCEL); a mail server outage retries with backoff."""
    return services.meeting_invites_send(meeting_id=meeting_id, method=method, emails=emails, base_url=base_url)
