"""The admin's index and sidebar: product managers' apps first, in the order of their work; operators'
apps (periodic tasks, API tokens, the tag table) only for superusers."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PRODUCT_APPS = ["Experiments", "Metrics", "Feature flags", "Analytics"]
OPERATOR_APP_LABELS = ["django_celery_beat", "authtoken", "taggit"]


def _apps(client) -> list[str]:
    return [app["name"] for app in client.get(reverse("admin:index")).context["available_apps"]]


def test_admin_index__product_manager__only_the_product_apps_in_order(client, product_manager):
    client.force_login(product_manager)

    assert _apps(client) == PRODUCT_APPS
    feature_flags = client.get(reverse("admin:index")).context["available_apps"][2]
    assert [model["name"] for model in feature_flags["models"]] == [
        "Features",
        "Holdouts",
        "Change requests",
        "Scheduled changes",
        "Environments",
        "SDK keys",
    ]


def test_admin_index__staff_with_operator_permissions__operator_apps_still_hidden(client):
    # Given a staff member (not a superuser) who was granted every permission of the operators' apps
    staff = UserFactory(is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label__in=OPERATOR_APP_LABELS))
    client.force_login(staff)

    # Then neither the index nor the sidebar lists them, and their app pages are not found
    assert _apps(client) == []
    for label in OPERATOR_APP_LABELS:
        assert client.get(reverse("admin:app_list", args=[label])).status_code == 404


def test_admin_index__superuser__product_apps_first_then_the_operators(client, superuser):
    client.force_login(superuser)

    apps = _apps(client)

    assert apps[: len(PRODUCT_APPS)] == PRODUCT_APPS
    assert {"Periodic Tasks", "Auth Token", "Taggit"} <= set(apps[len(PRODUCT_APPS) :])
    assert client.get(reverse("admin:app_list", args=["django_celery_beat"])).status_code == 200
