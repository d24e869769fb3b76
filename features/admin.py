"""The feature-flag admin: flags with per-environment switches and rules as rows, and SDK keys.

On a flag's page the flag editor (``features/rule_editor.py`` and ``features/static/features/``) shows
the rules formset as cards per environment and writes every edit back into the formset's fields, so
the formset below is what is validated and saved, with or without JavaScript.

The flag's page has a "try it" box: it evaluates the saved flag for a unit id and attributes in one
environment, through the same compiled configuration and evaluator the SDK endpoints use
(``features.config.config_get``, ``features.evaluation.evaluate_feature``), and says why; or the
editor's unsaved rules for that environment, posted with the question.
"""

import datetime as dt
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince
from django.utils.timezone import localtime
from simple_history.admin import SimpleHistoryAdmin

from config.admin import ServiceDeletion
from features.config import config_get
from features.encryption import encryption_key_generate
from features.evaluation import Reason, evaluate_feature
from features.models import (
    Environment,
    Feature,
    FeatureEnvironment,
    FeaturePrerequisite,
    FeatureRule,
    RuleType,
    SafeRollout,
    SdkKey,
    SdkKeyKind,
)
from features.rule_editor import draft_config, draft_rules_clean, rule_editor_data
from features.safe_rollouts import FINISH_AFTER_HOURS_MAX, safe_rollout_start
from features.services import (
    environment_delete,
    environment_delete_validate,
    feature_changed_emit,
    feature_value_validate,
    prerequisites_validate,
    rule_validate,
    sdk_key_assign_secret,
)
from metrics.models import Metric


def _first_message(exc: ValidationError) -> list[str]:
    return [message for messages_ in exc.message_dict.values() for message in messages_]


class FeatureForm(forms.ModelForm):
    def clean(self):
        cleaned = super().clean()
        if "type" in cleaned and "default_value" in cleaned:
            try:
                feature_value_validate(cleaned["default_value"], cleaned["type"], field="default_value")
            except ValidationError as exc:
                self.add_error("default_value", _first_message(exc))
        return cleaned


class FeatureRuleFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        for index, form in enumerate(self.forms):
            data = form.cleaned_data
            if not data or data.get("DELETE"):
                continue
            rule = {
                "type": data.get("type"),
                "condition": data.get("condition") or {},
                "value": data.get("value"),
                "coverage": data.get("coverage"),
                "hash_attribute": data.get("hash_attribute"),
                "fallback_attribute": data.get("fallback_attribute"),
                "experiment": data.get("experiment"),
                "values": data.get("variant_values"),
            }
            env = data.get("environment")
            try:
                rule_validate(
                    rule, feature_type=self.instance.type, where=f"{env.key if env else ''} row {index + 1}: "
                )
            except ValidationError as exc:
                form.add_error(None, _first_message(exc))


