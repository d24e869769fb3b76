"""The analytics admin: experiment results with charts, the pre-flight check before a start, the spool.

``experiments`` and ``features`` never import ``analytics``, so the pages that need analytics live
here, as custom views of ``ExperimentResultAdmin`` (``get_urls`` wrapped in ``admin_site.admin_view``:
the admin's login, permissions and look). The experiments admin links to them by URL name:

* ``admin:analytics_experiment_results`` (experiment id): the results page;
* ``admin:analytics_experiment_results_refresh`` (experiment id, POST): recompute now;
* ``admin:analytics_experiment_preflight`` (experiment id): the pre-flight check and "Start now";
* ``admin:analytics_plotly_js`` (Plotly's version): Plotly's JavaScript, from the Python package.

Reading a page needs the permission to view experiments; refreshing and starting need the permission
to change them, as in the API.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import logging
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from analytics.admin import calibration as _calibration  # noqa: F401 - registers the calibration admin
from analytics.admin import charts
from analytics.admin.preflight import (
    BaselineForm,
    NoBaseline,
    baseline_text,
    days_text,
    metric_baseline,
    power_estimate,
    power_text,
    preflight_checks,
    primary_metric,
    variant_split,
)
from analytics.admin.summary import (
    SEQUENTIAL_NOTE,
    ago,
    metric_rows,
    p_value_text,
    percent,
    primary_sentences,
    refresh_how,
    units_rows,
)
from analytics.clickhouse import ClickHouseError
from analytics.models import ExperimentResult, ResultStatus, SpoolBatch
from analytics.results import RefreshInfo, ResultsDocument
from analytics.results.breakdown import (
    EXPLORATORY_WARNING,
    BreakdownUnavailable,
    UnknownDimension,
    experiment_dimensions,
    experiment_results_breakdown,
)
from analytics.results.selectors import experiment_results_get
from analytics.results.services import experiment_results_refresh, experiment_results_request_refresh
from config.admin import approval_held_message
from config.exceptions import ApprovalRequired, DomainError
from experiments.approvals import experiment_write
from experiments.models import Experiment, ExperimentStatus
from experiments.services import experiment_start

logger = logging.getLogger(__name__)

VIEW_EXPERIMENT = "experiments.view_experiment"
LONG_EXPERIMENT_DAYS = 42  # past six weeks, novelty, seasonality and patience get in the way
CHANGE_EXPERIMENT = "experiments.change_experiment"


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


def _variant_names(experiment: Experiment) -> dict[str, str]:
    return {variant.key: variant.name or variant.key for variant in experiment.variants.all()}


def _tasks_run_here() -> bool:
    """True when Celery runs tasks in this process (the embedded default): a refresh can be awaited."""
    from analytics.tasks import experiment_results_refresh_task

    return bool(experiment_results_refresh_task.app.conf.task_always_eager)


@functools.lru_cache(maxsize=1)
def _plotly_js() -> tuple[bytes, bytes]:
    """Plotly's JavaScript (4.8 MB) as shipped in the package, plain and gzipped (1.4 MB), made once."""
    from plotly.offline import get_plotlyjs

    plain = get_plotlyjs().encode()
    return plain, gzip.compress(plain, compresslevel=6, mtime=0)


def _plotly_version() -> str:
    import plotly

    return plotly.__version__


