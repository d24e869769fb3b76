"""Deleting an environment in the admin follows the service's rule, as the API does: not while it has
active SDK keys (they would be deleted with it and their clients would lose their flags)."""

import pytest
from django.contrib.admin import helpers
from django.contrib.messages import get_messages
from django.urls import reverse

from features.models import Environment, SdkKey
from features.services import sdk_key_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def _messages(response) -> str:
    return " ".join(str(message) for message in get_messages(response.wsgi_request))


def test_admin_environment_delete_view__active_sdk_key__refused_and_key_kept(admin_client):
    staging = Environment.objects.get(key="staging")
    key, _ = sdk_key_create(environment=staging)

    response = admin_client.post(
        reverse("admin:features_environment_delete", args=[staging.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    assert "still has SDK keys" in _messages(response)
    assert Environment.objects.filter(pk=staging.pk).exists() and SdkKey.objects.filter(pk=key.pk).exists()


def test_admin_environment_bulk_delete__one_with_an_active_key__nothing_deleted(admin_client):
    qa = Environment.objects.create(key="qa", name="QA")
    staging = Environment.objects.get(key="staging")
    sdk_key_create(environment=staging)

    response = admin_client.post(
        reverse("admin:features_environment_changelist"),
        {"action": "delete_selected", helpers.ACTION_CHECKBOX_NAME: [qa.pk, staging.pk], "post": "yes"},
    )

    assert response.status_code == 302
    assert "Nothing was deleted" in _messages(response)
    assert Environment.objects.filter(pk__in=[qa.pk, staging.pk]).count() == 2


def test_admin_environment_delete_view__only_revoked_keys__deleted(admin_client):
    qa = Environment.objects.create(key="qa", name="QA")
    key, _ = sdk_key_create(environment=qa)
    SdkKey.objects.filter(pk=key.pk).update(revoked=True)

    response = admin_client.post(reverse("admin:features_environment_delete", args=[qa.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not Environment.objects.filter(pk=qa.pk).exists()
