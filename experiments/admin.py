"""The experiments admin: product managers create, start, stop and read experiments here.

Lifecycle buttons and bulk actions call the same services as the API, so a refusal reads the same
everywhere; fields that define who sees what are read-only once the experiment has started.

The results page and the pre-flight check before a start need analytics, which this app must not
import: they live in ``analytics.admin`` and are linked here by URL name. The list reads each
experiment's latest results through the reverse one-to-one ``experiment.result`` (the
``analytics.ExperimentResult`` row, when there is one): its ``document`` is the typed Results document
(``analytics.results.ResultsDocument``), read without importing analytics.
"""

import math
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from config.admin import ApprovalHeldSave, ServiceDeletion, approval_held_message
from config.exceptions import ApprovalRequired, DomainError
from experiments.approvals import experiment_write
from experiments.models import TRANSITIONS, Experiment, ExperimentMetric, ExperimentStatus, Variant
from experiments.services import (
    LIFECYCLE_SERVICES,
    experiment_delete,
    experiment_delete_validate,
    experiment_stop,
    traffic_allocation_validate,
    variants_validate,
)

RESULTS_URL = "admin:analytics_experiment_results"
PREFLIGHT_URL = "admin:analytics_experiment_preflight"
GOOD, BAD, NEUTRAL = "#198754", "#dc3545", "#6c757d"

STATUS_COLOURS = {
    ExperimentStatus.DRAFT: "#6c757d",
    ExperimentStatus.RUNNING: "#198754",
    ExperimentStatus.PAUSED: "#b58105",
    ExperimentStatus.STOPPED: "#0d6efd",
    ExperimentStatus.ARCHIVED: "#495057",
}


class VariantFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        if any(self.errors) or self.instance.is_locked:
            return
        variants = [
            {"key": form.cleaned_data.get("key"), "weight": form.cleaned_data.get("weight")}
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        try:
            variants_validate(variants)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["variants"]) from None


class OptionalJSONField(forms.JSONField):
    """A JSON box that shows nothing (not ``null``) when there is no value, and reads an empty box as none."""

    def prepare_value(self, value: Any) -> Any:
        return "" if value is None else super().prepare_value(value)


class VariantForm(forms.ModelForm):
    """A variant row sized to fit the page (Django's default boxes made it 1,600 px wide), with an
    example in the empty payload box."""

    class Meta:
        model = Variant
        fields = ["position", "key", "name", "weight", "payload"]
        field_classes = {"payload": OptionalJSONField}
        widgets = {
            "position": forms.NumberInput(attrs={"style": "width:3em"}),
            "key": forms.TextInput(attrs={"style": "width:10em"}),
            "name": forms.TextInput(attrs={"style": "width:14em"}),
            "weight": forms.NumberInput(attrs={"style": "width:5em", "step": "any"}),
            "payload": forms.Textarea(
                attrs={"rows": 2, "placeholder": 'optional, e.g. {"color": "green"}', "spellcheck": "false"}
            ),
        }


class VariantInline(admin.TabularInline):
    model = Variant
    form = VariantForm
    formset = VariantFormSet
    extra = 0
    min_num = 2
    fields = ["position", "key", "name", "weight", "payload"]

    def get_readonly_fields(self, request, obj=None):
        return ["position", "key", "name", "weight", "payload"] if obj is not None and obj.is_locked else []

    def has_add_permission(self, request, obj=None):
        return (obj is None or not obj.is_locked) and super().has_add_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return (obj is None or not obj.is_locked) and super().has_delete_permission(request, obj)

    def get_extra(self, request, obj=None, **kwargs):
        return 2 if obj is None else 0


class ExperimentMetricInline(admin.TabularInline):
    model = ExperimentMetric
    extra = 1
    autocomplete_fields = ["metric"]
    verbose_name = "metric"
    verbose_name_plural = "Metrics (primary decide, secondary inform, guardrails must not get worse)"


