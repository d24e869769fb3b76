"""The holdouts' admin: forms that go through the services, start and stop actions, and a link to
the results page, which is its internal experiment's (``admin:analytics_experiment_results``)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.core.exceptions import ValidationError
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from config.admin import ServiceDeletion
from config.exceptions import DomainError
from experiments.models import Experiment
from features.holdouts.models import HOLDOUT_LOCKED_FIELDS, Holdout, HoldoutStatus
from features.holdouts.services import (
    EDITABLE_FIELDS,
    holdout_create,
    holdout_delete,
    holdout_delete_validate,
    holdout_links_validate,
    holdout_start,
    holdout_stop,
    holdout_update,
)
from features.models import Feature

RESULTS_URL = "admin:analytics_experiment_results"


def results_url(holdout: Holdout) -> str | None:
    """The holdout's results page (its internal experiment's), once started and if analytics is installed."""
    if holdout.experiment_id is None:
        return None
    try:
        return reverse(RESULTS_URL, args=[holdout.experiment_id])
    except NoReverseMatch:
        return None


class HoldoutForm(forms.ModelForm):
    held_out_flags = forms.ModelMultipleChoiceField(
        label="Flags",
        queryset=Feature.objects.all(),
        required=False,
        widget=FilteredSelectMultiple("flags", is_stacked=False),
        help_text="Held-out units get these flags' default values.",
    )
    held_out_experiments = forms.ModelMultipleChoiceField(
        label="Experiments",
        queryset=Experiment.objects.filter(holdout__isnull=True, safe_rollout__isnull=True),
        required=False,
        widget=FilteredSelectMultiple("experiments", is_stacked=False),
        help_text="Held-out units are never in these experiments.",
    )

    class Meta:
        model = Holdout
        fields = [
            "name",
            "key",
            "description",
            "percentage",
            "environments",
            "metrics",
            "hash_seed",
            "hash_attribute",
        ]
        widgets = {"metrics": FilteredSelectMultiple("metrics", is_stacked=False)}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["held_out_flags"].initial = list(self.instance.features.all())
            self.fields["held_out_experiments"].initial = list(self.instance.experiments.all())
            if self.instance.status != HoldoutStatus.DRAFT:
                for name in HOLDOUT_LOCKED_FIELDS:
                    self.fields[name].disabled = True
                    self.fields[name].help_text = "Locked: the holdout has started, units would change group."

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        try:
            holdout_links_validate(
                self.instance, cleaned.get("held_out_flags") or [], cleaned.get("held_out_experiments") or []
            )
        except ValidationError as exc:
            names = {"features": "held_out_flags", "experiments": "held_out_experiments"}
            for field, errors in exc.message_dict.items():
                self.add_error(names.get(field, field), errors)
        return cleaned


@admin.register(Holdout)
class HoldoutAdmin(ServiceDeletion, SimpleHistoryAdmin):
    form = HoldoutForm
    list_display = [
        "name_and_key",
        "status",
        "percentage_shown",
        "flags_count",
        "experiments_count",
        "results",
    ]
    list_filter = ["status"]
    search_fields = ["key", "name", "description"]
    list_select_related = ["experiment"]
    readonly_fields = [
        "status",
        "experiment",
        "results",
        "started_at",
        "stopped_at",
        "created_at",
        "updated_at",
    ]
    actions = ["start_selected", "stop_selected"]
    fieldsets = [
        (None, {"fields": ["name", "key", "description", "status", "results"]}),
        (
            "Who is held out, and from what",
            {
                "fields": ["percentage", "environments", "held_out_flags", "held_out_experiments"],
                "description": "Held-out units get the chosen flags' defaults and are in none of the chosen "
                "experiments. An equal share of everyone else is measured for comparison.",
            },
        ),
        ("Results", {"fields": ["metrics"]}),
        ("Advanced", {"fields": ["hash_seed", "hash_attribute"], "classes": ["collapse"]}),
        (
            "Record",
            {
                "fields": ["experiment", "started_at", "stopped_at", "created_at", "updated_at"],
                "classes": ["collapse"],
            },
        ),
    ]

    @admin.display(description="holdout", ordering="name")
    def name_and_key(self, obj: Holdout) -> str:
        return format_html('{}<span class="list-key">{}</span>', obj.name, obj.key)

    @admin.display(description="held out", ordering="percentage")
    def percentage_shown(self, obj: Holdout) -> str:
        return f"{obj.percentage:g}% (+{obj.percentage:g}% measured)"

    @admin.display(description="flags")
    def flags_count(self, obj: Holdout) -> int:
        return obj.feature_links.count()

    @admin.display(description="experiments")
    def experiments_count(self, obj: Holdout) -> int:
        return obj.experiment_links.count()

    @admin.display(description="results")
    def results(self, obj: Holdout) -> str:
        url = results_url(obj) if obj.pk else None
        if url is None:
            return "Available once started." if obj.pk is None or obj.status == HoldoutStatus.DRAFT else "–"
        return format_html('<a href="{}">Results: held out vs. general population</a>', url)

    def delete_validate(self, obj: Holdout) -> None:
        holdout_delete_validate(holdout=obj)

    def delete_service(self, obj: Holdout) -> None:
        holdout_delete(holdout=obj)

    def save_model(self, request, obj: Holdout, form: HoldoutForm, change: bool) -> None:
        data = form.cleaned_data
        links = {
            "features": list(data.get("held_out_flags") or []),
            "experiments": list(data.get("held_out_experiments") or []),
            "metrics": list(data.get("metrics") or []),
        }
        # Locked fields of a started holdout are disabled: their cleaned value is the stored one.
        fields = {name: data[name] for name in EDITABLE_FIELDS if name in data}
        if change:
            saved = holdout_update(holdout=obj, user=request.user, **links, **fields)
        else:
            saved = holdout_create(user=request.user, **links, **fields)
        obj.pk = saved.pk

    def save_related(self, request, form, formsets, change) -> None:
        # The services wrote the flags, experiments and metrics (save_model).
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def _lifecycle(self, request, queryset, service, verb: str) -> None:
        for holdout in queryset:
            try:
                service(holdout=holdout, user=request.user)
            except (DomainError, ValidationError) as exc:
                messages.error(request, f"{holdout.key}: {getattr(exc, 'message', exc)}")
            else:
                messages.success(request, f"{holdout.key}: {verb}.")

    @admin.action(description="Start the selected holdouts", permissions=["change"])
    def start_selected(self, request, queryset) -> None:
        self._lifecycle(request, queryset, holdout_start, "started")

    @admin.action(description="Stop the selected holdouts", permissions=["change"])
    def stop_selected(self, request, queryset) -> None:
        self._lifecycle(request, queryset, holdout_stop, "stopped")
