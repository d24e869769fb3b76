"""SDK keys record when they were last used, to the minute, without a database write per request;
the admin's key list says whether each key is active or revoked and when it was last used."""

import datetime as dt

import pytest
from django.core.cache import cache
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from features import services
from features.models import Environment, SdkKey, hash_sdk_key
from features.services import feature_create, sdk_key_create, sdk_key_mark_used

pytestmark = pytest.mark.django_db

EVALUATE_URL = "/api/v1/evaluate"
# Every kind of SDK request records the use: DRF's views and OFREP's lean one resolve keys alike.
SDK_REQUESTS = [
    (EVALUATE_URL, {"unit_id": "user-1"}),
    ("/api/v1/assign", {"unit_id": "user-1", "log_exposure": False}),
    ("/ofrep/v1/evaluate/flags", {"context": {"targetingKey": "user-1"}}),
    ("/ofrep/v1/evaluate/flags/gate", {"context": {"targetingKey": "user-1"}}),
]


@pytest.fixture(autouse=True)
def _fresh_decision_plane(fresh_decision_plane):
    """Every test starts from an empty decision plane (tests/conftest.py)."""


@pytest.fixture
def key_and_client() -> tuple[SdkKey, APIClient]:
    production = Environment.objects.get(key="production")
    feature_create(user=None, key="gate", name="Gate", environments={"production": {"enabled": True}})
    key, raw = sdk_key_create(environment=production, name="web app")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return key, client


def _key_updates(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "features_sdkkey"')]


def _tag(key: SdkKey) -> str:
    return key.hashed_key[:16]  # what SdkClient.key_tag holds


@pytest.mark.parametrize(("path", "body"), SDK_REQUESTS, ids=[path for path, _ in SDK_REQUESTS])
def test_sdk_request__key_never_used__last_used_at_recorded(key_and_client, path, body):
    key, client = key_and_client
    assert key.last_used_at is None
    before = timezone.now()

    response = client.post(path, body, format="json")

    assert response.status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is not None and key.last_used_at >= before


def test_sdk_requests__many_within_a_minute__one_database_write(key_and_client):
    key, client = key_and_client

    with CaptureQueriesContext(connection) as queries:
        for _ in range(10):
            for path, body in SDK_REQUESTS:
                assert client.post(path, body, format="json").status_code == 200

    assert len(_key_updates(queries)) == 1


def test_sdk_key_mark_used__another_process_recorded_it_this_minute__no_write(key_and_client):
    key, _ = key_and_client
    sdk_key_mark_used(sdk_key_id=key.pk, key_tag=_tag(key))
    services._usage_recorded.clear()  # a second process: it has not seen the key, the cache has

    with CaptureQueriesContext(connection) as queries:
        sdk_key_mark_used(sdk_key_id=key.pk, key_tag=_tag(key))

    assert queries.captured_queries == []


def test_sdk_key_mark_used__a_minute_later__written_again(key_and_client, monkeypatch):
    key, _ = key_and_client
    sdk_key_mark_used(sdk_key_id=key.pk, key_tag=_tag(key))
    SdkKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now() - dt.timedelta(minutes=5))
    # A minute on: the process memo's clock has moved and the cache's claim has expired
    later = services.time.monotonic() + services.LAST_USED_RESOLUTION_SECONDS + 1
    monkeypatch.setattr(services.time, "monotonic", lambda: later)
    cache.delete(f"sdk-key:used:{_tag(key)}")

    sdk_key_mark_used(sdk_key_id=key.pk, key_tag=_tag(key))

    key.refresh_from_db()
    assert timezone.now() - key.last_used_at < dt.timedelta(minutes=1)


def test_sdk_request__usage_write_fails__request_still_answered(key_and_client):
    _, client = key_and_client

    def refuse_key_updates(execute, sql, params, many, context):
        if sql.startswith('UPDATE "features_sdkkey"'):
            raise OperationalError("database is locked")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse_key_updates):
        response = client.post(EVALUATE_URL, {"unit_id": "user-1"}, format="json")

    assert response.status_code == 200


def test_admin_sdk_key_list__status_and_last_used__read_right(client, product_manager):
    production = Environment.objects.get(key="production")
    active, _ = sdk_key_create(environment=production, name="web app")
    revoked, _ = sdk_key_create(environment=production, name="old app")
    SdkKey.objects.filter(pk=revoked.pk).update(revoked=True)
    SdkKey.objects.filter(pk=active.pk).update(last_used_at=timezone.now() - dt.timedelta(hours=3))
    client.force_login(product_manager)

    page = client.get(reverse("admin:features_sdkkey_changelist"))

    assert page.status_code == 200
    rows = {
        row.split("</th>")[0]: row for row in page.content.decode().split('<th class="field-prefix">')[1:]
    }
    active_row = next(row for row in rows.values() if "web app" in row)
    revoked_row = next(row for row in rows.values() if "old app" in row)
    assert ">Active<" in active_row and "3\xa0hours ago" in active_row
    assert ">Revoked<" in revoked_row and "never" in revoked_row
    assert "icon-no.svg" not in page.content.decode()  # no red cross for an active key


def test_sdk_key_hash_prefix__is_the_clients_key_tag():
    """The tag these tests use is the one SdkKeyAuthentication passes (features.sdk.keys)."""
    from features.sdk.keys import sdk_client_for_key

    production = Environment.objects.get(key="production")
    key, raw = sdk_key_create(environment=production)
    assert sdk_client_for_key(raw).key_tag == hash_sdk_key(raw)[:16] == _tag(key)
