"""`manage.py recordings_cleanup`: the stale-recording job, once (cron-able; beat runs the same task)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from recordings.services import recordings_cleanup


class Command(BaseCommand):
    help = "Re-queue recordings whose worker died, stop overdue ones, fail the ones the media server lost."

    def handle(self, *args: Any, **options: Any) -> None:
        counts = recordings_cleanup()
        self.stdout.write(" ".join(f"{k}={v}" for k, v in sorted(counts.items())))
