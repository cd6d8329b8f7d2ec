from django.contrib import admin

from .models import Recording


@admin.register(Recording)
class RecordingAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("public_id", "room", "status", "started_by", "started_at", "duration_seconds", "size_bytes")
    list_filter = ("status", "created_at")
    search_fields = ("public_id", "room__public_id", "room__name", "failure_reason")
    readonly_fields = (
        "public_id",
        "status",
        "failure_reason",
        "started_at",
        "stopped_at",
        "processing_started_at",
        "duration_seconds",
        "size_bytes",
        "created_at",
        "updated_at",
    )
    raw_id_fields = ("room", "started_by")
    date_hierarchy = "created_at"