def _dimension_context(
    request: HttpRequest, experiment: Experiment, document: ResultsDocument, names: dict[str, str]
) -> dict[str, Any]:
    """The "By dimension" section: the picker (``?dimension=``) and, when one is picked, each level's
    users, SRM check and numbers table, and the lift per level of the primary metric."""
    context: dict[str, Any] = {"dimension_picked": request.GET.get("dimension", ""), "dimension_levels": []}
    try:
        context["dimensions"] = experiment_dimensions(experiment=experiment, document=document)
        if not context["dimension_picked"]:
            return context
        broken_down = experiment_results_breakdown(
            experiment=experiment, dimension=context["dimension_picked"]
        )
    except (UnknownDimension, BreakdownUnavailable) as exc:
        context.setdefault("dimensions", [])
        context["dimension_error"] = exc.message
        return context
    breakdown = broken_down.dimension
    assert breakdown is not None
    for level in breakdown.levels:
        level_document = dataclasses.replace(broken_down, metrics=level.metrics, dimension=None)
        context["dimension_levels"].append(
            {
                "level": level.level,
                "units": level.units,
                "srm_ok": level.srm is None or level.srm.ok,
                "srm_p": p_value_text(level.srm.p_value if level.srm is not None else None),
                "metric_rows": metric_rows(level_document, names),
            }
        )
    primary = document.primary_metric or (document.metrics[0] if document.metrics else None)
    context["dimension_metric"] = primary.label if primary is not None else ""
    context["dimension_plot"] = (
        charts.dimension_plot(broken_down, metric=primary.metric, variant_names=names) if primary else ""
    )
    context["exploratory_warning"] = EXPLORATORY_WARNING.message
    return context


