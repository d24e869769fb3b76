"""features.config: snapshots built from the database, cached, memoised and invalidated by every write."""

import socket

import pytest
from django.core.cache import cache
from django.urls import reverse

from experiments.services import experiment_pause, experiment_start
from features import config
from features.evaluation import Reason, evaluate_all, evaluate_feature
from features.models import Environment, Feature, FeatureRule
from features.sdk import cache as sdk_cache
from features.sdk import keys
from features.services import feature_create, feature_update, sdk_key_create
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_flag_config(monkeypatch):
    """Every test starts from an empty memo and a new cache generation, with the cache reachable."""
    monkeypatch.setattr(sdk_cache, "_cache_down_until", 0.0)
    sdk_cache.memo_clear()
    sdk_cache.config_invalidate()
    yield
    monkeypatch.setattr(sdk_cache, "_cache_down_until", 0.0)
    sdk_cache.memo_clear()
    sdk_cache.config_invalidate()


@pytest.fixture
def production() -> Environment:
    return Environment.objects.get(key="production")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dead_redis_caches() -> dict:
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }


def test_snapshot_build__database__every_feature_rule_prerequisite_and_live_experiment(production):
    # Given a running and a draft experiment, and flags using rules and prerequisites.
    running = ExperimentFactory(
        key="exp_run", hash_seed="seed-1", targeting={"plan": "pro"}, traffic_allocation=0.5
    )
    experiment_start(experiment=running, user=None)
    ExperimentFactory(key="exp_draft")
    feature_create(
        user=None,
        key="gate",
        name="Gate",
        type="boolean",
        default_value=False,
        environments={"production": {"enabled": True, "rules": [{"type": "force", "value": True}]}},
    )
    feature_create(
        user=None,
        key="color",
        name="Color",
        type="string",
        default_value="grey",
        environments={
            "production": {
                "enabled": True,
                "rules": [
                    {"type": "force", "condition": {"plan": "internal"}, "value": "red"},
                    {"type": "rollout", "value": "blue", "coverage": 0.25},
                    {
                        "type": "experiment",
                        "experiment": "exp_run",
                        "values": {"control": "grey", "treatment": "green"},
                    },
                ],
            },
            "staging": {"enabled": False, "rules": [{"type": "force", "value": "never"}]},
        },
        prerequisites=[{"feature": "gate", "value": True}],
    )
    # When the production snapshot is built.
    snapshot = config.snapshot_build(production.pk)
    # Then it holds production's rules in order, the prerequisites, and experiments by liveness.
    assert snapshot["environment"] == {"id": production.pk, "key": "production"}
    color = snapshot["features"]["color"]
    assert (color["type"], color["default"], color["enabled"]) == ("string", "grey", True)
    assert [(r["type"], r["value"], r["coverage"], r["experiment"]) for r in color["rules"]] == [
        ("force", "red", None, None),
        ("rollout", "blue", 0.25, None),
        ("experiment", None, None, "exp_run"),
    ]
    assert color["prerequisites"] == [{"feature": "gate", "value": True}]
    assert snapshot["experiments"]["exp_draft"] == {"status": "draft"}
    live = snapshot["experiments"]["exp_run"]
    assert (live["status"], live["seed"], live["traffic_allocation"], live["targeting"]) == (
        "running",
        "seed-1",
        0.5,
        {"plan": "pro"},
    )
    assert [v["key"] for v in live["variants"]] == ["control", "treatment"]
    assert len(snapshot["version"]) == 20


def test_config_get__warm__no_database_query(production, django_assert_num_queries):
    feature_create(
        user=None,
        key="f",
        name="F",
        environments={
            "production": {"enabled": True, "rules": [{"type": "rollout", "value": True, "coverage": 0.5}]}
        },
    )
    config.config_get(production.pk)
    with django_assert_num_queries(0):
        compiled = config.config_get(production.pk)
        evaluations = evaluate_all(compiled, "user-1", {"country": "US"})
    assert [e.key for e in evaluations] == ["f"]


def test_config_get__second_process__reads_the_shared_cache_not_the_database(
    production, django_assert_num_queries
):
    feature_create(user=None, key="f", name="F")
    first = config.config_get(production.pk)
    sdk_cache.memo_clear()  # a second process: same cache, empty memo
    with django_assert_num_queries(0):
        second = config.config_get(production.pk)
    assert second.version == first.version


