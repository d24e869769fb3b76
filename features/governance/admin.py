"""The admin of approvals and scheduled changes, and the flag admin's save through approvals.

- "Change requests": the list (what, where, who, whether it is outdated) and each one's page with its
  diff and the Approve / Reject buttons (Approve applies it). Read only otherwise: a change request is
  made by saving the flag, experiment or holdout it changes.
- "Scheduled changes": schedule a switch or a coverage change (the flag's page links here with the flag
  filled in), cancel a pending one.
- The flag's page: its save goes through ``feature_write`` (held as a change request when it changes
  an environment that requires approval), and it lists the flag's open change requests and pending
  scheduled changes. The flag admin of ``features.admin`` is re-registered as a subclass here, so its
  own code (the rules editor) stays as it is.
"""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from config.admin import ApprovalHeldSave, approval_held_message
from config.exceptions import ApprovalRequired, DomainError
from features.admin import FeatureAdmin
from features.governance.models import (
    ChangeRequest,
    ChangeRequestStatus,
    ScheduledChange,
    ScheduledChangeStatus,
)
from features.governance.selectors import change_request_outdated
from features.governance.services import (
    APPROVE_PERMISSION,
    change_request_approve,
    change_request_reject,
    feature_delete,
    feature_delete_environments,
    feature_write,
    scheduled_change_cancel,
    scheduled_change_create,
    scheduled_change_validate,
)
from features.models import Feature

BADGE = (
    '<span style="background:{};color:#fff;padding:2px 8px;border-radius:10px;white-space:nowrap">{}</span>'
)
CHANGE_REQUEST_COLOURS = {
    ChangeRequestStatus.OPEN: "#b58105",
    ChangeRequestStatus.APPLIED: "#198754",
    ChangeRequestStatus.REJECTED: "#6c757d",
}
SCHEDULED_COLOURS = {
    ScheduledChangeStatus.PENDING: "#0d6efd",
    ScheduledChangeStatus.DONE: "#198754",
    ScheduledChangeStatus.FAILED: "#dc3545",
    ScheduledChangeStatus.CANCELLED: "#6c757d",
}


def _error_text(exc: Exception) -> str:
    if isinstance(exc, DomainError):
        return exc.message
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    return str(exc) or "You are not allowed to do that."


def _pretty(value: Any) -> str:
    return "–" if value is None else json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


class ReviewForm(forms.Form):
    comment = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        label="Comment (optional)",
    )


@admin.register(ChangeRequest)
class ChangeRequestAdmin(SimpleHistoryAdmin):
    list_display = [
        "number",
        "title",
        "status_badge",
        "where",
        "created_by",
        "created_at",
        "reviewed_by",
        "state",
    ]
    list_filter = ["status", "operation"]
    search_fields = ["title", "target_key"]
    list_select_related = ["created_by", "reviewed_by"]
    date_hierarchy = "created_at"
    change_form_template = "admin/features/changerequest/change_form.html"
    fields = [
        "title",
        "status",
        "operation",
        "target_key",
        "where",
        "comment",
        "created_by",
        "created_at",
        "reviewed_by",
        "reviewed_at",
        "review_comment",
        "applied_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # made by saving the flag, experiment or holdout it changes

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # reviewed with the buttons, never edited

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # part of the record

    @admin.display(description="#", ordering="id")
    def number(self, obj: ChangeRequest) -> str:
        return f"#{obj.pk}"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: ChangeRequest) -> str:
        return format_html(BADGE, CHANGE_REQUEST_COLOURS.get(obj.status, "#6c757d"), obj.get_status_display())

    @admin.display(description="environments")
    def where(self, obj: ChangeRequest) -> str:
        return ", ".join(obj.environments)

    @admin.display(description="")
    def state(self, obj: ChangeRequest) -> str:
        if change_request_outdated(obj):
            return format_html(
                '<span style="color:#dc3545" title="{}">outdated</span>',
                "Its target changed since it was proposed: approving it is refused. Reject it and propose again.",
            )
        return ""

    def get_urls(self):
        return [
            path(
                "<path:object_id>/review/<str:decision>/",
                self.admin_site.admin_view(self.review_view),
                name="features_changerequest_review",
            ),
            *super().get_urls(),
        ]

    def review_view(self, request: HttpRequest, object_id: str, decision: str):
        change_request = get_object_or_404(ChangeRequest, pk=object_id)
        url = reverse("admin:features_changerequest_change", args=[change_request.pk])
        if request.method != "POST" or decision not in ("approve", "reject"):
            return HttpResponseRedirect(url)
        form = ReviewForm(request.POST)
        comment = form.cleaned_data["comment"] if form.is_valid() else ""
        service = change_request_approve if decision == "approve" else change_request_reject
        try:
            service(change_request=change_request, user=request.user, comment=comment)
        except (DomainError, ValidationError, PermissionDenied) as exc:
            messages.error(
                request, f"Could not {decision} change request #{change_request.pk}: {_error_text(exc)}"
            )
        else:
            done = "approved and applied" if decision == "approve" else "rejected"
            messages.success(request, f"Change request #{change_request.pk} {done}.")
        return HttpResponseRedirect(url)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            is_open = obj.status == ChangeRequestStatus.OPEN
            is_author = obj.created_by_id == request.user.pk
            context.update(
                diff_rows=[(row["path"], _pretty(row["before"]), _pretty(row["after"])) for row in obj.diff],
                outdated=change_request_outdated(obj),
                can_approve=is_open and not is_author and request.user.has_perm(APPROVE_PERMISSION),
                can_reject=is_open and (is_author or request.user.has_perm(APPROVE_PERMISSION)),
                is_author=is_author,
                is_open=is_open,
                review_form=ReviewForm(auto_id="review_%s"),
                approve_url=reverse("admin:features_changerequest_review", args=[obj.pk, "approve"]),
                reject_url=reverse("admin:features_changerequest_review", args=[obj.pk, "reject"]),
                target_url=_target_url(obj),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)


