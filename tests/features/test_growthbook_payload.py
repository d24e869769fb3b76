"""GrowthBook's SDK payload: the pure builder on plain data, and ``GET /api/features/{client_key}``."""

import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from experiments.bucketing import layer_namespace
from experiments.services import experiment_start
from features.growthbook import feature_payload, features_payload
from features.models import Environment, Feature
from features.sdk import cache as sdk_cache
from features.services import feature_create, feature_update, sdk_key_create
from tests.factories import ExperimentFactory, MetricFactory


# --- the builder, on plain snapshot data ------------------------------------------------------------------
def flag(*rules, enabled=True, default=False, prerequisites=()):
    return {
        "type": "boolean",
        "default": default,
        "enabled": enabled,
        "rules": list(rules),
        "prerequisites": [{"feature": f, "value": v} for f, v in prerequisites],
    }


def experiment(**overrides):
    return {
        "status": "running",
        "name": "Checkout",
        "seed": "seed-1",
        "variants": [
            {"key": "control", "name": "Control", "weight": 1.0, "payload": None},
            {"key": "green", "name": "", "weight": 3.0, "payload": None},
        ],
        "traffic_allocation": 0.6,
        "targeting": {"country": "US"},
        "layer": None,
        "layer_slice_start": None,
        **overrides,
    }


EXPERIMENT_RULE = {
    "type": "experiment",
    "condition": {"plan": "pro"},
    "experiment": "exp",
    "values": {"control": 1, "green": 2},
}


def test_feature_payload__disabled_environment__default_value_only():
    raw = flag({"type": "force", "condition": {}, "value": True}, enabled=False)
    assert feature_payload("f", raw, {}) == {"defaultValue": False}


def test_feature_payload__force_and_rollout__growthbook_rules():
    raw = flag(
        {"type": "force", "condition": {"country": "US"}, "value": True},
        {"type": "rollout", "condition": {}, "coverage": 0.25, "value": True},
    )
    assert feature_payload("f", raw, {}) == {
        "defaultValue": False,
        "rules": [
            {"condition": {"country": "US"}, "force": True},
            {"force": True, "coverage": 0.25, "hashAttribute": "id", "seed": "f", "hashVersion": 2},
        ],
    }


def test_feature_payload__experiment__normalised_weights_meta_and_both_conditions():
    rule = feature_payload("f", flag(EXPERIMENT_RULE), {"exp": experiment()})["rules"][0]
    assert rule == {
        "condition": {"$and": [{"plan": "pro"}, {"country": "US"}]},
        "key": "exp",
        "variations": [1, 2],
        "weights": [0.25, 0.75],
        "coverage": 0.6,
        "hashAttribute": "id",
        "hashVersion": 2,
        "seed": "seed-1",
        "meta": [{"key": "control", "name": "Control"}, {"key": "green", "name": "green"}],
        "name": "Checkout",
        "phase": "0",
    }


def test_feature_payload__layered_experiment__namespace_of_its_slice_and_full_coverage():
    exp = experiment(layer="home", layer_slice_start=0.2)
    rule = feature_payload("f", flag(EXPERIMENT_RULE), {"exp": exp})["rules"][0]
    assert rule["coverage"] == 1.0
    assert rule["namespace"] == list(layer_namespace("home", 0.2, 0.6)) == ["home", 0.2, 0.8]


@pytest.mark.parametrize("status", ["paused", "stopped", "draft"])
def test_feature_payload__experiment_not_running__rule_left_out(status):
    raw = flag(EXPERIMENT_RULE, {"type": "force", "condition": {}, "value": True})
    rules = feature_payload("f", raw, {"exp": {"status": status}})["rules"]
    assert rules == [{"force": True}]


def test_feature_payload__experiment_rule_missing_a_variant_value__rule_left_out():
    rule = {**EXPERIMENT_RULE, "values": {"control": 1}}
    assert feature_payload("f", flag(rule), {"exp": experiment()}) == {"defaultValue": False}


def test_feature_payload__prerequisites__parent_conditions_on_every_rule_without_gate():
    raw = flag({"type": "force", "condition": {}, "value": True}, prerequisites=[("gate", "on")])
    rules = feature_payload("f", raw, {})["rules"]
    # A gate would answer null when the parent fails; we answer the default: a skipped rule does that.
    assert rules == [{"force": True, "parentConditions": [{"id": "gate", "condition": {"value": "on"}}]}]


