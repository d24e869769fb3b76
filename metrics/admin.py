from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from metrics.models import Metric


@admin.register(Metric)
class MetricAdmin(SimpleHistoryAdmin):
    list_display = ["name", "key", "type", "event", "window_hours", "higher_is_better", "cuped", "owner"]
    list_filter = ["type", "cuped", "higher_is_better", "tags", "owner"]
    search_fields = ["key", "name", "description", "event"]
    list_select_related = ["owner"]
    autocomplete_fields = ["denominator"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "key", "description", "tags", "owner"]}),
        ("What is counted", {"fields": ["type", "event", "denominator", "window_hours", "cap_value"]}),
        ("How it is read", {"fields": ["higher_is_better", "cuped", "cuped_lookback_days"]}),
        ("Record", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def save_model(self, request, obj, form, change):
        if not change and obj.owner_id is None:
            obj.owner = request.user
        super().save_model(request, obj, form, change)
