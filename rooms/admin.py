from django.contrib import admin

from .models import Participant, Room


class ParticipantInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Participant
    extra = 0
    fields = ("public_id", "display_name", "user", "role", "state", "last_seen_at", "left_at")
    readonly_fields = ("public_id", "last_seen_at", "left_at")
    show_change_link = True


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "public_id",
        "name",
        "host",
        "status",
        "max_participants",
        "last_n",
        "locked",
        "waiting_room",
        "created_at",
    )
    list_filter = ("status", "locked", "waiting_room", "allow_guests", "e2ee", "created_at")
    search_fields = ("public_id", "name", "host__username", "host__email")
    readonly_fields = ("public_id", "password_hash", "chat_seq", "created_at", "updated_at", "ended_at")
    raw_id_fields = ("host",)
    date_hierarchy = "created_at"
    inlines = [ParticipantInline]


@admin.register(Participant)
class ParticipantAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("public_id", "display_name", "room", "user", "role", "state", "last_seen_at", "created_at")
    list_filter = ("role", "state", "created_at")
    search_fields = ("public_id", "display_name", "user__username", "room__public_id", "room__name")
    readonly_fields = ("public_id", "grant_version", "created_at", "admitted_at", "last_seen_at", "left_at")
    raw_id_fields = ("room", "user")