def test_features_payload__broken_flag__default_only():
    snapshot = {"features": {"f": flag({"type": "force", "condition": {}, "value": True})}, "experiments": {}}
    assert features_payload(snapshot, broken={"f"}) == {"f": {"defaultValue": False}}


# --- the endpoint ------------------------------------------------------------------------------------------


@pytest.fixture
def client_key(db, fresh_decision_plane):
    feature_create(
        user=None,
        key="new_checkout",
        name="New checkout",
        type="boolean",
        default_value=False,
        environments={
            "production": {
                "enabled": True,
                "rules": [{"type": "force", "condition": {"plan": "pro"}, "value": True}],
            }
        },
    )
    _, raw = sdk_key_create(environment=Environment.objects.get(key="production"), kind="client")
    return raw


@pytest.mark.django_db
def test_payload__client_key__features_cors_cache_control_and_etag(client_key):
    response = Client().get(f"/api/features/{client_key}", HTTP_ORIGIN="https://shop.example")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == 200
    assert body["features"]["new_checkout"] == {
        "defaultValue": False,
        "rules": [{"condition": {"plan": "pro"}, "force": True}],
    }
    assert body["dateUpdated"].endswith("Z")
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Cache-Control"].startswith("public, max-age=")
    assert response["ETag"].startswith('"')


