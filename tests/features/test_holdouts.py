"""Holdouts in flag evaluation, assignment and the GrowthBook payload (pure: compiled snapshots, no
database), checked against GrowthBook's hash directly and against GrowthBook's Python SDK."""

import random

from growthbook import GrowthBook

from experiments.bucketing import bucket
from features.evaluation import (
    GENERAL,
    HELD_OUT,
    Reason,
    assign_unit,
    config_compile,
    evaluate_feature,
    ofrep_reason,
    snapshot_version,
)
from features.growthbook import features_payload
from tests.features.growthbook_flags import random_unit, same_value

UNITS = [f"user-{i}" for i in range(20000)]
HOLDOUT_EXPERIMENT = "holdout-q1"
SEED = "q1-seed"
COVERAGE = 0.2  # a 10% holdout: 10% held out, 10% measured


def flag(*, default=False, enabled=True, rules=(), prerequisites=(), holdout=None) -> dict:
    raw = {
        "type": "boolean",
        "default": default,
        "enabled": enabled,
        "rules": list(rules),
        "prerequisites": [{"feature": key, "value": value} for key, value in prerequisites],
    }
    if holdout:
        raw["holdout"] = holdout
    return raw


def experiment(key: str, *, holdout=None, status="running", traffic=1.0) -> dict:
    raw = {
        "status": status,
        "name": key,
        "seed": key,
        "variants": [
            {"key": "control", "weight": 1, "payload": None, "name": "control"},
            {"key": "treatment", "weight": 1, "payload": None, "name": "treatment"},
        ],
        "traffic_allocation": traffic,
        "targeting": {},
        "layer": None,
        "layer_slice_start": None,
        "hash_attribute": "id",
        "fallback_attribute": None,
    }
    if holdout:
        raw["holdout"] = holdout
    return raw


HOLDOUTS = {
    "q1": {"experiment": HOLDOUT_EXPERIMENT, "seed": SEED, "coverage": COVERAGE, "hash_attribute": "id"}
}


def snapshot(features: dict, experiments: dict | None = None, holdouts: dict | None = None) -> dict:
    raw = {
        "environment": {"id": 1, "key": "production"},
        "features": features,
        "experiments": experiments or {},
        "holdouts": HOLDOUTS if holdouts is None else holdouts,
    }
    raw["version"] = snapshot_version(raw)
    raw["built_at"] = 0.0
    return raw


def group_of(unit_id: str, seed: str = SEED, coverage: float = COVERAGE) -> str | None:
    """GrowthBook's own arithmetic, written out: the holdout rule's ranges for weights [0.5, 0.5] at
    ``coverage`` are [0, coverage/2) (``holdoutcontrol``) and [0.5, 0.5 + coverage/2)
    (``holdouttreatment``), of the version-2 hash of (seed, unit)."""
    n = bucket(seed, unit_id, 2)
    if 0 <= n < coverage / 2:
        return HELD_OUT
    if 0.5 <= n < 0.5 + coverage / 2:
        return GENERAL
    return None


ON = {"type": "force", "condition": {}, "value": True}


def test_evaluate__held_out_flag__default_reason_holdout_and_exposure_for_each_measured_unit():
    config = config_compile(snapshot({"f": flag(rules=[ON], holdout="q1")}))
    counts = {HELD_OUT: 0, GENERAL: 0, None: 0}
    for unit in UNITS:
        evaluation = evaluate_feature(config, "f", unit, {})
        group = group_of(unit)
        counts[group] += 1
        if group == HELD_OUT:
            assert (evaluation.value, evaluation.reason, evaluation.variant) == (
                False,
                Reason.HOLDOUT,
                "holdout",
            )
        else:
            assert (evaluation.value, evaluation.reason) == (True, Reason.TARGETING_MATCH)
        expected = ((HOLDOUT_EXPERIMENT, group, "id"),) if group else ()
        assert evaluation.exposures == expected
    # 10% held out, 10% measured: within 4 standard errors of a binomial(20000, 0.1)
    for group in (HELD_OUT, GENERAL):
        assert abs(counts[group] - 2000) < 4 * (20000 * 0.1 * 0.9) ** 0.5


def test_evaluate__held_out_flag_disabled__default_without_holdout_exposure():
    config = config_compile(snapshot({"f": flag(rules=[ON], holdout="q1", enabled=False)}))
    for unit in UNITS[:2000]:
        evaluation = evaluate_feature(config, "f", unit, {})
        assert evaluation.reason == Reason.DISABLED and evaluation.exposures == ()


def test_evaluate__holdout_not_running_here__flag_served_as_usual():
    config = config_compile(snapshot({"f": flag(rules=[ON], holdout="q1")}, holdouts={}))
    assert all(evaluate_feature(config, "f", unit, {}).value is True for unit in UNITS[:2000])


def test_evaluate__held_out_experiment_rule__held_out_units_fall_through_to_the_next_rule():
    rules = [
        {"type": "experiment", "experiment": "exp", "values": {"control": "c", "treatment": "t"}},
        {"type": "force", "condition": {}, "value": "next"},
    ]
    config = config_compile(
        snapshot({"f": flag(default="off", rules=rules)}, {"exp": experiment("exp", holdout="q1")})
    )
    for unit in UNITS[:5000]:
        evaluation = evaluate_feature(config, "f", unit, {})
        group = group_of(unit)
        if group == HELD_OUT:
            assert evaluation.value == "next" and evaluation.experiment is None
            assert evaluation.exposures == ((HOLDOUT_EXPERIMENT, HELD_OUT, "id"),)
        else:
            assert evaluation.value in ("c", "t") and evaluation.experiment == "exp"
            holdout_exposure = ((HOLDOUT_EXPERIMENT, GENERAL, "id"),) if group else ()
            assert evaluation.exposures == (*holdout_exposure, ("exp", evaluation.variant, "id"))


