"""Server-rendered pages for rooms: home, my rooms, the pre-join/call page, settings, recordings.

Views are thin: reads go through selectors (or a single ORM lookup), writes
through ``rooms.services``. The call itself runs in ``static/js/call/``
against the REST join API and the room socket (docs/protocol.md §1).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from csp.decorators import csp_update
from django import forms
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import ensure_csrf_cookie

from conference.errors import DomainError
from meetings.selectors import room_opens_at
from recordings import selectors as recording_selectors
from recordings import services as recording_services
from recordings.downloads import download_url, url_lifetime
from recordings.models import RecordingShare

from . import selectors, services
from .ids import ROOM_ID_RE
from .models import MAX_LAST_N, MAX_PARTICIPANTS, MIN_PARTICIPANTS, Participant, Role, Room
from .permissions import is_room_moderator


def _room_or_none(room_id: str) -> Room | None:
    return Room.objects.filter(public_id=room_id).first() if ROOM_ID_RE.match(room_id) else None


def _not_found(request: HttpRequest) -> HttpResponse:
    return render(request, "error.html", {"message": "No room has this ID."}, status=404)


class NewMeetingForm(forms.Form):
    """The home page's "New meeting": the same limits as ``POST /api/v1/rooms`` (200 characters, no NUL)."""

    name = forms.CharField(max_length=200, required=False)
    waiting_room = forms.BooleanField(required=False)
    e2ee = forms.BooleanField(required=False)


def home(request: HttpRequest) -> HttpResponse:
    """Create a room (signed in) or join one by ID or link."""
    error = ""
    if request.method == "POST":
        if "join" in request.POST:
            value = request.POST.get("room", "").strip().rstrip("/").rsplit("/", 1)[-1].lower()
            if ROOM_ID_RE.match(value):
                return redirect("join", room_id=value)
            error = "That is not a room ID or link."
        elif request.user.is_authenticated:
            assert isinstance(request.user, User)
            form = NewMeetingForm(request.POST)
            if not form.is_valid():
                error = " ".join(str(message) for messages in form.errors.values() for message in messages)
                return render(
                    request, "home.html", {"error": error, "name": form.data.get("name", "")[:200]}, status=400
                )
            try:
                room = services.room_create(
                    host=request.user,
                    name=form.cleaned_data["name"] or "Meeting",
                    waiting_room=form.cleaned_data["waiting_room"],
                    e2ee=form.cleaned_data["e2ee"],
                )
            except DomainError as exc:
                error = exc.message
            else:
                return redirect("join", room_id=room.public_id)
        else:
            return redirect("/accounts/login/?next=/")
    return render(request, "home.html", {"error": error})


# The call page compiles WebAssembly (background segmentation, RNNoise; static/js/call/effects/): only this page
# gets `'wasm-unsafe-eval'`, which allows compiling wasm but not JavaScript eval (docs/security.md "Headers").
@csp_update({"script-src": ["'wasm-unsafe-eval'"]})  # type: ignore[arg-type]  # its stub types request-only views
@ensure_csrf_cookie
def join(request: HttpRequest, room_id: str) -> HttpResponse:
    """The pre-join screen (preview, devices, name, password) that becomes the call page after joining."""
    room = _room_or_none(room_id)
    if room is None:
        return _not_found(request)
    user = request.user
    is_host = bool(user.is_authenticated and room.host_id == user.pk)
    opens_at = None if is_host else room_opens_at(room=room)
    if opens_at is not None:  # a scheduled meeting, too early: say when to come back
        zone = ZoneInfo(room.scheduled_meeting.time_zone)
        context = {"room": room, "opens_at": opens_at.astimezone(zone), "zone": zone.key}
        return render(request, "meetings/not_open.html", context, status=403)
    config = {
        "roomId": room.public_id,
        "roomName": room.name,
        "hasPassword": room.has_password,
        "waitingRoom": room.waiting_room,
        "allowGuests": room.allow_guests,
        "e2ee": room.e2ee,
        "isHost": is_host,
        "signedIn": user.is_authenticated,
        "userId": user.pk if user.is_authenticated else None,
        "username": user.get_username() if user.is_authenticated else "",
    }
    return render(request, "rooms/call.html", {"room": room, "is_host": is_host, "config": config})


class RoomSettingsForm(forms.Form):
    name = forms.CharField(max_length=200)
    max_participants = forms.IntegerField(min_value=MIN_PARTICIPANTS, max_value=MAX_PARTICIPANTS)
    new_password = forms.CharField(
        max_length=128,
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the current password.",
    )
    remove_password = forms.BooleanField(required=False)
    waiting_room = forms.BooleanField(required=False)
    locked = forms.BooleanField(required=False)
    allow_guests = forms.BooleanField(required=False)
    last_n = forms.IntegerField(min_value=0, max_value=MAX_LAST_N, required=False)


