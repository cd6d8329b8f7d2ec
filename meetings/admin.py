from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Meeting, MeetingInvitee


class MeetingInviteeInline(admin.TabularInline):  # type: ignore[type-arg]
    model = MeetingInvitee
    extra = 0
    fields = ("email", "created_at")
    readonly_fields = ("email", "created_at")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Meeting)
class MeetingAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Find and read meetings (or delete one). The schedule and invitees are read-only here: a change must go
    through ``meetings.services`` (UI or API), which raises SEQUENCE and mails the invitees."""

    list_display = ("public_id", "title", "owner", "starts_at", "time_zone", "rrule", "status", "sequence")
    list_filter = ("status", "created_at")
    search_fields = ("public_id", "title", "owner__username", "owner__email", "invitees__email", "room__public_id")
    readonly_fields = (
        "public_id",
        "owner",
        "room",
        "title",
        "starts_at",
        "time_zone",
        "duration_minutes",
        "rrule",
        "status",
        "ical_uid",
        "sequence",
        "last_ends_at",
        "created_at",
        "updated_at",
        "cancelled_at",
    )
    date_hierarchy = "starts_at"
    inlines = [MeetingInviteeInline]
