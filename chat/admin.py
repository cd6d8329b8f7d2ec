from django.contrib import admin

from .models import Message


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("public_id", "room", "seq", "sender_name", "recipient", "short_text", "created_at")
    list_filter = ("created_at",)
    search_fields = ("public_id", "text", "sender_name", "room__public_id")
    readonly_fields = ("public_id", "room", "seq", "sender", "sender_name", "recipient", "client_id", "created_at")
    date_hierarchy = "created_at"

    @admin.display(description="text")
    def short_text(self, obj: Message) -> str:
        return obj.text[:80]