class _PlainForeignKeys:
    """Inline rows without the pencil / plus / eye links next to each select: they crowd the rows."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        widget = getattr(field, "widget", None)
        if isinstance(widget, RelatedFieldWidgetWrapper):
            widget.can_add_related = widget.can_change_related = False
            widget.can_delete_related = widget.can_view_related = False
        return field


class FeatureEnvironmentInline(_PlainForeignKeys, admin.TabularInline):
    model = FeatureEnvironment
    extra = 0
    fields = ["environment", "enabled"]
    verbose_name = "environment switch"
    verbose_name_plural = "On or off per environment"


def _json_area(placeholder: str, cols: int = 20, rows: int = 2) -> forms.Textarea:
    return forms.Textarea(
        attrs={"rows": rows, "cols": cols, "placeholder": placeholder, "spellcheck": "false"}
    )


class OptionalJSONField(forms.JSONField):
    """A JSON box that shows nothing (not ``null``) when there is no value, and reads an empty box as none."""

    def prepare_value(self, value: Any) -> Any:
        return "" if value is None else super().prepare_value(value)


# Short names in the rule rows; the column's help text says what each does.
RULE_TYPE_CHOICES = [("force", "Force"), ("rollout", "Rollout"), ("experiment", "Experiment")]


class FeatureRuleForm(forms.ModelForm):
    """A rule row with short type names and examples in the empty boxes, so each field says what it expects."""

    type = forms.ChoiceField(
        choices=RULE_TYPE_CHOICES,
        help_text="Force: serve the value to everyone matching. Rollout: to a share of them. "
        "Experiment: each variant gets its value.",
    )

    class Meta:
        model = FeatureRule
        fields = [
            "environment",
            "position",
            "type",
            "condition",
            "value",
            "coverage",
            "hash_attribute",
            "fallback_attribute",
            "experiment",
            "variant_values",
        ]
        field_classes = {"value": OptionalJSONField, "variant_values": OptionalJSONField}
        widgets = {
            # Narrow boxes (the rows fit a 1440 px screen): three lines show a condition or a mapping.
            "condition": _json_area('{"plan": "pro"}  (empty: everyone)', rows=3),
            "value": _json_area("true", cols=12),
            "variant_values": _json_area('{"control": false, "treatment": true}', rows=3),
            "coverage": forms.NumberInput(
                attrs={"step": "0.01", "min": "0", "max": "1", "placeholder": "0.2", "style": "width:4.5em"}
            ),
            "position": forms.NumberInput(attrs={"style": "width:3em"}),
            "hash_attribute": forms.TextInput(attrs={"placeholder": "id", "style": "width:6.5em"}),
            "fallback_attribute": forms.TextInput(attrs={"placeholder": "(none)", "style": "width:6.5em"}),
        }
        labels = {"position": "order", "hash_attribute": "by", "fallback_attribute": "else by"}
        help_texts = {
            "environment": "Where this rule applies.",
            "position": "Order within the environment: lower first.",
            "value": 'Force and rollout rules: the value served (JSON: true, 50, "blue").',
            "coverage": "Rollout rules: the share of matching users, 0 to 1.",
            "hash_attribute": "Rollout rules: the attribute that picks the share; id is the user (unit) id, "
            "company_id rolls out to whole companies.",
            "fallback_attribute": "Rollout rules, optional: used when a user has no value for the first, e.g. "
            "id. Empty: such users are left out.",
            "experiment": "Experiment rules: a running experiment decides.",
        }


class FeatureRuleInline(_PlainForeignKeys, admin.TabularInline):
    model = FeatureRule
    form = FeatureRuleForm
    formset = FeatureRuleFormSet
    extra = 0
    # Where and in which order, then who it applies to, then what they get, then the rule in words.
    fields = [*FeatureRuleForm.Meta.fields, "in_words"]
    readonly_fields = ["in_words"]
    autocomplete_fields = ["experiment"]
    classes = ["feature-rules"]
    verbose_name = "rule"
    verbose_name_plural = (
        "Rules, per environment, tried in order: the first that applies wins; nobody matched gets the default"
    )

    @admin.display(description="reads as")
    def in_words(self, rule: FeatureRule) -> str:
        """The saved rule in a sentence, e.g. "Serve true to 30% of everyone"."""
        if rule.pk is None:
            return "–"
        who = "everyone" if not rule.condition else f"users where {_compact(rule.condition)}"
        if rule.type == "force":
            return f"Serve {_compact(rule.value)} to {who}"
        if rule.type == "rollout":
            unit = ""
            if rule.hash_attribute and rule.hash_attribute != "id":
                unit = f", chosen by {rule.hash_attribute}"
                unit += f" (else {rule.fallback_attribute})" if rule.fallback_attribute else ""
            return f"Serve {_compact(rule.value)} to {(rule.coverage or 0):.0%} of {who}{unit}"
        values = ", ".join(f"{k} → {_compact(v)}" for k, v in (rule.variant_values or {}).items())
        experiment = rule.experiment.key if rule.experiment_id else "?"
        return f"Experiment “{experiment}” decides for {who}: {values}"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


class PrerequisiteFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        items = [
            {"feature": form.cleaned_data["prerequisite"], "value": form.cleaned_data.get("value")}
            for form in self.forms
            if form.cleaned_data
            and not form.cleaned_data.get("DELETE")
            and form.cleaned_data.get("prerequisite")
        ]
        try:
            prerequisites_validate(self.instance if self.instance.pk else None, items)
        except ValidationError as exc:
            raise ValidationError(_first_message(exc)) from None


class FeaturePrerequisiteInline(admin.TabularInline):
    model = FeaturePrerequisite
    fk_name = "feature"
    formset = PrerequisiteFormSet
    extra = 0
    autocomplete_fields = ["prerequisite"]
    verbose_name_plural = "Prerequisites (served only when these flags have these values)"


# Why a flag answered what it did, in a product manager's words (reasons: features.evaluation.Reason).
REASON_WORDS = {
    Reason.STATIC: "The environment has no rules: everyone gets the default value.",
    Reason.TARGETING_MATCH: "A force rule matched these attributes.",
    Reason.DEFAULT: "Rules exist but none applied to this unit: the default value.",
    Reason.DISABLED: "The flag is off in this environment: the default value.",
    Reason.PREREQUISITE_FAILED: "A prerequisite flag did not have the required value: the default value.",
}


class TryItForm(forms.Form):
    """The "try it" box: which environment, which unit, which attributes."""

    environment = forms.ModelChoiceField(queryset=Environment.objects.all(), to_field_name="key")
    unit_id = forms.CharField(max_length=200, initial="user-42", label="Unit id")
    attributes = forms.CharField(required=False, initial="{}", label="Attributes (JSON)")

    def clean_attributes(self) -> dict[str, Any]:
        text = (self.cleaned_data.get("attributes") or "").strip() or "{}"
        try:
            attributes = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from None
        if not isinstance(attributes, dict):
            raise ValidationError('Attributes must be a JSON object, e.g. {"plan": "pro", "country": "DE"}.')
        return attributes


def feature_try(
    *, feature: Feature, environment: Environment, unit_id: str, attributes: dict, rules: list | None = None
) -> dict[str, Any]:
    """Evaluate the saved ``feature`` for a unit as the SDK endpoints would; the answer and why.
    With ``rules`` (the flag editor's, unsaved, from ``draft_rules_clean``), those rules instead."""
    config = (
        config_get(environment.pk)
        if rules is None
        else draft_config(feature=feature, environment=environment, rules=rules)
    )
    evaluation = evaluate_feature(config, feature.key, unit_id, attributes)
    if evaluation is None:  # saved after the configuration was read; it reloads within a second
        return {"error": "This flag is not in the environment's configuration yet; try again in a moment."}
    if evaluation.reason == Reason.SPLIT and evaluation.experiment:
        explanation = f"An experiment rule: “{evaluation.experiment}” assigned this unit variant “{evaluation.variant}”."
    elif evaluation.reason == Reason.SPLIT:
        explanation = "A rollout rule: this unit is in the share that gets the value."
    else:
        explanation = REASON_WORDS.get(evaluation.reason, "")
    if evaluation.variant.startswith("rule-"):
        explanation += f" Rule {evaluation.variant.removeprefix('rule-')} of {environment.name}."
    if rules is not None:
        explanation += " (The rules as edited, not saved.)"
    return {
        "environment": environment.key,
        "unit_id": unit_id,
        "value": evaluation.value,
        "value_json": json.dumps(evaluation.value, ensure_ascii=False),
        "variant": evaluation.variant,
        "reason": evaluation.reason,
        "explanation": explanation.strip(),
    }


class SafeRolloutForm(forms.Form):
    """Monitor a partial rollout rule of this flag with guardrail metrics (docs/analysis.md)."""

    rule = forms.ModelChoiceField(queryset=FeatureRule.objects.none(), label="Rollout rule")
    metrics = forms.ModelMultipleChoiceField(queryset=Metric.objects.all(), label="Guardrail metrics")
    finish_after_hours = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=FINISH_AFTER_HOURS_MAX,
        label="Finish after (hours)",
        help_text="At most a year (8760 hours). Empty: never finish on its own.",
    )

    def __init__(self, feature: Feature, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["rule"].queryset = (
            FeatureRule.objects.filter(
                feature=feature,
                type=RuleType.ROLLOUT,
                coverage__gt=0,
                coverage__lt=1,
                safe_rollout__isnull=True,
            )
            .select_related("environment", "feature")
            .order_by("environment__position", "position", "id")
        )


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2%}"


