"""One damaged experiment or flag never fails the SDK endpoints for the others (issue 11).

A stored condition that saving refuses today (a pattern RE2 cannot run) is not damage: it is evaluated
as GrowthBook's specification says, and that part matches nobody (issue 12).

Weights of 1e308 were accepted and started; then every ``POST /api/v1/assign`` answered 500
(OverflowError in the bucket ranges' sum). Saving refuses such data now (tests/experiments/
test_bounds_at_save.py), but data saved before, or written around the services, must still cost
only itself: it answers ERROR (a flag: its default value), is logged, and the others are served.
"""

import dataclasses
import logging

import pytest
from rest_framework.test import APIClient

from experiments.assignment import AssignmentReason, assign, experiment_compile
from experiments.models import Variant
from experiments.services import experiment_start
from features.evaluation import Reason, assign_unit, evaluate_all, evaluate_feature
from features.models import Environment, FeatureRule
from features.sdk import cache as sdk_cache
from features.services import feature_create, sdk_key_create
from tests.factories import ExperimentFactory
from tests.features.test_evaluation import compiled, experiment_rule, flag, force, running

HUGE_WEIGHTS = [
    {"key": "control", "weight": 1e308, "payload": None},
    {"key": "treatment", "weight": 1e308, "payload": None},
]


def _raise(*_args: object) -> bool:
    raise RuntimeError("a predicate that fails at evaluation")


# --- the decision plane, over planted compiled configurations ---------------------------------------------
@pytest.fixture
def planted():
    """Healthy flags and experiments next to broken ones: weights whose sum overflows (fails when
    assigning), targeting RE2 refuses (matches nobody), a flag whose rule's pattern RE2 refuses, a
    flag served by the broken experiment, and a flag whose condition raises when evaluated."""
    config_ = compiled(
        {
            "healthy": flag(rules=[force(True)]),
            "bad_rule": flag(
                default="off", type="string", rules=[force("on", {"email": {"$regex": "(?=x)"}})]
            ),
            "via_broken_experiment": flag(
                rules=[experiment_rule("overflowing", {"control": True, "treatment": True}), force(False)]
            ),
            "raises": flag(default=7, type="number", rules=[force(1)]),
        },
        {
            "ok": running("ok"),
            "overflowing": running("overflowing", variants=HUGE_WEIGHTS),
            "bad_targeting": running("bad_targeting", targeting={"email": {"$regex": r"(a)\1"}}),
        },
    )
    raising = config_.features["raises"]
    rule = dataclasses.replace(raising.rules[0], condition=_raise)
    features = {**config_.features, "raises": dataclasses.replace(raising, rules=(rule,))}
    return dataclasses.replace(config_, features=features)


def test_assign_unit__broken_experiments__error_for_them_others_assigned(planted):
    by_key = {a.experiment: a for a in assign_unit(planted, "user-1", {"email": "ada@example.com"})}
    assert by_key["ok"].reason == AssignmentReason.ASSIGNED
    assert by_key["overflowing"].reason == AssignmentReason.ERROR
    # A pattern RE2 cannot run matches nobody, as in GrowthBook's SDKs
    assert by_key["bad_targeting"].reason == AssignmentReason.TARGETING_MISS
    assert not by_key["overflowing"].in_experiment and by_key["overflowing"].variant is None


def test_assign_unit__broken_experiment_asked_by_key__error_in_its_place(planted):
    answers = assign_unit(planted, "user-1", {}, ["overflowing", "ok", "gone"])
    assert [(a.experiment, a.reason) for a in answers] == [
        ("overflowing", "ERROR"),
        ("ok", "ASSIGNED"),
        ("gone", "NOT_FOUND"),
    ]


def test_evaluate_all__broken_flags__error_with_default_others_served(planted):
    by_key = {e.key: e for e in evaluate_all(planted, "user-1", {"email": "ada@example.com"})}
    assert (by_key["healthy"].value, by_key["healthy"].reason) == (True, Reason.TARGETING_MATCH)
    assert (by_key["bad_rule"].value, by_key["bad_rule"].variant, by_key["bad_rule"].reason) == (
        "off",
        "default",
        Reason.DEFAULT,
    )
    assert (by_key["raises"].value, by_key["raises"].reason) == (7, Reason.ERROR)
    # An experiment that cannot decide assigns nobody: its rule falls through to the next one.
    assert (by_key["via_broken_experiment"].value, by_key["via_broken_experiment"].reason) == (
        False,
        Reason.TARGETING_MATCH,
    )


