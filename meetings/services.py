"""Every write to scheduled meetings goes through these functions.

Each meeting owns a room, created and renamed through ``rooms.services`` and ended when the meeting is
cancelled. Invitations leave only after the transaction commits (``transaction.on_commit`` queues the
``meeting_invites_send`` task), so a rolled-back change never reaches anyone's calendar. Every change
raises the meeting's SEQUENCE under a lock on its row; the task renders the invitation from the row as it
is when it runs, so a later change can only make a mail newer, never older.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from email.mime.text import MIMEText
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from conference.errors import DomainError, Gone, NotFound
from rooms import services as room_services

from .ics import CANCEL, REQUEST, Invitation, invitation_ics
from .models import MAX_DURATION_MINUTES, MAX_INVITEES, Meeting, MeetingInvitee
from .recurrence import Schedule, local_start, rrule_normalize, time_zone_get
from .selectors import meeting_schedule

logger = logging.getLogger(__name__)

TITLE_MAX = 200


def _clean_title(title: str) -> str:
    title = title.strip()
    if not title:
        raise DomainError("A meeting needs a title.", code="invalid_title")
    if len(title) > TITLE_MAX:
        raise DomainError(f"A title has at most {TITLE_MAX} characters.", code="invalid_title")
    return title


def _clean_duration(minutes: int) -> int:
    if not 1 <= minutes <= MAX_DURATION_MINUTES:
        raise DomainError(f"duration_minutes must be between 1 and {MAX_DURATION_MINUTES}.", code="invalid_duration")
    return minutes


def clean_invitees(emails: Iterable[str]) -> list[str]:
    """Addresses lower-cased, de-duplicated, in order; each must be valid, at most ``MAX_INVITEES``."""
    seen: dict[str, None] = {}
    for raw in emails:
        email = raw.strip().lower()
        if not email:
            continue
        try:
            validate_email(email)
        except ValidationError as exc:
            raise DomainError(f"Not an e-mail address: {email[:100]}", code="invalid_invitee") from exc
        seen[email] = None
    if len(seen) > MAX_INVITEES:
        raise DomainError(f"At most {MAX_INVITEES} invitees.", code="too_many_invitees")
    return list(seen)


def _schedule(*, start: datetime, time_zone: str, duration_minutes: int, rrule: str) -> Schedule:
    """Validated times: the zone, the start in it, the duration, the recurrence (in that order)."""
    zone = time_zone_get(time_zone)
    local = local_start(start, zone)
    duration = timedelta(minutes=_clean_duration(duration_minutes))
    return Schedule(start=local, duration=duration, rrule=rrule_normalize(rrule, start=local))


def _uid(public_id: str) -> str:
    host = urlsplit(settings.PUBLIC_BASE_URL).hostname or "conference.invalid"
    return f"{public_id}@{host}"


def _send_on_commit(meeting: Meeting, method: str, emails: list[str], base_url: str) -> None:
    if not emails:
        return

    def send() -> None:
        from .tasks import meeting_invites_send  # tasks import this module

        try:
            meeting_invites_send.delay(meeting.pk, method, emails, base_url)
        except Exception:
            logger.exception("could not queue %s invitations for meeting %s", method, meeting.public_id)

    transaction.on_commit(send)


@transaction.atomic
def meeting_create(
    *,
    owner: User,
    title: str,
    start: datetime,
    time_zone: str,
    duration_minutes: int,
    rrule: str = "",
    invitees: Iterable[str] = (),
    base_url: str,
    now: datetime | None = None,
) -> Meeting:
    """Schedule a meeting, create its room (hosted by ``owner``) and invite everyone (METHOD:REQUEST).

    Rules, in order: the title is not blank; the time zone is an IANA name; the start exists in it (a
    naive start is a wall-clock time there); the duration is 1 minute to 24 hours; the RRULE is valid and
    starts at the start (``recurrence.rrule_normalize``); the invitees are valid addresses, at most
    ``MAX_INVITEES``; the meeting has an occurrence that has not ended yet.
    """
    title = _clean_title(title)
    schedule = _schedule(start=start, time_zone=time_zone, duration_minutes=duration_minutes, rrule=rrule)
    emails = clean_invitees(invitees)
    if schedule.current_or_next(now or timezone.now()) is None:
        raise DomainError("The meeting would already be over; choose a later start.", code="meeting_in_past")
    room = room_services.room_create(host=owner, name=title)
    meeting = Meeting(
        owner=owner,
        room=room,
        title=title,
        starts_at=schedule.start,
        time_zone=time_zone,
        duration_minutes=duration_minutes,
        rrule=schedule.rrule,
        last_ends_at=schedule.last_end(),
    )
    meeting.ical_uid = _uid(meeting.public_id)
    meeting.save()
    MeetingInvitee.objects.bulk_create([MeetingInvitee(meeting=meeting, email=email) for email in emails])
    _send_on_commit(meeting, REQUEST, emails, base_url)
    return meeting


UPDATABLE = frozenset({"title", "start", "time_zone", "duration_minutes", "rrule", "invitees"})


def _lock_own(meeting_id: str, user: User) -> Meeting:
    meeting = Meeting.objects.select_for_update().filter(public_id=meeting_id, owner=user).first()
    if meeting is None:
        raise NotFound("No meeting of yours has this ID.", code="meeting_not_found", meeting_id=meeting_id[:32])
    return meeting


@transaction.atomic
def meeting_update(*, meeting_id: str, user: User, base_url: str, **changes: Any) -> Meeting:
    """Change a meeting (its owner only) and send updated invitations: same UID, SEQUENCE + 1.

    Rules, in order: the meeting is the user's; it is not cancelled; only ``UPDATABLE`` fields change; the
    new values pass ``meeting_create``'s rules (a changed start, zone or duration re-validates the RRULE
    against the new start; a new zone without a new start keeps the wall-clock time). Nothing changed: nothing is saved or sent. Otherwise the current invitees get
    METHOD:REQUEST, invitees taken off the list get METHOD:CANCEL, and the room is renamed with the title.
    """
    meeting = _lock_own(meeting_id, user)
    if meeting.is_cancelled:
        raise Gone("This meeting was cancelled.", code="meeting_cancelled")
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise DomainError("These fields cannot be changed.", code="invalid_field", fields=sorted(unknown))
    current = meeting_schedule(meeting)
    title = _clean_title(changes.get("title", meeting.title))
    time_zone = changes.get("time_zone", meeting.time_zone)
    start = changes.get("start", current.start.replace(tzinfo=None) if "time_zone" in changes else current.start)
    schedule = _schedule(
        start=start,
        time_zone=time_zone,
        duration_minutes=changes.get("duration_minutes", meeting.duration_minutes),
        rrule=changes.get("rrule", meeting.rrule),
    )
    old_emails = [invitee.email for invitee in meeting.invitees.all()]
    emails = clean_invitees(changes["invitees"]) if "invitees" in changes else old_emails
    if schedule.current_or_next(timezone.now()) is None:
        raise DomainError("The meeting would already be over; choose a later start.", code="meeting_in_past")
    new_values = {
        "title": title,
        "starts_at": schedule.start,
        "time_zone": time_zone,
        "duration_minutes": int(schedule.duration.total_seconds() // 60),
        "rrule": schedule.rrule,
    }
    changed = [field for field, value in new_values.items() if getattr(meeting, field) != value]
    if not changed and set(emails) == set(old_emails):
        return meeting
    for field, value in new_values.items():
        setattr(meeting, field, value)
    meeting.last_ends_at = schedule.last_end()
    meeting.sequence += 1
    meeting.save()
    removed = [email for email in old_emails if email not in emails]
    added = [email for email in emails if email not in old_emails]
    meeting.invitees.filter(email__in=removed).delete()
    MeetingInvitee.objects.bulk_create([MeetingInvitee(meeting=meeting, email=email) for email in added])
    if "title" in changed:
        room_services.room_update(room_id=meeting.room.public_id, user=user, name=title)
    _send_on_commit(meeting, REQUEST, emails, base_url)
    _send_on_commit(meeting, CANCEL, removed, base_url)
    return meeting


@transaction.atomic
def meeting_cancel(*, meeting_id: str, user: User, base_url: str) -> Meeting:
    """Cancel a meeting (its owner only): SEQUENCE + 1, METHOD:CANCEL to every invitee, its room ends.
    Cancelling a cancelled meeting changes and sends nothing."""
    meeting = _lock_own(meeting_id, user)
    if meeting.is_cancelled:
        return meeting
    meeting.status = Meeting.Status.CANCELLED
    meeting.cancelled_at = timezone.now()
    meeting.sequence += 1
    meeting.save(update_fields=["status", "cancelled_at", "sequence", "updated_at"])
    room_services.room_end(room_id=meeting.room.public_id, user=user)
    _send_on_commit(meeting, CANCEL, [invitee.email for invitee in meeting.invitees.all()], base_url)
    return meeting


def meeting_join_url(meeting: Meeting, base_url: str) -> str:
    return f"{base_url.rstrip('/')}/join/{meeting.room.public_id}"


def meeting_invitation(meeting: Meeting, base_url: str) -> Invitation:
    owner = meeting.owner
    return Invitation(
        uid=meeting.ical_uid,
        sequence=meeting.sequence,
        title=meeting.title,
        start=meeting_schedule(meeting).start,
        duration=timedelta(minutes=meeting.duration_minutes),
        rrule=meeting.rrule,
        join_url=meeting_join_url(meeting, base_url),
        organizer_email=owner.email or parseaddr(settings.DEFAULT_FROM_EMAIL)[1],
        organizer_name=owner.get_full_name() or owner.get_username(),
        attendees=tuple(invitee.email for invitee in meeting.invitees.all()),
    )


def _mail_body(meeting: Meeting, invitation: Invitation, method: str) -> tuple[str, str]:
    when = f"{invitation.start:%A %d %B %Y, %H:%M} ({meeting.time_zone}), {meeting.duration_minutes} minutes"
    if invitation.rrule:
        when += f", repeating ({invitation.rrule})"
    if method == CANCEL:
        return f"Cancelled: {meeting.title}", f"This meeting is cancelled or you were taken off it:\n\n{when}\n"
    prefix = "Updated invitation" if meeting.sequence else "Invitation"
    body = f"{invitation.organizer_name} invites you to {meeting.title}.\n\n{when}\n\nJoin: {invitation.join_url}\n"
    return f"{prefix}: {meeting.title}", body


def meeting_invites_send(*, meeting_id: int, method: str, emails: list[str], base_url: str) -> int:
    """Mail the invitation (``method`` REQUEST or CANCEL) to ``emails`` as the meeting is now: one message
    per address, each with the ``.ics`` attached (``text/calendar; method=…``). A REQUEST for a meeting
    cancelled since is not sent (its CANCEL is queued too). Returns how many messages were sent."""
    meeting = Meeting.objects.select_related("room", "owner").prefetch_related("invitees").filter(pk=meeting_id).first()
    if meeting is None or (method == REQUEST and meeting.is_cancelled):
        return 0
    invitation = meeting_invitation(meeting, base_url)
    ics = invitation_ics(invitation, method=method)
    subject, body = _mail_body(meeting, invitation, method)
    messages = []
    for email in emails:
        message = EmailMessage(subject=subject, body=body, to=[email], reply_to=[invitation.organizer_email])
        part = MIMEText(ics.decode(), "calendar", "utf-8")
        part.set_param("method", method)
        part.add_header("Content-Disposition", "attachment", filename="invite.ics")
        message.attach(part)
        messages.append(message)
    with get_connection() as connection:
        return connection.send_messages(messages) or 0
