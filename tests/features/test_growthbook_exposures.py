"""Exposures from GrowthBook's SDKs, end to end: the tracking callback of ``docs/sdks.md`` posts each
exposure to ``/api/v1/exposures``, the platform ingests it, and the experiment's results count
exactly the units the SDK put in each variant."""

import datetime as dt
import io
import json
import random
import subprocess
import urllib.request
from collections import Counter

import pytest
from django.core.management import call_command
from django.urls import reverse
from growthbook import GrowthBook
from rest_framework.test import APIClient

from experiments.services import experiment_start
from features.models import Environment
from features.services import feature_create, sdk_key_create
from metrics.models import MetricType
from tests.factories import ExperimentFactory, ExperimentMetricFactory, MetricFactory
from tests.features.test_growthbook_sdk import close_python_sdk_pool


def tracking_callback(api_host: str, secret_key: str):
    """The callback of docs/sdks.md ("Exposures from GrowthBook's SDKs"), as a user would paste it."""

    def on_experiment_viewed(experiment, result, user_context=None):
        body = {
            "exposures": [
                {
                    "experiment": experiment.key,
                    "variant": result.key,  # the variant key, from the rule's meta
                    "unit_id": result.hashValue,  # the attribute `id`
                    "timestamp": dt.datetime.now(dt.UTC).isoformat(),
                }
            ]
        }
        request = urllib.request.Request(
            f"{api_host}/api/v1/exposures",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {secret_key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202

    return on_experiment_viewed


@pytest.fixture
def checkout_experiment(fresh_decision_plane, clickhouse) -> tuple[str, str]:
    """A running experiment behind the flag ``button_color``, with a metric; (client key, secret key)."""
    experiment = ExperimentFactory(key="checkout_button", variants=["control", "treatment"])
    ExperimentMetricFactory(experiment=experiment, metric=MetricFactory(key="orders", type=MetricType.COUNT))
    experiment_start(experiment=experiment, user=None)
    feature_create(
        user=None,
        key="button_color",
        name="Button colour",
        type="string",
        default_value="blue",
        environments={
            "production": {
                "enabled": True,
                "rules": [
                    {
                        "type": "experiment",
                        "experiment": "checkout_button",
                        "values": {"control": "blue", "treatment": "green"},
                    }
                ],
            }
        },
    )
    production = Environment.objects.get(key="production")
    _, client_key = sdk_key_create(environment=production, kind="client")
    _, secret_key = sdk_key_create(environment=production)
    return client_key, secret_key


def assert_results_count(pm_client, secret_key: str, seen: Counter, units: list[str]) -> None:
    """The experiment's results count exactly the SDK's units per variant, which are also the
    variants our server assigns them."""
    call_command("rollup", stdout=io.StringIO())
    body = pm_client.get(reverse("experiment-results", kwargs={"key": "checkout_button"})).json()
    assert body["srm"]["units"] == dict(seen)
    assert seen["control"] > 50 and seen["treatment"] > 50
    server = APIClient()
    server.credentials(HTTP_AUTHORIZATION=f"Bearer {secret_key}")
    assigned = Counter(
        server.post("/api/v1/assign", {"unit_id": unit, "log_exposure": False}, format="json").json()[
            "assignments"
        ][0]["variant"]
        for unit in units
    )
    assert assigned == seen


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_python_sdk_tracking_callback__posts_exposures__results_count_the_sdks_units(
    live_server, checkout_experiment, pm_client
):
    # Given GrowthBook's Python SDK whose tracking callback sends exposures with a secret key
    client_key, secret_key = checkout_experiment
    gb = GrowthBook(
        api_host=live_server.url,
        client_key=client_key,
        on_experiment_viewed=tracking_callback(live_server.url, secret_key),
    )
    gb.load_features()
    # When 200 units see the flag (twice each: the SDK tracks a unit's exposure once)
    rng = random.Random(5)
    units = [f"unit-{index}" for index in range(200)]
    seen = Counter()
    for unit in units:
        gb.set_attributes({"id": unit, "country": rng.choice(["US", "DE"])})
        for _ in range(2):
            value = gb.get_feature_value("button_color", "blue")
        seen["treatment" if value == "green" else "control"] += 1
    gb.destroy()
    close_python_sdk_pool()
    # Then the results count them
    assert_results_count(pm_client, secret_key, seen, units)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_javascript_sdk_tracking_callback__posts_exposures__results_count_the_sdks_units(
    live_server, checkout_experiment, pm_client, growthbook_node, tmp_path
):
    # Given GrowthBook's JavaScript SDK under node with the trackingCallback of docs/sdks.md
    client_key, secret_key = checkout_experiment
    units = [f"js-unit-{index}" for index in range(200)]
    request = {
        "apiHost": live_server.url,
        "clientKey": client_key,
        "secretKey": secret_key,
        "flag": "button_color",
        "units": units,
    }
    request_file = tmp_path / "track.json"
    request_file.write_text(json.dumps(request), encoding="utf-8")
    # When 200 units see the flag (twice each)
    done = subprocess.run(
        ["node", str(growthbook_node / "track.mjs"), str(request_file)],
        cwd=growthbook_node,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout)
    # Then one exposure a unit was accepted, and the results count the SDK's units
    assert answer["posted"] == len(units) and set(answer["statuses"]) == {202}
    seen = Counter("treatment" if value == "green" else "control" for value in answer["values"])
    assert_results_count(pm_client, secret_key, seen, units)
