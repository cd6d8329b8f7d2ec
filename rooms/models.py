"""Rooms and the people in them."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from .ids import new_participant_id, new_room_id

MIN_PARTICIPANTS = 2
MAX_PARTICIPANTS = 100
MAX_LAST_N = 100  # media_server/protocol.py MAX_LAST_N


class Room(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        ENDED = "ended", "Ended"

    public_id = models.CharField(max_length=16, unique=True, default=new_room_id, editable=False)
    name = models.CharField(max_length=200)
    host = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="hosted_rooms")
    max_participants = models.PositiveSmallIntegerField(
        default=50, validators=[MinValueValidator(MIN_PARTICIPANTS), MaxValueValidator(MAX_PARTICIPANTS)]
    )
    password_hash = models.CharField(max_length=200, blank=True, help_text="Hashed room password; empty = none.")
    waiting_room = models.BooleanField(default=False, help_text="Joiners wait until a host or moderator admits them.")
    locked = models.BooleanField(default=False, help_text="Only hosts and moderators may join a locked room.")
    allow_guests = models.BooleanField(default=True, help_text="People without an account may join with a name.")
    e2ee = models.BooleanField(default=False, help_text="End-to-end encrypted media; fixed at creation.")
    last_n = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(MAX_LAST_N)],
        help_text="Cameras each participant receives (the most recent speakers, pinned first); "
        "empty = by room size (all up to 6 people, 9 up to 20, then 6). 0 = only pinned and screen shares.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    # Head of the per-room chat sequence; incremented under a row lock.
    chat_seq = models.PositiveBigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["host", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(max_participants__gte=MIN_PARTICIPANTS)
                & models.Q(max_participants__lte=MAX_PARTICIPANTS),
                name="room_capacity_range",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"

    @property
    def has_password(self) -> bool:
        return bool(self.password_hash)

    @property
    def is_ended(self) -> bool:
        return self.status == self.Status.ENDED


class Role(models.TextChoices):
    HOST = "host", "Host"
    MODERATOR = "moderator", "Moderator"
    PARTICIPANT = "participant", "Participant"
    GUEST = "guest", "Guest"


MODERATOR_ROLES = frozenset({Role.HOST, Role.MODERATOR})


class Participant(models.Model):
    """One person's membership of one room, from join request to leaving.

    A participant holds a seat while ``state`` is admitted and it was seen
    within ``PRESENCE_TIMEOUT_SECONDS`` (``last_seen_at`` is bumped by the
    join and by the room socket's heartbeat), so a crashed client or process
    frees its seat by itself.
    """

    class State(models.TextChoices):
        WAITING = "waiting", "Waiting in lobby"
        ADMITTED = "admitted", "Admitted"
        DENIED = "denied", "Denied"
        LEFT = "left", "Left"
        REMOVED = "removed", "Removed"

    public_id = models.CharField(max_length=16, unique=True, default=new_participant_id, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="participants")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="participations"
    )
    display_name = models.CharField(max_length=80)
    role = models.CharField(max_length=12, choices=Role.choices, default=Role.PARTICIPANT)
    state = models.CharField(max_length=10, choices=State.choices, default=State.ADMITTED)
    # Bumped to revoke every grant issued before (removal, role change).
    grant_version = models.PositiveIntegerField(default=1, editable=False)
    stream_capabilities = models.JSONField(default=dict, blank=True)
    # Live media state mirrored for snapshots (muted, camera off, sharing, hand).
    audio_muted = models.BooleanField(default=False)
    video_muted = models.BooleanField(default=False)
    screen_sharing = models.BooleanField(default=False)
    hand_raised_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    admitted_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    left_at = models.DateTimeField(null=True, blank=True)
    # A guest's browser (the signed cookie of rooms/removals.py): a removed guest's browser cannot rejoin.
    browser_key = models.CharField(max_length=32, blank=True, default="", editable=False)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["room", "state", "last_seen_at"]),
            models.Index(fields=["user", "room"]),
            models.Index(fields=["room", "browser_key"]),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} in {self.room.public_id} ({self.role}, {self.state})"

    @property
    def is_moderator(self) -> bool:
        return self.role in MODERATOR_ROLES
