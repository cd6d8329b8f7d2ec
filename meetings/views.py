"""Server-rendered pages for scheduled meetings: "My meetings", schedule, edit, cancel.

Views are thin: reads through ``meetings.selectors``, writes through ``meetings.services``; a rule the
service refuses is shown on the form (status 400), never a 500.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from conference.errors import DomainError, NotFound

from . import selectors, services
from .models import MAX_DURATION_MINUTES, RRULE_MAX_LENGTH, Meeting
from .recurrence import zone_names

RECURRENCE_PRESETS = {
    "none": ("Does not repeat", ""),
    "daily": ("Every day", "FREQ=DAILY"),
    "weekdays": ("Every weekday (Monday to Friday)", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),
    "weekly": ("Every week", "FREQ=WEEKLY"),
    "monthly": ("Every month", "FREQ=MONTHLY"),
    "custom": ("Custom RRULE", None),
}
START_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S")


class MeetingForm(forms.Form):
    title = forms.CharField(max_length=200)
    start = forms.CharField(
        max_length=32,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Local time in the time zone below.",
    )
    time_zone = forms.ChoiceField(choices=[])
    duration_minutes = forms.IntegerField(min_value=1, max_value=MAX_DURATION_MINUTES, initial=30)
    recurrence = forms.ChoiceField(choices=[(key, label) for key, (label, _) in RECURRENCE_PRESETS.items()])
    rrule = forms.CharField(max_length=RRULE_MAX_LENGTH, required=False, help_text="e.g. FREQ=WEEKLY;BYDAY=MO,WE")
    invitees = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="E-mail addresses, comma or line separated."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = [(name, name) for name in zone_names()]  # type: ignore[attr-defined]

    def clean_start(self) -> datetime:
        value = self.cleaned_data["start"].strip()
        for fmt in START_FORMATS:
            try:
                return datetime.strptime(value, fmt)  # a wall-clock time in the chosen zone
            except ValueError:
                continue
        raise forms.ValidationError("Enter a date and time such as 2027-03-22 09:00.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        preset = RECURRENCE_PRESETS.get(data.get("recurrence", "none"), ("", ""))[1]
        data["rrule_value"] = data.get("rrule", "") if preset is None else preset
        return data

    def service_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "title": data["title"],
            "start": data["start"],
            "time_zone": data["time_zone"],
            "duration_minutes": data["duration_minutes"],
            "rrule": data["rrule_value"],
            "invitees": data["invitees"].replace(",", "\n").replace(";", "\n").split(),
        }


def _base_url(request: HttpRequest) -> str:
    return settings.PUBLIC_BASE_URL or f"{request.scheme}://{request.get_host()}"


def _initial(meeting: Meeting) -> dict[str, Any]:
    start = selectors.meeting_schedule(meeting).start
    presets = {value: key for key, (_, value) in RECURRENCE_PRESETS.items() if value is not None}
    return {
        "title": meeting.title,
        "start": start.strftime("%Y-%m-%dT%H:%M"),
        "time_zone": meeting.time_zone,
        "duration_minutes": meeting.duration_minutes,
        "recurrence": presets.get(meeting.rrule, "custom"),
        "rrule": meeting.rrule if meeting.rrule not in presets else "",
        "invitees": "\n".join(invitee.email for invitee in meeting.invitees.all()),
    }


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # login_required
    return request.user


@login_required
def my_meetings(request: HttpRequest) -> HttpResponse:
    rows = selectors.meeting_list_upcoming(user=_user(request))
    return render(request, "meetings/my_meetings.html", {"rows": rows})


def _save(request: HttpRequest, form: MeetingForm, meeting: Meeting | None) -> Meeting | None:
    """The service's answer to a valid form, or ``None`` with its refusal added to the form."""
    try:
        if meeting is None:
            return services.meeting_create(owner=_user(request), base_url=_base_url(request), **form.service_kwargs())
        return services.meeting_update(
            meeting_id=meeting.public_id, user=_user(request), base_url=_base_url(request), **form.service_kwargs()
        )
    except DomainError as exc:
        form.add_error(None, exc.message)
        return None


@login_required
def meeting_new(request: HttpRequest) -> HttpResponse:
    form = MeetingForm(request.POST or None, initial={"time_zone": settings.TIME_ZONE, "recurrence": "none"})
    if request.method == "POST" and form.is_valid() and _save(request, form, None) is not None:
        return redirect("my-meetings")
    status = 400 if request.method == "POST" else 200
    return render(request, "meetings/form.html", {"form": form, "meeting": None}, status=status)


def _own_or_404(request: HttpRequest, meeting_id: str) -> Meeting | HttpResponse:
    try:
        return selectors.meeting_get_for_owner(meeting_id=meeting_id, user=_user(request))
    except NotFound as exc:
        return render(request, "error.html", {"message": exc.message}, status=404)


@login_required
def meeting_edit(request: HttpRequest, meeting_id: str) -> HttpResponse:
    meeting = _own_or_404(request, meeting_id)
    if isinstance(meeting, HttpResponse):
        return meeting
    if meeting.is_cancelled:
        return render(request, "error.html", {"message": "This meeting was cancelled."}, status=410)
    form = MeetingForm(request.POST or None, initial=_initial(meeting))
    if request.method == "POST" and form.is_valid() and _save(request, form, meeting) is not None:
        return redirect("my-meetings")
    status = 400 if request.method == "POST" else 200
    return render(request, "meetings/form.html", {"form": form, "meeting": meeting}, status=status)


@login_required
@require_POST
def meeting_cancel(request: HttpRequest, meeting_id: str) -> HttpResponse:
    meeting = _own_or_404(request, meeting_id)
    if isinstance(meeting, HttpResponse):
        return meeting
    services.meeting_cancel(meeting_id=meeting.public_id, user=_user(request), base_url=_base_url(request))
    return redirect("my-meetings")