@admin.register(ExperimentResult)
class ExperimentResultAdmin(admin.ModelAdmin):
    """The latest results of each experiment (read-only); its custom views are the results pages."""

    list_display = [
        "experiment",
        "status",
        "computed_at",
        "users",
        "warning_count",
        "refreshed_by",
        "open_page",
    ]
    list_filter = ["status"]
    list_select_related = ["experiment"]
    search_fields = ["experiment__key", "experiment__name"]
    ordering = ["-computed_at"]
    fields = [
        "experiment",
        "status",
        "computed_at",
        "duration_ms",
        "refreshed_by",
        "last_error",
        "last_error_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    # Whoever may read experiments may read their results (product managers have no analytics permission).
    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(VIEW_EXPERIMENT) or super().has_view_permission(request, obj)

    def has_module_permission(self, request) -> bool:
        return request.user.has_perm(VIEW_EXPERIMENT) or super().has_module_permission(request)

    @admin.display(description="users")
    def users(self, result: ExperimentResult) -> str:
        total = result.document.total_units if result.document is not None else None
        return f"{total:,}" if total is not None else "–"

    @admin.display(description="warnings")
    def warning_count(self, result: ExperimentResult) -> int:
        return len(result.document.warnings) if result.document is not None else 0

    @admin.display(description="")
    def open_page(self, result: ExperimentResult) -> str:
        url = reverse("admin:analytics_experiment_results", args=[result.experiment_id])
        return format_html('<a href="{}">Results and charts</a>', url)

    # --- custom pages ---------------------------------------------------------------------------------
    def get_urls(self):
        site = self.admin_site
        return [
            path(
                "experiment/<int:experiment_id>/results/",
                site.admin_view(self.results_view),
                name="analytics_experiment_results",
            ),
            path(
                "experiment/<int:experiment_id>/results/refresh/",
                site.admin_view(require_POST(self.refresh_view)),
                name="analytics_experiment_results_refresh",
            ),
            path(
                "experiment/<int:experiment_id>/preflight/",
                site.admin_view(self.preflight_view),
                name="analytics_experiment_preflight",
            ),
            path(
                "plotly-<str:version>.min.js",
                site.admin_view(self.plotly_js_view, cacheable=True),
                name="analytics_plotly_js",
            ),
            *super().get_urls(),
        ]

    def _experiment(self, request: HttpRequest, experiment_id: int, permission: str) -> Experiment:
        if not request.user.has_perm(permission):
            raise PermissionDenied
        return get_object_or_404(Experiment.objects.prefetch_related("variants"), pk=experiment_id)

    def _context(self, request: HttpRequest, experiment: Experiment, title: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "experiment": experiment,
            "opts": Experiment._meta,
            "change_url": reverse("admin:experiments_experiment_change", args=[experiment.pk]),
            "results_url": reverse("admin:analytics_experiment_results", args=[experiment.pk]),
        }

    def plotly_js_view(self, request: HttpRequest, version: str) -> HttpResponse:
        """Plotly's JavaScript as shipped in the Python package; cached for a year (the URL has its version)."""
        plain, compressed = _plotly_js()
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            response = HttpResponse(compressed, content_type="text/javascript; charset=utf-8")
            response["Content-Encoding"] = "gzip"
        else:
            response = HttpResponse(plain, content_type="text/javascript; charset=utf-8")
        response["Vary"] = "Accept-Encoding"
        response["Cache-Control"] = "private, max-age=31536000, immutable"
        return response

    # --- results ---------------------------------------------------------------------------------------
    def results_view(self, request: HttpRequest, experiment_id: int) -> TemplateResponse:
        experiment = self._experiment(request, experiment_id, VIEW_EXPERIMENT)
        document = experiment_results_get(experiment=experiment)
        names = _variant_names(experiment)
        computed_at = document.computed_at
        computed = document.computed
        refresh = document.refresh or RefreshInfo()
        context = self._context(request, experiment, f"Results: {experiment.name}")
        context.update(
            document=document,
            has_results=computed,
            computed_at=computed_at,
            computed_ago=ago(computed_at),
            failed=refresh.status == ResultStatus.FAILED,
            last_error=refresh.last_error,
            last_error_ago=ago(refresh.last_error_at),
            refreshed_by=refresh.refreshed_by,
            refresh_how=refresh_how(refresh),
            can_refresh=request.user.has_perm(CHANGE_EXPERIMENT),
            refresh_url=reverse("admin:analytics_experiment_results_refresh", args=[experiment.pk]),
            plotly_url=reverse("admin:analytics_plotly_js", args=[_plotly_version()]),
            sentences=primary_sentences(document, variant_names=names) if computed else [],
            forest_plot=charts.forest_plot(document, variant_names=names) if computed else "",
            timeseries_plots=charts.timeseries_plots(document, variant_names=names) if computed else [],
            units_plot=charts.units_per_variant(document, variant_names=names) if computed else "",
            units=units_rows(document, names),
            srm=document.srm,
            srm_p=p_value_text(document.srm.p_value if document.srm is not None else None),
            warnings=document.warnings,
            errors=document.errors,
            metric_rows=metric_rows(document, names),
            engine=document.engine or experiment.engine,
            sequential=document.is_sequential,
            sequential_note=SEQUENTIAL_NOTE,
            running_since=experiment.started_at,
            running_since_ago=ago(experiment.started_at),
            **_environments_context(document, experiment),
            **(_dimension_context(request, experiment, document, names) if computed else {}),
        )
        return TemplateResponse(request, "admin/analytics/experiment_results.html", context)

    def refresh_view(self, request: HttpRequest, experiment_id: int) -> HttpResponseRedirect:
        experiment = self._experiment(request, experiment_id, CHANGE_EXPERIMENT)
        results_url = reverse("admin:analytics_experiment_results", args=[experiment.pk])
        if not _tasks_run_here():
            experiment_results_request_refresh(experiment=experiment, user=request.user)
            messages.info(
                request, "Refresh queued: the results are being computed; reload this page in a minute."
            )
            return HttpResponseRedirect(results_url)
        try:
            snapshot = experiment_results_refresh(
                experiment_id=experiment.pk, refreshed_by=f"user:{request.user.get_username()}"
            )
        except (ClickHouseError, ValueError, ArithmeticError) as exc:  # recorded on the snapshot too
            messages.error(
                request,
                f"The refresh failed, so the page shows the last results that could be computed. Why: {exc}",
            )
            return HttpResponseRedirect(results_url)
        document = snapshot.document
        total = (document.total_units if document is not None else None) or 0
        warnings = len(document.warnings) if document is not None else 0
        text = f"Results refreshed in {(snapshot.duration_ms or 0) / 1000:.1f} s from {total:,} users."
        if warnings:
            messages.warning(request, f"{text} {warnings} warning(s): read them before the numbers.")
        else:
            messages.success(request, text)
        return HttpResponseRedirect(results_url)

    # --- pre-flight ------------------------------------------------------------------------------------
    def preflight_view(self, request: HttpRequest, experiment_id: int) -> HttpResponse:
        experiment = self._experiment(request, experiment_id, VIEW_EXPERIMENT)
        if request.method == "POST":
            return self._start(request, experiment)
        metric = primary_metric(experiment)
        form = BaselineForm(request.GET if "daily_units" in request.GET else None, metric=metric)
        baseline = baseline_error = estimate = None
        if metric is not None:
            if form.is_bound and form.is_valid():
                baseline = form.baseline()
            elif not form.is_bound:
                try:
                    baseline = metric_baseline(
                        metric=metric, until=timezone.now(), environments=experiment.analysis_environments
                    )
                except NoBaseline as exc:
                    baseline_error = f"{exc} Type a baseline below."
                except ClickHouseError as exc:
                    baseline_error = f"Could not read recent data ({exc}); type a baseline below."
            if baseline is not None:
                try:
                    estimate = power_estimate(experiment=experiment, metric=metric, baseline=baseline)
                except ValidationError as exc:
                    baseline_error = " ".join(exc.messages)
        context = self._context(request, experiment, f"Before you start: {experiment.name}")
        context.update(
            checks=preflight_checks(experiment),
            metric=metric,
            form=form,
            baseline=baseline,
            baseline_error=baseline_error,
            estimate=estimate,
            baseline_text=baseline_text(metric, baseline) if metric and baseline else "",
            power_text=power_text(experiment, metric, estimate) if estimate else "",
            power_too_long=bool(estimate and estimate.days > LONG_EXPERIMENT_DAYS),
            alternatives=[(percent(lift), days_text(days)) for lift, days in estimate.alternatives]
            if estimate
            else [],
            can_start=experiment.status == ExperimentStatus.DRAFT
            and request.user.has_perm(CHANGE_EXPERIMENT),
            is_draft=experiment.status == ExperimentStatus.DRAFT,
            split=variant_split(experiment),
        )
        return TemplateResponse(request, "admin/analytics/experiment_preflight.html", context)

    def _start(self, request: HttpRequest, experiment: Experiment) -> HttpResponseRedirect:
        preflight_url = reverse("admin:analytics_experiment_preflight", args=[experiment.pk])
        if not request.user.has_perm(CHANGE_EXPERIMENT):
            messages.error(request, "You need the permission to change experiments to start one.")
            return HttpResponseRedirect(preflight_url)
        try:
            # Held as a change request when the experiment serves an environment requiring approval.
            experiment_write(
                experiment=experiment,
                operation="start",
                user=request.user,
                run=lambda: experiment_start(experiment=experiment, user=request.user),
            )
        except ApprovalRequired as held:
            approval_held_message(request, held)
            return HttpResponseRedirect(reverse("admin:experiments_experiment_change", args=[experiment.pk]))
        except (DomainError, ValidationError) as exc:
            text = exc.message if isinstance(exc, DomainError) else "; ".join(exc.messages)
            messages.error(request, f"Could not start “{experiment.name}”: {text}")
            return HttpResponseRedirect(preflight_url)
        messages.success(
            request,
            f"“{experiment.name}” is running. Results appear once exposures and events arrive "
            "(computed every few minutes, or press Refresh on the results page).",
        )
        return HttpResponseRedirect(reverse("admin:experiments_experiment_change", args=[experiment.pk]))


# --- what the templates show ---------------------------------------------------------------------------
def _environments_context(document: ResultsDocument, experiment: Experiment) -> dict[str, Any]:
    """Whose traffic the numbers count: the environments of the shown results (documents made before
    the setting existed counted every environment), and the setting when it has changed since."""
    configured = list(experiment.analysis_environments)
    if not document.computed:
        return {"analysed_environments": ", ".join(configured), "environments_changed": ""}
    analysed = document.analysed_environments
    analysed = list(analysed) if analysed is not None else None
    return {
        "analysed_environments": ", ".join(analysed) if analysed else "every environment",
        "environments_changed": ", ".join(configured) if analysed != configured else "",
    }
