from django.contrib import admin

from analytics.models import SpoolBatch


@admin.register(SpoolBatch)
class SpoolBatchAdmin(admin.ModelAdmin):
    """Read-only: rows accepted while ClickHouse was unreachable, waiting for the spool drain."""

    list_display = [
        "id",
        "kind",
        "row_count",
        "created_at",
        "attempts",
        "next_attempt_at",
        "last_error_short",
    ]
    list_filter = ["kind"]
    date_hierarchy = "created_at"
    ordering = ["next_attempt_at", "id"]
    fields = ["kind", "row_count", "created_at", "attempts", "next_attempt_at", "last_error", "payload"]
    readonly_fields = fields

    @admin.display(description="last error")
    def last_error_short(self, batch: SpoolBatch) -> str:
        return batch.last_error[:120]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
