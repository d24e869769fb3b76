"""The admin site: product managers' apps first; operators' apps only for superusers. And the
``ServiceDeletion`` mixin, through which model admins delete by their service's rule, and the
``ApprovalHeldSave`` mixin, through which a save may be held for approval.

Product managers work with experiments, metrics, feature flags (with environments and SDK keys) and
results; the periodic tasks' schedules, API tokens and the tag table are operators' tools, useless
and confusing to them. Those apps are left out of the index and the sidebar of anyone who is not a
superuser, whatever permissions they hold (the ``Product managers`` group grants none there anyway);
a superuser sees them after the product managers' apps.
"""

from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.utils import unquote
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from config.exceptions import ApprovalRequired, DomainError

# The product managers' apps, in the order of their work: define, measure, ship, read.
PRODUCT_APPS = ("experiments", "metrics", "features", "analytics")
# Within an app, the model a product manager opens most comes first.
PRODUCT_MODELS = {
    "features": ("Feature", "Holdout", "ChangeRequest", "ScheduledChange", "Environment", "SdkKey")
}
# Operators' tools: schedules of the periodic tasks, API tokens, the raw tag table.
OPERATOR_APPS = frozenset({"django_celery_beat", "authtoken", "taggit"})


class PlatformAdminSite(admin.AdminSite):
    site_header = "Experimentation Platform"
    site_title = "Experimentation Platform"
    index_title = "Experiments, metrics and feature flags"

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        apps = super().get_app_list(request, app_label)
        if not request.user.is_superuser:
            apps = [app for app in apps if app["app_label"] not in OPERATOR_APPS]
        order = {label: index for index, label in enumerate(PRODUCT_APPS)}
        apps = sorted(apps, key=lambda app: (order.get(app["app_label"], len(order)), app["name"].lower()))
        for app in apps:  # a stable sort: the models not named keep Django's alphabetical order
            preferred = PRODUCT_MODELS.get(app["app_label"], ())
            app["models"].sort(
                key=lambda model, preferred=preferred: _position(preferred, model["object_name"])
            )
        return apps


def _position(preferred: tuple[str, ...], name: str) -> int:
    return preferred.index(name) if name in preferred else len(preferred)


class ServiceDeletion:
    """A ``ModelAdmin`` mixin: deleting goes through the app's service, so the admin refuses what the
    API refuses, with the same words.

    Subclasses name the rule, ``delete_validate(obj)`` (raises the service's ``DomainError`` for an
    object that may not be deleted), and the deletion, ``delete_service(obj)`` (which checks again, on
    the row as it is then). The change form then shows no Delete link for such an object, its delete
    view answers with the reason instead of a confirmation page, and "Delete selected" deletes nothing
    when any selected object may not be deleted, naming each and why.
    """

    def delete_validate(self, obj: Any) -> None:
        raise NotImplementedError

    def delete_service(self, obj: Any) -> None:
        raise NotImplementedError

    def delete_refusals(self, objects: Iterable[Any]) -> list[str]:
        refusals = []
        for obj in objects:
            try:
                self.delete_validate(obj)
            except DomainError as exc:
                refusals.append(f"“{obj}”: {exc.message}")
        return refusals

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if "delete_selected" in actions:  # Django's own deletes without asking the service
            _, name, description = actions["delete_selected"]
            actions["delete_selected"] = (ServiceDeletion._delete_selected, name, description)
        return actions

    def _delete_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Django's confirmation and deletion (through ``delete_queryset``), unless any may not go."""
        refusals = self.delete_refusals(queryset)
        if not refusals:
            try:
                with transaction.atomic():  # the deletion log entries go with the deletions
                    return delete_selected(self, request, queryset)
            except DomainError as exc:  # one changed between the check and its deletion
                refusals = [exc.message]
        messages.error(request, "Nothing was deleted:")
        for refusal in refusals:
            messages.error(request, refusal)
        return None

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None):
        obj = self.get_object(request, unquote(object_id))
        if obj is None or not self.has_delete_permission(request, obj):
            return super().delete_view(request, object_id, extra_context)  # Django's answers
        try:
            self.delete_validate(obj)  # before the confirmation page, not only after it
            return super().delete_view(request, object_id, extra_context)
        except DomainError as exc:
            messages.error(request, f"Could not delete “{obj}”: {exc.message}")
            opts = self.model._meta
            change_url = reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]
            )
            return HttpResponseRedirect(change_url)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete_service(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        with transaction.atomic():
            for obj in queryset:
                self.delete_service(obj)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["show_delete"] = not self.delete_refusals([obj])  # no button that can only be refused
        return super().render_change_form(request, context, add, change, form_url, obj)


def approval_held_message(request: HttpRequest, held: ApprovalRequired) -> None:
    """Tell the user their change waits for approval, with a link to the change request."""
    if held.admin_url:
        messages.warning(
            request, format_html('{} <a href="{}">Open the change request</a>', held.message, held.admin_url)
        )
    else:
        messages.warning(request, held.message)


class ApprovalHeldSave:
    """A ``ModelAdmin`` mixin: the form's save (the object and its inlines) is one write that may be
    held for approval instead of applied.

    Django saves the object (``save_model``) and then its inlines (``save_related``); this mixin defers
    the first into the second, so that both run inside ``held_write(request, obj, change, run)``. The
    subclass's ``held_write`` calls the app's approvals (``run`` does the save and returns the object):
    when it raises ``ApprovalRequired``, nothing was saved, no "changed" entry is logged, and the page
    says that the change waits for approval, with a link to the change request.
    """

    def held_write(self, request: HttpRequest, obj: Any, change: bool, run: Any) -> Any:
        raise NotImplementedError

    def save_model(self, request, obj, form, change):
        request._held_save_model = lambda: super(ApprovalHeldSave, self).save_model(
            request, obj, form, change
        )

    def save_related(self, request, form, formsets, change):
        save_model = request.__dict__.pop("_held_save_model")

        def run() -> Any:
            save_model()
            super(ApprovalHeldSave, self).save_related(request, form, formsets, change)
            return form.instance

        try:
            self.held_write(request, form.instance, change, run)
        except ApprovalRequired as held:
            request._approval_held = held

    def log_change(self, request, obj, message):
        if getattr(request, "_approval_held", None) is None:
            return super().log_change(request, obj, message)
        return None

    def log_addition(self, request, obj, message):
        if getattr(request, "_approval_held", None) is None:
            return super().log_addition(request, obj, message)
        return None

    def response_change(self, request, obj):
        held = getattr(request, "_approval_held", None)
        if held is None:
            return super().response_change(request, obj)
        approval_held_message(request, held)
        opts = self.model._meta
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        )

    def response_add(self, request, obj, post_url_continue=None):
        held = getattr(request, "_approval_held", None)
        if held is None:
            return super().response_add(request, obj, post_url_continue)
        approval_held_message(request, held)
        opts = self.model._meta
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist")
        )