def safe_rollouts_panel(feature: Feature) -> list[dict[str, Any]]:
    """What each safe rollout of ``feature`` is doing, for the flag page's panel."""
    rows = []
    for safe in (
        SafeRollout.objects.filter(rule__feature=feature)
        .select_related("rule", "rule__environment", "experiment")
        .order_by("rule__environment__position", "rule__position", "id")
    ):
        guardrails = []
        for row in safe.evidence.get("guardrails") or []:
            ci = row.get("relative_ci") or [None, None]
            guardrails.append(
                {
                    **row,
                    "lift": _percent(row.get("relative")),
                    "interval": f"[{_percent(ci[0])}, {_percent(ci[1])}]" if row.get("relative_ci") else "–",
                }
            )
        rows.append(
            {
                "safe": safe,
                "guardrails": guardrails,
                "checked_at": safe.evidence.get("computed_at"),
                "results_url": reverse("admin:analytics_experiment_results", args=[safe.experiment_id]),
            }
        )
    return rows


@admin.register(Feature)
class FeatureAdmin(SimpleHistoryAdmin):
    form = FeatureForm
    inlines = [FeatureEnvironmentInline, FeatureRuleInline, FeaturePrerequisiteInline]
    list_display = ["name_and_key", "type", "default_value", "environments_on", "owner", "updated_at"]
    list_filter = ["type", "tags", "owner", "environment_settings__enabled"]
    search_fields = ["key", "name", "description"]
    list_select_related = ["owner"]
    readonly_fields = ["created_at", "updated_at", "holdout"]
    fieldsets = [
        (
            None,
            {"fields": ["name", "key", "type", "default_value", "description", "tags", "owner", "holdout"]},
        ),
        ("Record", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("environment_settings__environment")

    @admin.display(description="flag", ordering="name")
    def name_and_key(self, obj: Feature) -> str:
        return format_html('{}<span class="list-key">{}</span>', obj.name, obj.key)

    @admin.display(description="holdout")
    def holdout(self, obj: Feature) -> str:
        """The holdout that holds this flag out, if any (its users get the default value)."""
        link = obj.holdout_links.select_related("holdout").first() if obj.pk else None
        if link is None:
            return "None: everyone is served by the rules below."
        holdout = link.holdout
        url = reverse("admin:features_holdout_change", args=[holdout.pk])
        share = f"{holdout.percentage:g}% of users"
        effect = {
            "draft": f"{share} will get the default value once it starts",
            "running": f"{share} get the default value in {', '.join(holdout.environments)}",
            "stopped": "stopped: nobody is held out any more",
        }.get(holdout.status, holdout.status)
        return format_html('<a href="{}">{}</a>: {}.', url, holdout.name, effect)

    @admin.display(description="on in")
    def environments_on(self, obj: Feature) -> str:
        on = [fe.environment.key for fe in obj.environment_settings.all() if fe.enabled]
        return ", ".join(on) or "–"

    def save_model(self, request, obj, form, change):
        if not change and obj.owner_id is None:
            obj.owner = request.user
        super().save_model(request, obj, form, change)

    # --- the "try it" box ------------------------------------------------------------------------------
    def get_urls(self):
        return [
            path(
                "<path:object_id>/try/",
                self.admin_site.admin_view(self.try_view),
                name="features_feature_try",
            ),
            path(
                "<path:object_id>/safe-rollout/",
                self.admin_site.admin_view(self.safe_rollout_view),
                name="features_feature_safe_rollout",
            ),
            *super().get_urls(),
        ]

    def safe_rollout_view(self, request: HttpRequest, object_id: str) -> HttpResponseRedirect:
        """POST: start monitoring one of the flag's rollout rules (features.safe_rollouts)."""
        feature = get_object_or_404(Feature, pk=object_id)
        if request.method != "POST" or not self.has_change_permission(request, feature):
            raise PermissionDenied
        form = SafeRolloutForm(feature, request.POST)
        if form.is_valid():
            try:
                safe_rollout_start(
                    rule=form.cleaned_data["rule"],
                    metrics=list(form.cleaned_data["metrics"]),
                    finish_after_hours=form.cleaned_data["finish_after_hours"],
                    user=request.user,
                )
            except ValidationError as exc:
                for message in exc.messages:
                    messages.error(request, f"Safe rollout not started: {message}")
            else:
                messages.success(request, "Safe rollout started: each results refresh checks its guardrails.")
        else:
            for field, errors in form.errors.items():
                messages.error(request, f"Safe rollout not started: {field}: {' '.join(errors)}")
        return HttpResponseRedirect(reverse("admin:features_feature_change", args=[feature.pk]))

    def try_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """JSON for the "try it" box: ``{"value", "value_json", "variant", "reason", "explanation"}``,
        or ``{"errors": {field: [messages]}}`` with status 400. GET evaluates the saved flag; POST
        with ``rules`` (the flag editor's, unsaved, for the environment) evaluates those rules."""
        feature = get_object_or_404(Feature, pk=object_id)
        if not self.has_view_permission(request, feature):
            raise PermissionDenied
        form = TryItForm(request.POST if request.method == "POST" else request.GET)
        errors = {} if form.is_valid() else {k: [str(m) for m in v] for k, v in form.errors.items()}
        rules = None
        if request.method == "POST" and not errors:
            try:
                rules = draft_rules_clean(
                    request.POST.get("rules", ""),
                    feature=feature,
                    environment=form.cleaned_data["environment"],
                )
            except ValidationError as exc:
                errors["rules"] = list(exc.messages)
        if errors:
            return JsonResponse({"errors": errors}, status=400)
        return JsonResponse(
            feature_try(
                feature=feature,
                environment=form.cleaned_data["environment"],
                unit_id=form.cleaned_data["unit_id"],
                attributes=form.cleaned_data["attributes"],
                rules=rules,
            )
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # The flag editor (features/rule_editor.py) shows the rules formset as cards; read-only pages
        # (view permission only) keep the table.
        editable = (
            self.has_add_permission(request) if obj is None else self.has_change_permission(request, obj)
        )
        if editable:
            context["rule_editor"] = rule_editor_data(obj)
        if obj is not None:
            enabled = [fe.environment.key for fe in obj.environment_settings.all() if fe.enabled]
            initial = {
                "environment": enabled[0] if enabled else None,
                "unit_id": "user-42",
                "attributes": "{}",
            }
            context["try_form"] = TryItForm(initial=initial, auto_id="try_%s")
            context["try_url"] = reverse("admin:features_feature_try", args=[obj.pk])
            context["safe_rollouts"] = safe_rollouts_panel(obj)
            if editable:
                form = SafeRolloutForm(obj, auto_id="safe_%s")
                if form.fields["rule"].queryset.exists():
                    context["safe_rollout_form"] = form
                    context["safe_rollout_url"] = reverse(
                        "admin:features_feature_safe_rollout", args=[obj.pk]
                    )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # Every environment gets its on/off row, so the switches are always there to flip.
        for environment in Environment.objects.all():
            FeatureEnvironment.objects.get_or_create(feature=form.instance, environment=environment)
        feature_changed_emit(
            feature=form.instance, action="updated" if change else "created", user=request.user
        )


@admin.register(Environment)
class EnvironmentAdmin(ServiceDeletion, SimpleHistoryAdmin):
    list_display = ["name", "key", "position", "requires_approval", "description"]
    list_filter = ["requires_approval"]
    search_fields = ["key", "name"]
    ordering = ["position"]

    # Deleting an environment deletes its SDK keys: the service refuses while any is active.
    def delete_validate(self, obj: Environment) -> None:
        environment_delete_validate(environment=obj)

    def delete_service(self, obj: Environment) -> None:
        environment_delete(environment=obj)


class SdkKeyForm(forms.ModelForm):
    encrypt_payload = forms.BooleanField(
        required=False,
        label="Encrypt the payload",
        help_text="GrowthBook's SDKs then need the decryption key shown after saving; without it the "
        "payload's targeting rules cannot be read. The key ships with your app, so this keeps rules "
        "from casual view; remote evaluation keeps them on the server. Only when the key is made.",
    )

    class Meta:
        model = SdkKey
        fields = ["environment", "name", "kind", "revoked"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "kind" in self.fields:  # read-only once made; left out of a post, a secret key as before
            self.fields["kind"].required = False

    def clean_kind(self) -> str:
        return self.cleaned_data.get("kind") or SdkKeyKind.SECRET


class SdkKeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() in ("active", "revoked"):
            return queryset.filter(revoked=self.value() == "revoked")
        return queryset


@admin.register(SdkKey)
class SdkKeyAdmin(admin.ModelAdmin):
    form = SdkKeyForm
    list_display = [
        "prefix",
        "name",
        "kind",
        "environment",
        "status",
        "last_used",
        "created_at",
        "created_by",
    ]
    list_filter = ["environment", "kind", SdkKeyStatusFilter]
    search_fields = ["prefix", "name"]
    list_select_related = ["environment", "created_by"]
    readonly_fields = ["prefix", "encryption_key", "last_used_at", "created_at", "created_by"]

    @admin.display(description="status", ordering="revoked")
    def status(self, key: SdkKey) -> str:
        colour, text = ("#dc3545", "Revoked") if key.revoked else ("#198754", "Active")
        return format_html(
            '<span style="background:{};color:#fff;padding:2px 8px;border-radius:10px">{}</span>',
            colour,
            text,
        )

    @admin.display(description="last used", ordering="last_used_at")
    def last_used(self, key: SdkKey) -> str:
        """How long ago an SDK request used the key (recorded to the minute), or never."""
        if key.last_used_at is None:
            return "never"
        if timezone.now() - key.last_used_at < dt.timedelta(minutes=1):
            text = "within the last minute"
        else:
            text = f"{timesince(key.last_used_at, depth=1)} ago"
        return format_html(
            '<span title="{}">{}</span>', localtime(key.last_used_at).isoformat(" ", "minutes"), text
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return [*self.readonly_fields, "environment", "kind"]
        return self.readonly_fields

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        # Encryption is chosen when the key is made; afterwards its decryption key is shown.
        hidden = "encrypt_payload" if obj is not None else "encryption_key"
        return [f for f in fields if f != hidden]

    def save_model(self, request, obj, form, change):
        if not change:
            raw = sdk_key_assign_secret(obj, user=request.user)
            if form.cleaned_data.get("encrypt_payload"):
                obj.encryption_key = encryption_key_generate()
            super().save_model(request, obj, form, change)
            if obj.encryption_key:
                messages.info(
                    request,
                    "The payload of this key is encrypted; give GrowthBook's SDK this decryption key "
                    f"(decryptionKey / decryption_key), also shown on the key's page: {obj.encryption_key}",
                )
            messages.warning(
                request,
                f"Copy this {'client' if obj.kind == SdkKeyKind.CLIENT else 'secret'} SDK key for {obj.environment.name} now; it is not stored and will not be shown again: {raw}",
            )
            return
        super().save_model(request, obj, form, change)


# Change requests, scheduled changes, and the flag admin's save through approvals (re-registers Feature).
from features.governance import admin as governance_admin  # noqa: E402, F401

# Holdouts' admin lives with them (features/holdouts/admin.py); importing it registers it here.
from features.holdouts import admin as holdouts_admin  # noqa: E402, F401

# Webhooks' admin lives with them (features/webhooks/admin.py); importing it registers it here.
from features.webhooks import admin as webhooks_admin  # noqa: E402, F401
