"""The metric's calibration page: its last placebo calibration report and a button that runs one.

``metrics`` never imports ``analytics``, so the page lives here, as a custom view of
``MetricCalibrationAdmin``; the metric's change page links to it by URL name
(``admin:analytics_metric_calibration``, metric id). Reading needs the permission to view metrics;
running, to change them. A run is synchronous and bounded (``analytics.calibration``'s defaults:
200 splits of the last 14 days, one ClickHouse query).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from analytics.calibration import calibration_verdict, metric_calibration_run
from analytics.clickhouse import ClickHouseError
from analytics.models import MetricCalibration
from metrics.models import Metric

VIEW_METRIC = "metrics.view_metric"
CHANGE_METRIC = "metrics.change_metric"


@admin.register(MetricCalibration)
class MetricCalibrationAdmin(admin.ModelAdmin):
    """The last calibration of each metric (read-only); its custom view is the metric's calibration page."""

    list_display = ["metric", "verdict", "ran_at", "ran_by", "open_page"]
    list_select_related = ["metric"]
    search_fields = ["metric__key", "metric__name"]
    ordering = ["-ran_at"]
    fields = ["metric", "ran_at", "ran_by", "report"]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="result")
    def verdict(self, calibration: MetricCalibration) -> str:
        return calibration_verdict(calibration.report)

    @admin.display(description="")
    def open_page(self, calibration: MetricCalibration) -> str:
        url = reverse("admin:analytics_metric_calibration", args=[calibration.metric_id])
        return format_html('<a href="{}">Calibration page</a>', url)

    def get_urls(self):
        site = self.admin_site
        return [
            path(
                "metric/<int:metric_id>/calibration/",
                site.admin_view(self.calibration_view),
                name="analytics_metric_calibration",
            ),
            *super().get_urls(),
        ]

    def calibration_view(self, request: HttpRequest, metric_id: int) -> HttpResponse:
        if not request.user.has_perm(VIEW_METRIC):
            raise PermissionDenied
        metric = get_object_or_404(Metric.objects.select_related("denominator"), pk=metric_id)
        url = reverse("admin:analytics_metric_calibration", args=[metric.pk])
        if request.method == "POST":
            if not request.user.has_perm(CHANGE_METRIC):
                raise PermissionDenied
            try:
                calibration = metric_calibration_run(metric=metric, ran_by=request.user.get_username())
            except ClickHouseError as exc:
                messages.error(request, f"The calibration could not read the events: {exc}")
            else:
                level = messages.WARNING if calibration.report["flagged"] else messages.SUCCESS
                messages.add_message(request, level, calibration_verdict(calibration.report))
            return HttpResponseRedirect(url)
        calibration = MetricCalibration.objects.filter(metric=metric).first()
        report = calibration.report if calibration else None
        context = {
            **self.admin_site.each_context(request),
            "title": f"Calibration: {metric.name}",
            "subtitle": None,
            "metric": metric,
            "opts": Metric._meta,
            "change_url": reverse("admin:metrics_metric_change", args=[metric.pk]),
            "calibration": calibration,
            "report": report,
            "verdict": calibration_verdict(report) if report else "",
            "can_run": request.user.has_perm(CHANGE_METRIC),
            "run_url": url,
        }
        return TemplateResponse(request, "admin/analytics/metric_calibration.html", context)