@pytest.mark.django_db
def test_payload__if_none_match_current_etag__304_without_body(client_key):
    first = Client().get(f"/api/features/{client_key}")
    again = Client().get(f"/api/features/{client_key}", HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and again.content == b""
    assert again["ETag"] == first["ETag"]


@pytest.mark.django_db
def test_payload__warm__reads_no_table(client_key):
    Client().get(f"/api/features/{client_key}")
    with CaptureQueriesContext(connection) as queries:
        response = Client().get(f"/api/features/{client_key}")
    assert response.status_code == 200
    assert len(queries) == 0, [q["sql"] for q in queries]


@pytest.mark.django_db
def test_payload__a_change__new_body_etag_and_date_updated(client_key):
    before = Client().get(f"/api/features/{client_key}")
    feature = Feature.objects.get(key="new_checkout")
    feature_update(
        feature=feature,
        user=None,
        environments={
            "production": {"enabled": True, "rules": [{"type": "force", "condition": {}, "value": True}]}
        },
    )
    after = Client().get(f"/api/features/{client_key}", HTTP_IF_NONE_MATCH=before["ETag"])
    assert after.status_code == 200
    assert after["ETag"] != before["ETag"]
    assert after.json()["dateUpdated"] > before.json()["dateUpdated"]
    assert after.json()["features"]["new_checkout"]["rules"] == [{"force": True}]


@pytest.mark.django_db
def test_payload__unchanged_configuration_rebuilt__same_etag_and_date(client_key):
    first = Client().get(f"/api/features/{client_key}")
    sdk_cache.memo_clear()  # another process, or a snapshot rebuilt after its max age
    second = Client().get(f"/api/features/{client_key}")
    assert second["ETag"] == first["ETag"]
    assert json.loads(second.content)["dateUpdated"] == json.loads(first.content)["dateUpdated"]


def _force_everywhere(environment: str, value: bool) -> None:
    feature_update(
        feature=Feature.objects.get(key="new_checkout"),
        user=None,
        environments={
            environment: {"enabled": True, "rules": [{"type": "force", "condition": {}, "value": value}]}
        },
    )


@pytest.mark.django_db
def test_payload__unrelated_changes__same_date_updated_and_etag(client_key):
    # Given the payload as an SDK last read it
    first = Client().get(f"/api/features/{client_key}")
    generation = sdk_cache.current_generation()
    # When things change that production's payload does not show: another environment's rules, a
    # metric, another SDK key (each renews the configuration generation or not, it must not matter)
    _force_everywhere("staging", True)
    MetricFactory()
    sdk_key_create(environment=Environment.objects.get(key="staging"))
    assert sdk_cache.current_generation() != generation  # the caches were invalidated
    second = Client().get(f"/api/features/{client_key}", HTTP_IF_NONE_MATCH=first["ETag"])
    # Then the SDK's copy is still current: 304, same ETag; and the body has the same date
    assert second.status_code == 304 and second["ETag"] == first["ETag"]
    third = Client().get(f"/api/features/{client_key}")
    assert third.json()["dateUpdated"] == first.json()["dateUpdated"]
    assert third.content == first.content


@pytest.mark.django_db
def test_payload__change_then_change_back__date_moves_each_time(client_key):
    first = Client().get(f"/api/features/{client_key}").json()["dateUpdated"]
    _force_everywhere("production", True)
    second = Client().get(f"/api/features/{client_key}").json()
    _force_everywhere("production", False)
    third = Client().get(f"/api/features/{client_key}").json()
    _force_everywhere("production", True)  # back to the second payload
    fourth = Client().get(f"/api/features/{client_key}").json()
    assert second["features"] == fourth["features"] != third["features"]
    # The JavaScript SDK ignores a payload whose date it has seen: the one that came back is newer.
    assert first < second["dateUpdated"] < third["dateUpdated"] < fourth["dateUpdated"]


@pytest.mark.django_db
def test_payload__encrypted__unrelated_change_same_etag_a_change_new_one(client_key):
    production = Environment.objects.get(key="production")
    _, raw = sdk_key_create(environment=production, kind="client", encrypt=True)
    first = Client().get(f"/api/features/{raw}")
    _force_everywhere("staging", True)
    unrelated = Client().get(f"/api/features/{raw}", HTTP_IF_NONE_MATCH=first["ETag"])
    assert unrelated.status_code == 304 and unrelated["ETag"] == first["ETag"]
    _force_everywhere("production", True)
    changed = Client().get(f"/api/features/{raw}", HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200 and changed["ETag"] != first["ETag"]
    assert changed.json()["dateUpdated"] > first.json()["dateUpdated"]
    assert changed.json()["encryptedFeatures"] != first.json()["encryptedFeatures"]


@pytest.mark.django_db
def test_payload__running_experiment__rule_with_variant_keys_in_meta(client_key):
    started = experiment_start(experiment=ExperimentFactory(key="exp_checkout"), user=None)
    feature_create(
        user=None,
        key="button",
        name="Button",
        type="string",
        default_value="blue",
        environments={
            "production": {
                "enabled": True,
                "rules": [
                    {
                        "type": "experiment",
                        "experiment": started.key,
                        "values": {"control": "blue", "treatment": "green"},
                    }
                ],
            }
        },
    )
    rule = Client().get(f"/api/features/{client_key}").json()["features"]["button"]["rules"][0]
    assert rule["key"] == "exp_checkout"
    assert rule["variations"] == ["blue", "green"]
    assert [m["key"] for m in rule["meta"]] == ["control", "treatment"]


@pytest.mark.django_db
def test_payload__unknown_key__401_json_reason(client_key):
    response = Client().get("/api/features/pk_nobody")
    assert response.status_code == 401
    assert "client key" in response.json()["error"]
    assert response["Access-Control-Allow-Origin"] == "*"


@pytest.mark.django_db
def test_payload__post__405(client_key):
    assert Client().post(f"/api/features/{client_key}").status_code == 405


def test_payload_date__a_process_serving_older_content__never_moves_the_newer_contents_date():
    # Given payload H1 dated from a configuration read at t=100, then H2 read at t=200 (a change)
    from django.core.cache import cache

    from features.sdk.payload import payload_date

    cache.delete("flags:payload-date:991")
    d1 = payload_date(991, "H1", 100.0)
    d2 = payload_date(991, "H2", 200.0)
    assert d2 > d1
    # When a process whose generation is up to a second stale still serves its configuration of t=100
    stale = payload_date(991, "H1", 100.0)
    # Then it gets H1's own date, and H2 keeps its date everywhere (one date, so one ETag, per content)
    assert stale == d1
    assert payload_date(991, "H2", 200.0) == d2
    # And content that comes back by a later change (read at t=300) is dated after H2
    assert payload_date(991, "H1", 300.0) > d2
    # A stale process whose older content was never dated here gets a date before the last one
    assert payload_date(991, "H0", 50.0) < payload_date(991, "H1", 300.0)