def test_evaluate_feature__broken_flag__error_never_raises(planted):
    assert evaluate_feature(planted, "raises", "user-1", {}).reason == Reason.ERROR
    assert evaluate_feature(planted, "bad_rule", "user-1", {}).reason == Reason.DEFAULT


def test_evaluate_feature__broken_flag_disabled__disabled_as_any_other(planted):
    raw = flag(enabled=False, rules=[force(True, {"email": {"$regex": "(?=x)"}})])
    assert evaluate_feature(compiled({"off": raw}), "off", "u", {}).reason == Reason.DISABLED


def test_decision_failures__repeated__logged_once_with_the_reason(caplog):
    experiment = experiment_compile({"key": "log_once_overflow", **running("x", variants=HUGE_WEIGHTS)})
    with caplog.at_level(logging.DEBUG, logger="experiments.assignment"):
        for unit in range(50):
            assert assign(experiment, f"user-{unit}", {}).reason == AssignmentReason.ERROR
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "log_once_overflow" in errors[0].getMessage() and errors[0].exc_info is not None


# --- through the SDK endpoints, with damaged rows written around the services ---------------------------------


@pytest.fixture
def damaged(db, fresh_decision_plane):
    """A running experiment whose weights were written as 1e308 and a flag whose stored rule has an
    unknown type (both as data saved before today's validation, or by raw SQL), next to healthy ones."""
    healthy = ExperimentFactory(key="healthy_exp")
    experiment_start(experiment=healthy, user=None)
    overflowing = ExperimentFactory(key="overflowing")
    experiment_start(experiment=overflowing, user=None)
    Variant.objects.filter(experiment=overflowing).update(weight=1e308)
    production = {
        "production": {"enabled": True, "rules": [{"type": "force", "condition": {}, "value": True}]}
    }
    feature_create(
        user=None,
        key="healthy_flag",
        name="Healthy",
        type="boolean",
        default_value=False,
        environments=production,
    )
    feature_create(
        user=None,
        key="damaged_flag",
        name="Damaged",
        type="boolean",
        default_value=False,
        environments=production,
    )
    # A rule of a type this version does not know (written by raw SQL, or by a newer version)
    FeatureRule.objects.filter(feature__key="damaged_flag").update(type="bogus")
    sdk_cache.config_invalidate()  # .update() sends no signal
    _, raw = sdk_key_create(environment=Environment.objects.get(key="production"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_sdk_assign__experiment_with_overflowing_weights__200_error_for_it_others_assigned(damaged):
    response = damaged.post("/api/v1/assign", {"unit_id": "u-1", "log_exposure": False}, format="json")
    assert response.status_code == 200, response.content
    reasons = {a["experiment"]: a["reason"] for a in response.json()["assignments"]}
    assert reasons == {"healthy_exp": "ASSIGNED", "overflowing": "ERROR"}


def test_sdk_evaluate__flag_with_damaged_condition__200_error_for_it_others_served(damaged):
    response = damaged.post("/api/v1/evaluate", {"unit_id": "u-1"}, format="json")
    assert response.status_code == 200, response.content
    flags = response.json()["flags"]
    assert flags["healthy_flag"] == {"value": True, "variant": "rule-1", "reason": "TARGETING_MATCH"}
    assert flags["damaged_flag"] == {"value": False, "variant": "error", "reason": "ERROR"}


def test_ofrep__flag_with_damaged_condition__general_error_for_it_others_served(damaged):
    body = {"context": {"targetingKey": "u-1"}}
    single = damaged.post("/ofrep/v1/evaluate/flags/damaged_flag", body, format="json")
    assert single.status_code == 400
    assert single.json()["errorCode"] == "GENERAL" and single.json()["key"] == "damaged_flag"
    assert damaged.post("/ofrep/v1/evaluate/flags/healthy_flag", body, format="json").status_code == 200
    bulk = damaged.post("/ofrep/v1/evaluate/flags", body, format="json")
    assert bulk.status_code == 200
    by_key = {item["key"]: item for item in bulk.json()["flags"]}
    assert by_key["damaged_flag"]["errorCode"] == "GENERAL" and "value" not in by_key["damaged_flag"]
    assert by_key["healthy_flag"]["value"] is True
