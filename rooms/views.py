"""Server-rendered pages for rooms (the call UI arrives with the web UI issue)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from conference.errors import DomainError

from . import selectors, services
from .ids import ROOM_ID_RE
from .models import Room


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
            try:
                room = services.room_create(host=request.user, name=request.POST.get("name", "") or "Meeting")
            except DomainError as exc:
                error = exc.message
            else:
                return redirect("join", room_id=room.public_id)
        else:
            return redirect("/accounts/login/?next=/")
    return render(request, "home.html", {"error": error})


def join(request: HttpRequest, room_id: str) -> HttpResponse:
    room = Room.objects.filter(public_id=room_id).first() if ROOM_ID_RE.match(room_id) else None
    if room is None:
        return render(request, "error.html", {"message": "No room has this ID."}, status=404)
    return render(request, "rooms/join.html", {"room": room})


@login_required
def my_rooms(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)  # login_required
    rooms = selectors.room_list_for_user(user=request.user)[:200]
    return render(request, "rooms/my_rooms.html", {"rooms": rooms})
