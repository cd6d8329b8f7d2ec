"""Chat writes: a message is stored (with its room sequence number) before anyone sees it."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from conference.errors import DomainError, Forbidden, NotFound
from rooms import events
from rooms.models import Participant, Room

from .models import MAX_MESSAGE_LENGTH, Message

MAX_CLIENT_ID_LENGTH = 64


def message_public(message: Message) -> dict[str, Any]:
    """A message as clients see it. ``text`` is plain text: clients must escape it."""
    return {
        "id": message.public_id,
        "seq": message.seq,
        "sender": message.sender.public_id if message.sender_id and message.sender else None,
        "sender_name": message.sender_name,
        "to": message.recipient.public_id if message.recipient_id and message.recipient else None,
        "text": message.text,
        "client_id": message.client_id or None,
        "created_at": message.created_at.isoformat(),
    }


def chat_post(
    *, sender: Participant, text: str, client_id: str = "", recipient_id: str | None = None
) -> tuple[Message, bool]:
    """Store a message and broadcast it on commit. Returns (message, created).

    Retrying with the same ``client_id`` returns the stored message instead of
    a duplicate, so a client can resend safely after a lost acknowledgement.
    """
    if not isinstance(text, str) or not text.strip():
        raise DomainError("A message needs text.", code="empty_message")
    if len(text) > MAX_MESSAGE_LENGTH:
        raise DomainError(
            f"A message has at most {MAX_MESSAGE_LENGTH} characters.", code="message_too_long", max=MAX_MESSAGE_LENGTH
        )
    if len(client_id) > MAX_CLIENT_ID_LENGTH:
        raise DomainError("client_id is too long.", code="invalid_client_id")
    if "\x00" in text + client_id or any("\ud800" <= ch <= "\udfff" for ch in text + client_id):
        raise DomainError("A message cannot contain NUL or a lone surrogate.", code="invalid_characters")
    if sender.state != Participant.State.ADMITTED:
        raise Forbidden("Only admitted participants can chat.", code="not_admitted")
    if client_id:
        existing = Message.objects.filter(sender=sender, client_id=client_id).select_related("sender", "recipient")
        if (found := existing.first()) is not None:
            return found, False
    try:
        with transaction.atomic():
            recipient = None
            if recipient_id:
                recipient = sender.room.participants.filter(
                    public_id=recipient_id, state=Participant.State.ADMITTED
                ).first()
                if recipient is None:
                    raise NotFound("No admitted participant has this ID.", code="recipient_not_found")
            # Row-locking increment: gap-free, strictly increasing per room.
            Room.objects.filter(pk=sender.room_id).update(chat_seq=F("chat_seq") + 1)
            seq = Room.objects.values_list("chat_seq", flat=True).get(pk=sender.room_id)
            message = Message.objects.create(
                room_id=sender.room_id,
                seq=seq,
                sender=sender,
                sender_name=sender.display_name,
                recipient=recipient,
                text=text,
                client_id=client_id,
            )
            frame = {"type": "chat_message", "message": message_public(message)}
            room_id = sender.room.public_id
            if recipient is None:
                events.to_room(room_id, frame)
            else:
                events.to_participant(room_id, recipient.public_id, frame)
                if recipient.pk != sender.pk:
                    events.to_participant(room_id, sender.public_id, frame)
            return message, True
    except IntegrityError:
        # Two sends with one client_id raced: the other one stored it.
        found = Message.objects.filter(sender=sender, client_id=client_id).first() if client_id else None
        if found is None:
            raise
        return found, False
