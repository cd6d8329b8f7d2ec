"""Breakout rooms: a meeting split into child rooms for a while (docs/architecture.md "Breakout rooms").

Each breakout is an ordinary :class:`rooms.models.Room` (its own chat sequence, its own media room on the
media server) linked to its meeting here. A person keeps their participant record (and seat) in the
meeting while inside a breakout, where they have a second participant record (``BreakoutSeat``).
"""

from __future__ import annotations

from django.db import models

from rooms.models import Participant, Room

MAX_BREAKOUTS = 20
MAX_DURATION_MINUTES = 240
# "Returning in 60 s": how long people stay in their breakouts after the host closes them.
DEFAULT_CLOSE_DELAY_SECONDS = 60
MAX_CLOSE_DELAY_SECONDS = 300


class BreakoutSession(models.Model):
    """One split of a meeting into breakouts, from opening to everyone's return."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSING = "closing", "Closing (countdown)"
        CLOSED = "closed", "Closed"

    meeting = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="breakout_sessions")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_by = models.ForeignKey(Participant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The timer: when the countdown starts by itself (None: no timer).
    ends_at = models.DateTimeField(null=True, blank=True)
    # During the countdown: when everyone is brought back.
    closes_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["meeting"],
                condition=models.Q(status__in=["open", "closing"]),
                name="one_live_breakout_session_per_meeting",
            )
        ]

    def __str__(self) -> str:
        return f"Breakouts of {self.meeting.public_id} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status != self.Status.CLOSED


class Breakout(models.Model):
    """One breakout room of a session: a child room of the meeting."""

    session = models.ForeignKey(BreakoutSession, on_delete=models.CASCADE, related_name="breakouts")
    room = models.OneToOneField(Room, on_delete=models.CASCADE, related_name="breakout")
    index = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=80)

    class Meta:
        ordering = ["session", "index"]
        constraints = [models.UniqueConstraint(fields=["session", "index"], name="breakout_index_unique")]

    def __str__(self) -> str:
        return f"{self.name} ({self.room.public_id})"


class BreakoutAssignment(models.Model):
    """Which breakout a meeting participant is assigned to (None: stays in the main room)."""

    session = models.ForeignKey(BreakoutSession, on_delete=models.CASCADE, related_name="assignments")
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="breakout_assignments")
    breakout = models.ForeignKey(Breakout, null=True, blank=True, on_delete=models.CASCADE, related_name="assigned")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "participant"], name="one_assignment_per_participant")
        ]

    def __str__(self) -> str:
        return f"{self.participant_id} → {self.breakout_id or 'main room'}"


class BreakoutSeat(models.Model):
    """A meeting participant's participant record inside one breakout (reused on every visit)."""

    breakout = models.ForeignKey(Breakout, on_delete=models.CASCADE, related_name="seats")
    main_participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="breakout_seats")
    participant = models.OneToOneField(Participant, on_delete=models.CASCADE, related_name="breakout_seat")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["breakout", "main_participant"], name="one_seat_per_breakout_and_person")
        ]

    def __str__(self) -> str:
        return f"{self.main_participant_id} in breakout {self.breakout_id}"
