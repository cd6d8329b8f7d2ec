"""Celery tasks for breakout rooms: they take IDs and call services (whose row guard makes reruns harmless)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task
def breakouts_expire_task(session_pk: int) -> bool:
    """A split's timer ran out: start the "returning in 60 s" countdown (no-op if closed or early)."""
    return services.breakouts_expire(session_pk=session_pk)


@shared_task
def breakouts_finish_task(session_pk: int) -> bool:
    """A split's countdown ran out: everyone goes back to the main room (no-op if done or early)."""
    return services.breakouts_finish(session_pk=session_pk)


@shared_task
def breakouts_due_task() -> int:
    """Periodic catch-up (Celery beat): timers whose task was lost (broker outage, worker down) still fire."""
    return services.breakouts_due()
