from django.contrib import admin

from .models import Meeting, MeetingInvitee


class MeetingInviteeInline(admin.TabularInline):  # type: ignore[type-arg]
    model = MeetingInvitee
    extra = 0
    fields = ("email", "created_at")
    readonly_fields = ("created_at",)


@admin.register(Meeting)
class MeetingAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read and search meetings here; changes that must reach invitees go through the UI or API (they send
    the updated invitations)."""

    list_display = ("public_id", "title", "owner", "starts_at", "time_zone", "rrule", "status", "sequence")
    list_filter = ("status", "time_zone", "created_at")
    search_fields = ("public_id", "title", "owner__username", "owner__email", "invitees__email", "room__public_id")
    readonly_fields = ("public_id", "ical_uid", "sequence", "last_ends_at", "created_at", "updated_at", "cancelled_at")
    raw_id_fields = ("owner", "room")
    date_hierarchy = "starts_at"
    inlines = [MeetingInviteeInline]
