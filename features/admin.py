"""The feature-flag admin: flags with per-environment switches and rules as rows, and SDK keys."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models
from django.forms.models import BaseInlineFormSet
from simple_history.admin import SimpleHistoryAdmin

from features.models import (
    Environment,
    Feature,
    FeatureEnvironment,
    FeaturePrerequisite,
    FeatureRule,
    SdkKey,
)
from features.services import (
    feature_value_validate,
    prerequisites_validate,
    rule_validate,
    sdk_key_assign_secret,
)


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


class FeatureEnvironmentInline(admin.TabularInline):
    model = FeatureEnvironment
    extra = 0
    fields = ["environment", "enabled"]
    verbose_name = "environment switch"
    verbose_name_plural = "On or off per environment"


class FeatureRuleInline(admin.TabularInline):
    model = FeatureRule
    formfield_overrides = {models.JSONField: {"widget": forms.Textarea(attrs={"rows": 2, "cols": 28})}}
    formset = FeatureRuleFormSet
    extra = 0
    fields = [
        "environment",
        "position",
        "type",
        "condition",
        "value",
        "coverage",
        "experiment",
        "variant_values",
    ]
    autocomplete_fields = ["experiment"]
    verbose_name = "rule"
    verbose_name_plural = "Rules (tried in order per environment; the first that applies wins)"


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


@admin.register(Feature)
class FeatureAdmin(SimpleHistoryAdmin):
    form = FeatureForm
    inlines = [FeatureEnvironmentInline, FeatureRuleInline, FeaturePrerequisiteInline]
    list_display = ["name", "key", "type", "default_value", "environments_on", "owner", "updated_at"]
    list_filter = ["type", "tags", "owner", "environment_settings__enabled"]
    search_fields = ["key", "name", "description"]
    list_select_related = ["owner"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "key", "type", "default_value", "description", "tags", "owner"]}),
        ("Record", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("environment_settings__environment")

    @admin.display(description="on in")
    def environments_on(self, obj: Feature) -> str:
        on = [fe.environment.key for fe in obj.environment_settings.all() if fe.enabled]
        return ", ".join(on) or "–"

    def save_model(self, request, obj, form, change):
        if not change and obj.owner_id is None:
            obj.owner = request.user
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # Every environment gets its on/off row, so the switches are always there to flip.
        for environment in Environment.objects.all():
            FeatureEnvironment.objects.get_or_create(feature=form.instance, environment=environment)


@admin.register(Environment)
class EnvironmentAdmin(SimpleHistoryAdmin):
    list_display = ["name", "key", "position", "description"]
    search_fields = ["key", "name"]
    ordering = ["position"]


class SdkKeyForm(forms.ModelForm):
    class Meta:
        model = SdkKey
        fields = ["environment", "name", "revoked"]


@admin.register(SdkKey)
class SdkKeyAdmin(admin.ModelAdmin):
    form = SdkKeyForm
    list_display = ["prefix", "name", "environment", "revoked", "created_at", "created_by"]
    list_filter = ["environment", "revoked"]
    search_fields = ["prefix", "name"]
    list_select_related = ["environment", "created_by"]
    readonly_fields = ["prefix", "created_at", "created_by"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return [*self.readonly_fields, "environment"]
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        if not change:
            raw = sdk_key_assign_secret(obj, user=request.user)
            super().save_model(request, obj, form, change)
            messages.warning(
                request,
                f"Copy this SDK key for {obj.environment.name} now; it is not stored and will not be shown again: {raw}",
            )
            return
        super().save_model(request, obj, form, change)