@login_required
def room_settings(request: HttpRequest, room_id: str) -> HttpResponse:
    """The host changes the room's settings (through ``services.room_update``)."""
    assert isinstance(request.user, User)  # login_required
    room = _room_or_none(room_id)
    if room is None:
        return _not_found(request)
    if room.host_id != request.user.pk:
        return render(request, "error.html", {"message": "Only the room's host can change its settings."}, status=403)
    initial = {
        "name": room.name,
        "max_participants": room.max_participants,
        "waiting_room": room.waiting_room,
        "locked": room.locked,
        "allow_guests": room.allow_guests,
        "last_n": room.last_n,
    }
    form = RoomSettingsForm(request.POST or None, initial=initial)
    saved = False
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        changes = {k: data[k] for k in ("name", "max_participants", "waiting_room", "locked", "allow_guests", "last_n")}
        if data["remove_password"]:
            changes["password"] = ""
        elif data["new_password"]:
            changes["password"] = data["new_password"]
        try:
            room = services.room_update(room_id=room.public_id, user=request.user, **changes)
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            saved = True
            form = RoomSettingsForm(initial={**initial, **{k: v for k, v in changes.items() if k != "password"}})
    return render(request, "rooms/settings.html", {"room": room, "form": form, "saved": saved})


class RecordingShareForm(forms.Form):
    recording = forms.CharField(max_length=16)
    username = forms.CharField(max_length=150)


RECORDING_IN_PROGRESS = ("pending", "recording", "processing")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@login_required
def room_recordings(request: HttpRequest, room_id: str) -> HttpResponse:
    """The room's recordings: all of them for its host and moderators, the shared ones for anyone else.

    Links are the expiring signed URLs of ``recordings.downloads`` (never the storage path);
    hosts and moderators share a recording with a user by username (``recording_share``).
    """
    assert isinstance(request.user, User)  # login_required
    room = _room_or_none(room_id)
    if room is None:
        return _not_found(request)
    can_manage = is_room_moderator(room=room, user=request.user)
    share_error = share_done = ""
    if request.method == "POST":
        if not can_manage:
            return render(request, "error.html", {"message": "Only the host or a moderator can share."}, status=403)
        form = RecordingShareForm(request.POST)
        if not form.is_valid():
            share_error = "Enter a username to share with."
        else:
            try:
                share = recording_services.recording_share(
                    recording_id=form.cleaned_data["recording"],
                    user=request.user,
                    username=form.cleaned_data["username"].strip(),
                )
            except DomainError as exc:
                share_error = exc.message
            else:
                share_done = f"Shared with {share.user.get_username()}."
    recordings = list(
        recording_selectors.recording_list_for_room(room=room, user=request.user).prefetch_related("shares__user")[:100]
    )
    if not can_manage and not recordings:
        message = "Only the room's host and moderators, and people a recording was shared with, can see recordings."
        return render(request, "error.html", {"message": message}, status=403)
    rows = [
        {
            "rec": rec,
            # Relative signed links (local storage) or presigned storage URLs; both expire.
            "download_url": download_url(rec, "file", base_url=""),
            "thumbnail_url": download_url(rec, "thumbnail", base_url=""),
            "shared_with": [share.user.get_username() for share in rec.shares.all()],
            "duration": _duration(rec.duration_seconds),
        }
        for rec in recordings
    ]
    context = {
        "room": room,
        "rows": rows,
        "can_manage": can_manage,
        "is_host": room.host_id == request.user.pk,
        "in_progress": any(rec.status in RECORDING_IN_PROGRESS for rec in recordings),
        "link_minutes": max(1, url_lifetime() // 60),
        "share_error": share_error,
        "share_done": share_done,
        "share_recording": request.POST.get("recording", "") if share_error else "",
    }
    return render(request, "rooms/recordings.html", context, status=400 if share_error else 200)


@login_required
def my_rooms(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)  # login_required
    rooms = selectors.room_list_for_user(user=request.user)[:200]
    # Rooms whose recordings page this user may open besides the ones they host: moderator, or shared with.
    moderated = Participant.objects.filter(user=request.user, role=Role.MODERATOR).exclude(
        state=Participant.State.REMOVED
    )
    shared = RecordingShare.objects.filter(user=request.user)
    recording_rooms = set(moderated.values_list("room_id", flat=True)) | set(
        shared.values_list("recording__room_id", flat=True)
    )
    return render(request, "rooms/my_rooms.html", {"rooms": rooms, "recording_rooms": recording_rooms})
