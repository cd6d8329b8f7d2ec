from django.contrib import admin

from .models import Breakout, BreakoutAssignment, BreakoutSeat, BreakoutSession


class BreakoutInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Breakout
    fields = ("index", "name", "room")
    readonly_fields = ("room",)
    extra = 0


class AssignmentInline(admin.TabularInline):  # type: ignore[type-arg]
    model = BreakoutAssignment
    fields = ("participant", "breakout")
    raw_id_fields = ("participant",)
    extra = 0


@admin.register(BreakoutSession)
class BreakoutSessionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "meeting", "status", "created_at", "ends_at", "closes_at", "closed_at")
    list_filter = ("status",)
    search_fields = ("meeting__public_id", "meeting__name")
    raw_id_fields = ("meeting", "created_by")
    readonly_fields = ("created_at",)
    inlines = [BreakoutInline, AssignmentInline]


@admin.register(Breakout)
class BreakoutAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "room", "session", "index")
    search_fields = ("room__public_id", "name", "session__meeting__public_id")
    raw_id_fields = ("session", "room")


@admin.register(BreakoutSeat)
class BreakoutSeatAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("main_participant", "breakout", "participant")
    raw_id_fields = ("breakout", "main_participant", "participant")