def test_assign_unit__held_out_experiment__reason_holdout_and_the_holdout_assignment():
    config = config_compile(
        snapshot({}, {"exp": experiment("exp", holdout="q1"), "free": experiment("free")})
    )
    for unit in UNITS[:5000]:
        held, free = assign_unit(config, unit, {}, ["exp", "free"])
        group = group_of(unit)
        assert free.in_experiment and free.holdout is None  # not held out: another experiment
        if group == HELD_OUT:
            assert (held.in_experiment, held.reason, held.variant) == (False, "HOLDOUT", None)
        else:
            assert held.in_experiment and held.reason == "ASSIGNED"
        if group is None:
            assert held.holdout is None
        else:
            assert (held.holdout.experiment, held.holdout.variant) == (HOLDOUT_EXPERIMENT, group)


def test_ofrep_reason__holdout__default():
    assert ofrep_reason(Reason.HOLDOUT) == "DEFAULT"


def test_payload__holdout_feature_and_parent_conditions__as_growthbook_writes_them():
    features = {
        "f": flag(default="d", rules=[{"type": "force", "condition": {}, "value": "x"}], holdout="q1"),
        "g": flag(
            default="off",
            rules=[{"type": "experiment", "experiment": "exp", "values": {"control": "c", "treatment": "t"}}],
            prerequisites=[("f", "x")],
        ),
    }
    payload = features_payload(snapshot(features, {"exp": experiment("exp", holdout="q1")}))
    assert payload["$holdout:q1"] == {
        "defaultValue": "genpop",
        "rules": [
            {
                "key": HOLDOUT_EXPERIMENT,
                "variations": ["holdoutcontrol", "holdouttreatment"],
                "weights": [0.5, 0.5],
                "coverage": COVERAGE,
                "hashAttribute": "id",
                "hashVersion": 2,
                "seed": SEED,
                "meta": [
                    {"key": "holdout", "name": "Held out"},
                    {"key": "general", "name": "General population"},
                ],
                "name": "Holdout q1",
                "phase": "0",
            }
        ],
    }
    assert payload["f"]["rules"][0] == {
        "parentConditions": [{"id": "$holdout:q1", "condition": {"value": "holdoutcontrol"}}],
        "force": "d",
    }
    assert payload["f"]["rules"][1] == {"force": "x"}
    # The experiment rule: the prerequisite first, then the holdout
    assert payload["g"]["rules"][0]["parentConditions"] == [
        {"id": "f", "condition": {"value": "x"}},
        {"id": "$holdout:q1", "condition": {"value": {"$ne": "holdoutcontrol"}}},
    ]


def test_payload__holdout_that_holds_nothing_out_here__not_written():
    payload = features_payload(snapshot({"f": flag(rules=[ON])}))
    assert set(payload) == {"f"}


def test_payload__disabled_held_out_flag__no_holdout_rule():
    payload = features_payload(snapshot({"f": flag(rules=[ON], holdout="q1", enabled=False)}))
    assert payload == {"f": {"defaultValue": False}}


def test_growthbook_python_sdk__payload_with_holdouts__same_values_and_exposures_as_ours():
    # Given flags held out directly, through an experiment, through a prerequisite, by another attribute
    holdouts = {
        **HOLDOUTS,
        "by_company": {
            "experiment": "holdout-by-company",
            "seed": "c",
            "coverage": 0.5,
            "hash_attribute": "company_id",
        },
    }
    experiments = {"exp": experiment("exp", holdout="q1", traffic=0.8), "other": experiment("other")}
    features = {
        "held": flag(
            rules=[{"type": "rollout", "condition": {}, "coverage": 0.7, "value": True}], holdout="q1"
        ),
        "held_exp": flag(
            default="off",
            rules=[
                {
                    "type": "experiment",
                    "condition": {"plan": "pro"},
                    "experiment": "exp",
                    "values": {"control": "c", "treatment": "t"},
                },
                {"type": "experiment", "experiment": "other", "values": {"control": "oc", "treatment": "ot"}},
            ],
        ),
        "behind_held": flag(
            default=0, rules=[{"type": "force", "condition": {}, "value": 1}], prerequisites=[("held", True)]
        ),
        "by_company": flag(
            default="n", rules=[{"type": "force", "condition": {}, "value": "y"}], holdout="by_company"
        ),
        "plain": flag(rules=[ON]),
    }
    raw = snapshot(features, experiments, holdouts)
    config = config_compile(raw)
    payload = features_payload(raw)
    rng = random.Random(7)
    units = [random_unit(rng) for _ in range(3000)]
    mismatches = []
    held_out = 0
    for unit_id, attributes in units:
        for key in features:
            # One SDK instance per flag: an instance tracks each (experiment, variant) once only.
            tracked = []
            gb = GrowthBook(
                attributes={"id": unit_id, **attributes},
                features=payload,
                on_experiment_viewed=lambda experiment, result, tracked=tracked, **_: tracked.append(
                    (experiment.key, result.key)
                ),
            )
            ours = evaluate_feature(config, key, unit_id, attributes)
            held_out += ours.reason == Reason.HOLDOUT
            result = gb.eval_feature(key)
            if not same_value(result.value, ours.value):
                mismatches.append((key, unit_id, attributes, result.value, ours))
            elif set(tracked) != {(e, v) for e, v, _ in ours.exposures}:
                mismatches.append((key, unit_id, attributes, "exposures", tracked, ours.exposures))
            gb.destroy()
    assert not mismatches, mismatches[:5]
    assert held_out > 300  # the holdouts really held units out