def test_config_get__write_through_a_service__seen_by_the_next_evaluation(production):
    feature = feature_create(user=None, key="f", name="F", environments={"production": {"enabled": False}})
    assert evaluate_feature(config.config_get(production.pk), "f", "u", {}).reason == Reason.DISABLED
    feature_update(feature=feature, user=None, environments={"production": {"enabled": True}})
    assert evaluate_feature(config.config_get(production.pk), "f", "u", {}).reason == Reason.STATIC


def test_config_get__experiment_paused__experiment_rule_falls_through(production):
    experiment = ExperimentFactory(key="exp")
    experiment_start(experiment=experiment, user=None)
    feature_create(
        user=None,
        key="f",
        name="F",
        environments={
            "production": {
                "enabled": True,
                "rules": [
                    {
                        "type": "experiment",
                        "experiment": "exp",
                        "values": {"control": True, "treatment": True},
                    }
                ],
            }
        },
    )
    assert evaluate_feature(config.config_get(production.pk), "f", "u", {}).reason == Reason.SPLIT
    experiment_pause(experiment=experiment, user=None)
    assert evaluate_feature(config.config_get(production.pk), "f", "u", {}).reason == Reason.DEFAULT


def test_admin_change_form__edit__seen_by_the_next_evaluation(
    client, superuser, production, django_capture_on_commit_callbacks
):
    # Given a flag forced to false in production, evaluated once (so the configuration is warm).
    feature = feature_create(
        user=None,
        key="dark_mode",
        name="Dark mode",
        environments={"production": {"enabled": True, "rules": [{"type": "force", "value": False}]}},
    )
    assert evaluate_feature(config.config_get(production.pk), "dark_mode", "u", {}).value is False
    # When a product manager changes the rule's value to true in the admin.
    environment_rows = list(feature.environment_settings.all())
    rule = feature.rules.get()
    data = {
        "name": "Dark mode",
        "key": "dark_mode",
        "type": "boolean",
        "default_value": "false",
        "environment_settings-TOTAL_FORMS": str(len(environment_rows)),
        "environment_settings-INITIAL_FORMS": str(len(environment_rows)),
        "environment_settings-MIN_NUM_FORMS": "0",
        "environment_settings-MAX_NUM_FORMS": "1000",
        "rules-TOTAL_FORMS": "1",
        "rules-INITIAL_FORMS": "1",
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
        "rules-0-id": str(rule.pk),
        "rules-0-feature": str(feature.pk),
        "rules-0-environment": str(production.pk),
        "rules-0-position": "0",
        "rules-0-type": "force",
        "rules-0-condition": "{}",
        "rules-0-value": "true",
        "prerequisites-TOTAL_FORMS": "0",
        "prerequisites-INITIAL_FORMS": "0",
        "prerequisites-MIN_NUM_FORMS": "0",
        "prerequisites-MAX_NUM_FORMS": "1000",
    }
    for index, row in enumerate(environment_rows):
        data[f"environment_settings-{index}-id"] = str(row.pk)
        data[f"environment_settings-{index}-feature"] = str(feature.pk)
        data[f"environment_settings-{index}-environment"] = str(row.environment_id)
        if row.enabled:
            data[f"environment_settings-{index}-enabled"] = "on"
    client.force_login(superuser)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:features_feature_change", args=[feature.pk]), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    # Then the next evaluation serves the new value.
    result = evaluate_feature(config.config_get(production.pk), "dark_mode", "u", {})
    assert (result.value, result.reason) == (True, Reason.TARGETING_MATCH)


def test_config_get__unrelated_change__new_generation_same_version(production):
    feature_create(user=None, key="f", name="F")
    before = config.config_get(production.pk)
    sdk_key_create(environment=production)  # bumps the generation, not the flags
    after = config.config_get(production.pk)
    assert after.generation != before.generation
    assert after.version == before.version
    assert after.features is before.features  # compiled once, reused


