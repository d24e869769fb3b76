"""A results refresh tells webhooks what became true: here a sample ratio mismatch, once."""

import json

import pytest
from django.core.cache import cache

from analytics.results.services import experiment_results_refresh
from features.webhooks.models import EventType, WebhookDelivery
from features.webhooks.services import webhook_create
from tests.analytics.test_results import running_experiment, traffic

pytestmark = pytest.mark.django_db


def test_refresh__split_breaks__one_sample_ratio_mismatch_event__not_repeated(clickhouse, receiver):
    cache.clear()
    webhook_create(user=None, name="alerts", url=receiver.url, event_types=[EventType.SAMPLE_RATIO_MISMATCH])
    experiment = running_experiment()
    traffic(300, 200)

    experiment_results_refresh(experiment_id=experiment.pk, refreshed_by="test")
    experiment_results_refresh(experiment_id=experiment.pk, refreshed_by="test")  # still broken: no news

    [delivery] = WebhookDelivery.objects.all()
    body = json.loads(delivery.body)
    assert body["type"] == "results.sample_ratio_mismatch"
    assert body["data"]["experiment"]["key"] == "checkout"
    assert body["data"]["units"] == {"control": 300, "treatment": 200}
    assert body["data"]["p_value"] < 0.001
