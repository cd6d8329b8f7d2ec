"""Chat messages, stored before they are broadcast."""

from __future__ import annotations

from django.db import models

from rooms.ids import new_message_id
from rooms.models import Participant, Room

MAX_MESSAGE_LENGTH = 4000


class Message(models.Model):
    """A chat message. ``seq`` increases by one per room (gap-free)."""

    public_id = models.CharField(max_length=16, unique=True, default=new_message_id, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField()
    sender = models.ForeignKey(Participant, null=True, on_delete=models.SET_NULL, related_name="sent_messages")
    # Snapshot of the sender's name, kept when the participant record goes.
    sender_name = models.CharField(max_length=80)
    # Private message to one participant; null = everyone in the room.
    recipient = models.ForeignKey(
        Participant, null=True, blank=True, on_delete=models.SET_NULL, related_name="received_messages"
    )
    text = models.TextField(max_length=MAX_MESSAGE_LENGTH)
    # The sender's idempotency key: a retried send returns the stored message.
    client_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="chat_message_room_seq"),
            models.UniqueConstraint(
                fields=["sender", "client_id"],
                condition=~models.Q(client_id=""),
                name="chat_message_sender_client_id",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.sender_name}: {self.text[:40]}"
