from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import Recording, RecordingShare
from .services import recordings_cleanup


class RecordingShareInline(admin.TabularInline):  # type: ignore[type-arg]
    model = RecordingShare
    extra = 0
    raw_id_fields = ("user", "shared_by")
    readonly_fields = ("created_at",)


@admin.register(Recording)
class RecordingAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "public_id",
        "room",
        "status",
        "failure_reason",
        "started_by",
        "started_at",
        "duration_seconds",
        "size_bytes",
        "attempts",
    )
    list_filter = ("status", "created_at")
    search_fields = ("public_id", "room__public_id", "room__name", "failure_reason")
    readonly_fields = (
        "public_id",
        "status",
        "failure_reason",
        "started_at",
        "stopped_at",
        "stop_requested_at",
        "stop_reason",
        "processing_started_at",
        "heartbeat_at",
        "lease",
        "attempts",
        "duration_seconds",
        "size_bytes",
        "file",
        "thumbnail",
        "created_at",
        "updated_at",
    )
    raw_id_fields = ("room", "started_by")
    date_hierarchy = "created_at"
    inlines = [RecordingShareInline]
    actions = ["run_cleanup"]

    @admin.action(description="Run the stale-recording cleanup now (re-queue, stop overdue, fail lost)")
    def run_cleanup(self, request: HttpRequest, queryset: QuerySet[Recording]) -> None:
        counts = recordings_cleanup()
        self.message_user(request, ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), messages.INFO)