class ExperimentForm(forms.ModelForm):
    # The version the editor loaded; a save over a newer version is refused, so no change is lost.
    loaded_version = forms.IntegerField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["loaded_version"].initial = self.instance.version

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk and (problem := self.instance.managed_problem):
            raise ValidationError(problem)  # a holdout's or a safe rollout's: it changes with its owner
        if self.instance.pk:
            current = Experiment.objects.filter(pk=self.instance.pk).values_list("version", flat=True).first()
            loaded = cleaned.get("loaded_version")
            if loaded is not None and current is not None and loaded != current:
                raise ValidationError(
                    "Someone else changed this experiment while you were editing it. "
                    "Open it again to see their change, then redo yours."
                )
            if "traffic_allocation" in cleaned:
                try:
                    traffic_allocation_validate(
                        experiment=self.instance, traffic_allocation=cleaned["traffic_allocation"]
                    )
                except DomainError as exc:
                    self.add_error("traffic_allocation", exc.message)
        return cleaned


class StopForm(forms.Form):
    decision_variant = forms.ChoiceField(label="Ship which variant?", required=False)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, label="Why?")

    def __init__(self, *args, experiment: Experiment, **kwargs):
        super().__init__(*args, **kwargs)
        choices = [("", "None: keep things as they were")]
        choices += [(v.key, f"{v.name or v.key} ({v.key})") for v in experiment.variants.all()]
        self.fields["decision_variant"].choices = choices


def _run_lifecycle(request: HttpRequest, experiment: Experiment, action_name: str, **kwargs) -> bool:
    try:
        # A start or stop of an experiment serving an environment that requires approval is held.
        experiment_write(
            experiment=experiment,
            operation=action_name,
            user=request.user,
            run=lambda: LIFECYCLE_SERVICES[action_name](experiment=experiment, user=request.user, **kwargs),
            params=kwargs,
        )
    except ApprovalRequired as held:
        approval_held_message(request, held)
        return False
    except (DomainError, ValidationError) as exc:
        text = exc.message if isinstance(exc, DomainError) else "; ".join(exc.messages)
        messages.error(request, f"Could not {action_name} “{experiment.name}”: {text}")
        return False
    messages.success(request, f"“{experiment.name}”: {action_name} done.")
    return True


def _bulk_action(action_name: str, description: str):
    @admin.action(description=description, permissions=["change"])
    def bulk(modeladmin, request, queryset: QuerySet[Experiment]):
        for experiment in queryset:
            _run_lifecycle(request, experiment, action_name)

    bulk.__name__ = f"bulk_{action_name}"
    return bulk