def _target_url(change_request: ChangeRequest) -> str | None:
    if change_request.feature_id:
        return reverse("admin:features_feature_change", args=[change_request.feature_id])
    if change_request.experiment_id:
        return reverse("admin:experiments_experiment_change", args=[change_request.experiment_id])
    if change_request.holdout_id:
        return reverse("admin:features_holdout_change", args=[change_request.holdout_id])
    return None


class ScheduledChangeForm(forms.ModelForm):
    class Meta:
        model = ScheduledChange
        fields = ["feature", "environment", "action", "rule_position", "coverage", "run_at", "comment"]
        widgets = {"comment": forms.Textarea(attrs={"rows": 2})}
        help_texts = {
            "run_at": "In the admin's time zone (UTC unless configured otherwise); it happens in that minute."
        }

    def clean(self):
        cleaned = super().clean()
        if self.errors or not cleaned.get("feature") or not cleaned.get("environment"):
            return cleaned
        try:
            cleaned["run_at"] = scheduled_change_validate(
                feature=cleaned["feature"],
                environment=cleaned["environment"],
                action=cleaned.get("action"),
                run_at=cleaned.get("run_at"),
                rule_position=cleaned.get("rule_position"),
                coverage=cleaned.get("coverage"),
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)
        return cleaned


@admin.register(ScheduledChange)
class ScheduledChangeAdmin(SimpleHistoryAdmin):
    form = ScheduledChangeForm
    list_display = ["what", "run_at", "status_badge", "created_by", "change_request", "result"]
    list_filter = ["status", "action", "environment"]
    search_fields = ["feature__key", "feature__name"]
    list_select_related = ["feature", "environment", "created_by", "change_request"]
    autocomplete_fields = ["feature"]
    actions = ["cancel_selected"]
    change_form_template = "admin/features/scheduledchange/change_form.html"

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # cancel instead: the record stays

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [
            *ScheduledChangeForm.Meta.fields,
            "status",
            "result",
            "fired_at",
            "created_by",
            "change_request",
        ]

    @admin.display(description="change", ordering="run_at")
    def what(self, obj: ScheduledChange) -> str:
        return obj.describe()

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: ScheduledChange) -> str:
        return format_html(BADGE, SCHEDULED_COLOURS.get(obj.status, "#6c757d"), obj.get_status_display())

    def save_model(self, request, obj, form, change):
        if change:
            return  # read only once made
        data = form.cleaned_data
        try:
            created = scheduled_change_create(
                feature=data["feature"],
                environment=data["environment"],
                action=data["action"],
                run_at=data["run_at"],
                rule_position=data.get("rule_position"),
                coverage=data.get("coverage"),
                comment=data.get("comment", ""),
                user=request.user,
            )
        except ApprovalRequired as held:
            request._approval_held = held
            return
        obj.pk, obj.run_at, obj.created_by = created.pk, created.run_at, created.created_by
        obj._state.adding = False

    def log_addition(self, request, obj, message):
        if getattr(request, "_approval_held", None) is None:
            super().log_addition(request, obj, message)

    def response_add(self, request, obj, post_url_continue=None):
        held = getattr(request, "_approval_held", None)
        if held is None:
            return super().response_add(request, obj, post_url_continue)
        approval_held_message(request, held)
        return HttpResponseRedirect(reverse("admin:features_feature_change", args=[obj.feature_id]))

    @admin.action(description="Cancel selected scheduled changes", permissions=["change"])
    def cancel_selected(self, request, queryset):
        for scheduled_change in queryset:
            self._cancel(request, scheduled_change)

    def _cancel(self, request: HttpRequest, scheduled_change: ScheduledChange) -> None:
        try:
            scheduled_change_cancel(scheduled_change=scheduled_change, user=request.user)
        except DomainError as exc:
            messages.error(request, f"Could not cancel “{scheduled_change.describe()}”: {exc.message}")
        else:
            messages.success(request, f"Cancelled: {scheduled_change.describe()}.")

    def get_urls(self):
        return [
            path(
                "<path:object_id>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="features_scheduledchange_cancel",
            ),
            *super().get_urls(),
        ]

    def cancel_view(self, request: HttpRequest, object_id: str):
        scheduled_change = get_object_or_404(ScheduledChange, pk=object_id)
        if request.method == "POST":
            if self.has_change_permission(request, scheduled_change):
                self._cancel(request, scheduled_change)
            else:
                messages.error(request, "You are not allowed to cancel scheduled changes.")
        back = request.POST.get("next") or reverse("admin:features_scheduledchange_change", args=[object_id])
        if not back.startswith("/"):
            back = reverse("admin:features_scheduledchange_change", args=[object_id])
        return HttpResponseRedirect(back)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:  # read only once made: cancel it instead
            context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
        if obj is not None and obj.status == ScheduledChangeStatus.PENDING:
            if self.has_change_permission(request, obj):
                context["cancel_url"] = reverse("admin:features_scheduledchange_cancel", args=[obj.pk])
        return super().render_change_form(request, context, add, change, form_url, obj)


