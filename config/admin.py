"""The admin site: product managers' apps first; operators' apps only for superusers.

Product managers work with experiments, metrics, feature flags (with environments and SDK keys) and
results; the periodic tasks' schedules, API tokens and the tag table are operators' tools, useless
and confusing to them. Those apps are left out of the index and the sidebar of anyone who is not a
superuser, whatever permissions they hold (the ``Product managers`` group grants none there anyway);
a superuser sees them after the product managers' apps.
"""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

# The product managers' apps, in the order of their work: define, measure, ship, read.
PRODUCT_APPS = ("experiments", "metrics", "features", "analytics")
# Within an app, the model a product manager opens most comes first.
PRODUCT_MODELS = {"features": ("Feature", "Environment", "SdkKey")}
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
