"""Scheduled meetings: a title, a first start in an IANA time zone, a duration, an optional RFC 5545 RRULE,
the invitees' addresses, and the room the meeting owns (created through ``rooms.services``)."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from rooms.ids import new_id
from rooms.models import Room

MAX_DURATION_MINUTES = 24 * 60
MAX_INVITEES = 100
RRULE_MAX_LENGTH = 500


def new_meeting_id() -> str:
    return new_id(10, "mtg")


class Meeting(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        CANCELLED = "cancelled", "Cancelled"

    public_id = models.CharField(max_length=16, unique=True, default=new_meeting_id, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scheduled_meetings")
    room = models.OneToOneField(Room, on_delete=models.CASCADE, related_name="scheduled_meeting")
    title = models.CharField(max_length=200)
    starts_at = models.DateTimeField(help_text="The first occurrence's start (stored in UTC).")
    time_zone = models.CharField(max_length=64, help_text="IANA zone the meeting's wall-clock times are in.")
    duration_minutes = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(MAX_DURATION_MINUTES)]
    )
    rrule = models.CharField(
        max_length=RRULE_MAX_LENGTH, blank=True, help_text="RFC 5545 RRULE value (FREQ=WEEKLY;…); empty = once."
    )
    # End of the last occurrence; null = recurs forever. Lets "upcoming" be one indexed query.
    last_ends_at = models.DateTimeField(null=True, blank=True, editable=False)
    # iCalendar UID (stable for the meeting's life) and SEQUENCE (raised by every change and the cancellation).
    ical_uid = models.CharField(max_length=255, unique=True, editable=False)
    sequence = models.PositiveIntegerField(default=0, editable=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SCHEDULED)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["starts_at"]
        indexes = [models.Index(fields=["owner", "status", "last_ends_at"])]

    def __str__(self) -> str:
        return f"{self.title} ({self.public_id})"

    @property
    def is_cancelled(self) -> bool:
        return self.status == self.Status.CANCELLED


class MeetingInvitee(models.Model):
    meeting = models.ForeignKey(Meeting, on_delete=models.CASCADE, related_name="invitees")
    email = models.EmailField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["email"]
        constraints = [models.UniqueConstraint(fields=["meeting", "email"], name="meeting_invitee_unique")]

    def __str__(self) -> str:
        return self.email