class GovernedFeatureAdmin(ApprovalHeldSave, FeatureAdmin):
    """The flag admin, its save held for approval when it changes a protected environment, and its
    page listing the flag's open change requests and pending scheduled changes."""

    change_form_template = "admin/features/feature/governed_change_form.html"

    def held_write(self, request, obj, change, run):
        return feature_write(feature=obj if change else None, user=request.user, run=run)

    # --- deletion: a flag serving a protected environment is deleted by an approved change request ----
    def log_deletions(self, request, queryset):
        held = [obj for obj in queryset if feature_delete_environments(obj)]
        super().log_deletions(request, [obj for obj in queryset if obj not in held])

    def delete_model(self, request, obj):
        try:
            feature_delete(feature=obj, user=request.user)
        except ApprovalRequired as held:
            request._approval_held = held

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            try:
                feature_delete(feature=obj, user=request.user)
            except ApprovalRequired as held:
                approval_held_message(request, held)

    def response_delete(self, request, obj_display, obj_id):
        held = getattr(request, "_approval_held", None)
        if held is None:
            return super().response_delete(request, obj_display, obj_id)
        approval_held_message(request, held)
        return HttpResponseRedirect(reverse("admin:features_feature_change", args=[obj_id]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["open_change_requests"] = list(
                obj.change_requests.filter(status=ChangeRequestStatus.OPEN).select_related("created_by")
            )
            context["pending_scheduled_changes"] = [
                (change_, reverse("admin:features_scheduledchange_cancel", args=[change_.pk]))
                for change_ in obj.scheduled_changes.filter(
                    status=ScheduledChangeStatus.PENDING
                ).select_related("environment", "feature")
            ]
            context["can_schedule"] = request.user.has_perm("features.add_scheduledchange")
            context["can_cancel_schedules"] = request.user.has_perm("features.change_scheduledchange")
            context["schedule_url"] = reverse("admin:features_scheduledchange_add") + f"?feature={obj.pk}"
        return super().render_change_form(request, context, add, change, form_url, obj)


admin.site.unregister(Feature)
admin.site.register(Feature, GovernedFeatureAdmin)