@admin.register(Experiment)
class ExperimentAdmin(ApprovalHeldSave, ServiceDeletion, SimpleHistoryAdmin):
    form = ExperimentForm
    inlines = [VariantInline, ExperimentMetricInline]
    list_display = [
        "name_and_key",
        "status_badge",
        "days_running",
        "units_so_far",
        "primary_lift",
        "traffic_share",
        "owner",
        "results_link",
    ]
    list_filter = ["status", "owner", "tags", "engine", "layer"]
    search_fields = ["key", "name", "description", "hypothesis"]
    list_select_related = ["owner", "result"]
    date_hierarchy = "created_at"
    actions = [
        _bulk_action("start", "Start selected experiments"),
        _bulk_action("pause", "Pause selected experiments"),
        _bulk_action("resume", "Resume selected experiments"),
        _bulk_action("stop", "Stop selected experiments (no variant shipped)"),
        _bulk_action("archive", "Archive selected experiments"),
    ]
    readonly_fields = [
        "status",
        "started_at",
        "stopped_at",
        "decision_variant",
        "decision_reason",
        "version",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "key",
                    "status",
                    "owner",
                    "tags",
                    "hypothesis",
                    "description",
                    "loaded_version",
                ]
            },
        ),
        (
            "Who takes part",
            {
                "fields": [
                    "traffic_allocation",
                    "targeting",
                    "layer",
                    "hash_seed",
                    "hash_attribute",
                    "fallback_attribute",
                ]
            },
        ),
        (
            "How results are read",
            {
                "fields": [
                    "engine",
                    "alpha",
                    "sequential",
                    "sequential_tuning",
                    "correction",
                    "srm_threshold",
                    "minimum_detectable_effect",
                    "prior_mean",
                    "prior_stddev",
                    "analysis_environments",
                ]
            },
        ),
        ("Schedule", {"fields": ["scheduled_start_at", "scheduled_stop_at", "started_at", "stopped_at"]}),
        ("Decision", {"fields": ["decision_variant", "decision_reason"]}),
        ("Record", {"fields": ["version", "created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tags")

    def get_readonly_fields(self, request, obj=None):
        fields = list(self.readonly_fields)
        if obj is not None and obj.is_locked:
            fields += ["key", "targeting", "layer", "hash_seed", "hash_attribute", "fallback_attribute"]
        return fields

    @admin.display(description="experiment", ordering="name")
    def name_and_key(self, obj: Experiment) -> str:
        return format_html('{}<span class="list-key">{}</span>', obj.name, obj.key)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Experiment) -> str:
        return format_html(
            '<span style="background:{};color:#fff;padding:2px 8px;border-radius:10px">{}</span>',
            STATUS_COLOURS.get(obj.status, "#6c757d"),
            obj.get_status_display(),
        )

    @admin.display(description="days running")
    def days_running(self, obj: Experiment) -> str:
        if obj.started_at is None:
            return "–"
        end = obj.stopped_at or timezone.now()
        return f"{(end - obj.started_at).total_seconds() / 86400:.1f}"

    @admin.display(description="traffic", ordering="traffic_allocation")
    def traffic_share(self, obj: Experiment) -> str:
        return f"{obj.traffic_allocation:.0%}"

    @admin.display(description="users so far")
    def units_so_far(self, obj: Experiment) -> str:
        document = _results_document(obj)
        if document is None or document.total_units is None:
            return "–"
        total = document.total_units
        if document.srm_failed:
            return format_html(
                '{} <span style="color:{};font-weight:600" title="{}">⚠ SRM</span>',
                f"{total:,}",
                BAD,
                "Users per variant do not match the weights: the results cannot be trusted.",
            )
        return f"{total:,}"

    @admin.display(description="primary metric")
    def primary_lift(self, obj: Experiment) -> str:
        """The first primary metric's relative lift of the first treatment, coloured when significant."""
        document = _results_document(obj)
        block = document.primary_metric if document is not None else None
        if block is None or not block.comparisons:
            return "–"
        comparison = block.comparisons[0]
        estimate = comparison.relative.estimate
        if estimate is None:
            return "–"
        direction = comparison.direction
        colour = GOOD if direction == "improved" else BAD if direction == "regressed" else NEUTRAL
        ci = comparison.relative.ci
        title = f"{block.label}: {comparison.variant} vs {comparison.baseline}"
        if ci:
            title += f", interval {_signed_percent(ci[0])} to {_signed_percent(ci[1])}"
        title += ", significant" if comparison.significant else ", not significant"
        return format_html(
            '<span style="color:{};font-weight:{}" title="{}">{}</span> <span style="color:{}">{}</span>',
            colour,
            600 if comparison.significant else 400,
            title,
            _signed_percent(estimate),
            NEUTRAL,
            block.label,
        )

    @admin.display(description="")
    def results_link(self, obj: Experiment) -> str:
        if obj.status == ExperimentStatus.DRAFT:
            return ""
        url = _url_or_none(RESULTS_URL, obj.pk)
        return format_html('<a href="{}">results</a>', url) if url else ""

    def save_model(self, request, obj, form, change):
        if not change and obj.owner_id is None:
            obj.owner = request.user
        if change:
            obj.version += 1
        super().save_model(request, obj, form, change)

    def held_write(self, request, obj, change, run):
        """A save that ramps up or reschedules an experiment serving an environment that requires
        approval is held as a change request (``ApprovalHeldSave``, experiments/approvals.py)."""
        if not change:
            return run()
        return experiment_write(experiment=obj, operation="update", user=request.user, run=run)

    # --- deletion: the service's rule (drafts and archived only), in the form and in bulk --------------

    def delete_validate(self, obj: Experiment) -> None:
        experiment_delete_validate(experiment=obj)

    def delete_service(self, obj: Experiment) -> None:
        experiment_delete(experiment=obj)

    # --- lifecycle buttons on the change page --------------------------------------------------------

    def get_urls(self):
        custom = [
            path(
                "<path:object_id>/lifecycle/<str:action_name>/",
                self.admin_site.admin_view(self.lifecycle_view),
                name="experiments_experiment_lifecycle",
            ),
        ]
        return custom + super().get_urls()

    def lifecycle_view(self, request: HttpRequest, object_id: str, action_name: str):
        experiment = get_object_or_404(Experiment, pk=object_id)
        change_url = reverse("admin:experiments_experiment_change", args=[experiment.pk])
        if action_name not in LIFECYCLE_SERVICES or not self.has_change_permission(request, experiment):
            messages.error(request, "You are not allowed to do that.")
            return HttpResponseRedirect(change_url)
        if action_name == "stop":
            return self._stop_view(request, experiment, change_url)
        if request.method == "POST":
            _run_lifecycle(request, experiment, action_name)
        return HttpResponseRedirect(change_url)

    def _stop_view(self, request: HttpRequest, experiment: Experiment, change_url: str):
        form = StopForm(request.POST or None, experiment=experiment)
        if request.method == "POST" and form.is_valid():
            decision = {
                "decision_variant": form.cleaned_data["decision_variant"] or None,
                "reason": form.cleaned_data["reason"],
            }
            try:
                experiment_write(
                    experiment=experiment,
                    operation="stop",
                    user=request.user,
                    run=lambda: experiment_stop(experiment=experiment, user=request.user, **decision),
                    params=decision,
                )
            except ApprovalRequired as held:
                approval_held_message(request, held)
            except (DomainError, ValidationError) as exc:
                text = exc.message if isinstance(exc, DomainError) else "; ".join(exc.messages)
                messages.error(request, f"Could not stop “{experiment.name}”: {text}")
            else:
                messages.success(request, f"“{experiment.name}” stopped.")
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Stop “{experiment.name}”",
            "experiment": experiment,
            "form": form,
            "opts": self.model._meta,
            "original": experiment,
        }
        return TemplateResponse(request, "admin/experiments/experiment/stop.html", context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            buttons = []
            # A holdout's or a safe rollout's experiment changes only with its owner: no buttons, a note.
            context["managed_problem"] = obj.managed_problem
            for name, (allowed_from, _) in TRANSITIONS.items():
                if obj.status not in allowed_from or obj.managed_problem:
                    continue
                url = reverse("admin:experiments_experiment_lifecycle", args=[obj.pk, name])
                if name == "start":  # the pre-flight check first; it has the "Start now" button
                    url = _url_or_none(PREFLIGHT_URL, obj.pk) or url
                buttons.append((name, url))
            context["lifecycle_buttons"] = buttons
            if obj.status != ExperimentStatus.DRAFT:
                context["results_url"] = _url_or_none(RESULTS_URL, obj.pk)
        return super().render_change_form(request, context, add, change, form_url, obj)


def _url_or_none(name: str, pk: int) -> str | None:
    """The URL of an analytics admin page (by name: this app does not import analytics), if installed."""
    try:
        return reverse(name, args=[pk])
    except NoReverseMatch:
        return None


def _results_document(experiment: Experiment) -> Any:
    """The experiment's latest results (an ``analytics.results.ResultsDocument``), or None when never
    computed: read through the reverse one-to-one ``experiment.result`` (the ``ExperimentResult`` row,
    whose ``document`` property gives the type), so this app does not import analytics."""
    try:
        result = experiment.result  # analytics.ExperimentResult, through the reverse one-to-one
    except (ObjectDoesNotExist, AttributeError):
        return None
    return result.document


def _signed_percent(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    text = f"{abs(value) * 100:.1f}%"
    if text == "0.0%":
        return text
    return ("+" if value > 0 else "\u2212") + text