def test_config_get__write_bypassing_signals__seen_after_max_age(production, settings):
    feature = feature_create(
        user=None,
        key="f",
        name="F",
        environments={"production": {"enabled": True, "rules": [{"type": "force", "value": False}]}},
    )
    assert evaluate_feature(config.config_get(production.pk), "f", "u", {}).value is False
    FeatureRule.objects.filter(feature=feature).update(value=True)  # no signal
    assert evaluate_feature(config.config_get(production.pk), "f", "u", {}).value is False
    settings.FLAGS_CONFIG_MAX_AGE = 0.0
    assert evaluate_feature(config.config_get(production.pk), "f", "u", {}).value is True


def test_config_get__cache_down_cold__built_from_the_database(production, settings):
    feature_create(user=None, key="f", name="F", environments={"production": {"enabled": True}})
    settings.CACHES = dead_redis_caches()
    settings.FLAGS_GENERATION_CHECK_SECONDS = 0.0
    compiled = config.config_get(production.pk)
    assert evaluate_feature(compiled, "f", "u", {}).reason == Reason.STATIC
    assert compiled.generation is None


def test_config_get__cache_down_warm__answers_from_memory(production, settings, django_assert_num_queries):
    feature_create(user=None, key="f", name="F")
    warm = config.config_get(production.pk)
    settings.CACHES = dead_redis_caches()
    settings.FLAGS_GENERATION_CHECK_SECONDS = 0.0
    with django_assert_num_queries(0):
        compiled = config.config_get(production.pk)
    assert compiled.version == warm.version


def test_cache_call__cache_down__skipped_until_retry(settings, monkeypatch):
    settings.CACHES = dead_redis_caches()
    settings.FLAGS_GENERATION_CHECK_SECONDS = 0.0
    calls = []

    def failing_get(key):
        calls.append(key)
        from django.core.cache import cache

        return cache.get(key)

    assert sdk_cache.current_generation() is None
    assert sdk_cache.cache_missing(sdk_cache.cache_call(failing_get, "x"))
    assert calls == []  # the breaker is open: the dead cache is not asked again at once


def test_config_get__change_through_another_process__seen_after_the_generation_check(production, settings):
    # Given a warm configuration, and a process that reads the generation at most once an hour.
    feature = feature_create(
        user=None,
        key="f",
        name="F",
        environments={"production": {"enabled": True, "rules": [{"type": "force", "value": False}]}},
    )
    config.config_get(production.pk)
    settings.FLAGS_GENERATION_CHECK_SECONDS = 3600.0
    # When another process changes the rule and replaces the generation in the shared cache.
    FeatureRule.objects.filter(feature=feature).update(value=True)
    cache.set(sdk_cache.GENERATION_KEY, "from-another-process", None)
    # Then this process serves its memo until it checks the generation again.
    assert evaluate_feature(config.config_get(production.pk), "f", "u", {}).value is False
    settings.FLAGS_GENERATION_CHECK_SECONDS = 0.0
    assert evaluate_feature(config.config_get(production.pk), "f", "u", {}).value is True


def test_sdk_key_lookup__revoked__refused_at_once(production, django_assert_num_queries):
    key, raw = sdk_key_create(environment=production)
    client = keys.sdk_client_for_key(raw)
    assert client.environment.key == "production" and client.sdk_key_id == key.pk
    with django_assert_num_queries(0):
        assert keys.sdk_client_for_key(raw) == client
    key.revoked = True
    key.save()
    assert keys.sdk_client_for_key(raw) is None


def test_sdk_key_lookup__unknown_key__remembered_as_unknown(django_assert_num_queries):
    assert keys.sdk_client_for_key("sdk_nope") is None
    with django_assert_num_queries(0):
        assert keys.sdk_client_for_key("sdk_nope") is None


def test_sdk_key_lookup__environment_renamed__new_key_served(production):
    _, raw = sdk_key_create(environment=production)
    assert keys.sdk_client_for_key(raw).environment.key == "production"
    production.key = "prod"
    production.save()
    assert keys.sdk_client_for_key(raw).environment.key == "prod"


def test_feature_delete__signal__removed_from_the_configuration(production):
    feature_create(user=None, key="f", name="F")
    assert "f" in config.config_get(production.pk).features
    Feature.objects.get(key="f").delete()
    assert "f" not in config.config_get(production.pk).features
