from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from config.admin import ServiceDeletion
from config.exceptions import DomainError
from metrics.models import Metric
from metrics.services import metric_delete, metric_delete_validate, metric_type_change_validate


class MetricForm(forms.ModelForm):
    def clean(self):
        cleaned = super().clean()
        if self.instance.pk and "type" in self.changed_data and cleaned.get("type"):
            try:  # the service's rule: no type change while running experiments use the metric
                metric_type_change_validate(metric=self.instance, new_type=cleaned["type"])
            except DomainError as exc:
                self.add_error("type", exc.message)
        return cleaned


@admin.register(Metric)
class MetricAdmin(ServiceDeletion, SimpleHistoryAdmin):
    form = MetricForm
    list_display = ["name_and_key", "type", "event", "window_hours", "higher_is_better", "cuped", "owner"]
    list_filter = ["type", "cuped", "higher_is_better", "tags", "owner"]
    search_fields = ["key", "name", "description", "event"]
    list_select_related = ["owner"]
    autocomplete_fields = ["denominator"]
    readonly_fields = ["created_at", "updated_at", "calibration_page"]
    fieldsets = [
        (None, {"fields": ["name", "key", "description", "tags", "owner"]}),
        (
            "What is counted",
            {
                "fields": [
                    "type",
                    "event",
                    "denominator",
                    ("quantile", "quantile_scope"),
                    "window_hours",
                    ("cap_value", "cap_percentile", "cap_ignore_zeros"),
                ]
            },
        ),
        ("How it is read", {"fields": ["higher_is_better", "cuped", "cuped_lookback_days"]}),
        ("Trust", {"fields": ["calibration_page"]}),
        ("Record", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    @admin.display(description="metric", ordering="name")
    def name_and_key(self, obj: Metric) -> str:
        return format_html('{}<span class="list-key">{}</span>', obj.name, obj.key)

    @admin.display(description="calibration")
    def calibration_page(self, obj: Metric) -> str:
        """A link to the placebo calibration page (served by analytics, found by URL name)."""
        if obj.pk is None:
            return "Save the metric first."
        url = reverse("admin:analytics_metric_calibration", args=[obj.pk])
        return format_html(
            '<a class="button" href="{}">Calibrate on recent data</a> '
            "(placebo experiments: is its false-positive rate what it should be?)",
            url,
        )

    def delete_validate(self, obj: Metric) -> None:
        metric_delete_validate(metric=obj)

    def delete_service(self, obj: Metric) -> None:
        metric_delete(metric=obj)

    def save_model(self, request, obj, form, change):
        if not change and obj.owner_id is None:
            obj.owner = request.user
        super().save_model(request, obj, form, change)
