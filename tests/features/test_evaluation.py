"""features.evaluation: rules, prerequisites, reasons and values, over compiled snapshots (no database)."""

import json

import pytest

from experiments.bucketing import in_rollout
from features.evaluation import (
    MAX_PREREQUISITE_DEPTH,
    Reason,
    assign_unit,
    config_compile,
    evaluate_all,
    evaluate_feature,
    ofrep_reason,
    snapshot_version,
)

UNITS = [f"user-{i}" for i in range(3000)]


def flag(*, type="boolean", default=False, enabled=True, rules=(), prerequisites=()) -> dict:
    return {
        "type": type,
        "default": default,
        "enabled": enabled,
        "rules": list(rules),
        "prerequisites": [{"feature": key, "value": value} for key, value in prerequisites],
    }


def running(key: str, status: str = "running", **overrides) -> dict:
    raw = {
        "status": status,
        "seed": key,
        "variants": [
            {"key": "control", "weight": 1, "payload": None},
            {"key": "treatment", "weight": 1, "payload": None},
        ],
        "traffic_allocation": 1.0,
        "targeting": {},
        "layer": None,
        "layer_slice_start": None,
    }
    raw.update(overrides)
    return raw


def compiled(features: dict, experiments: dict | None = None):
    snapshot = {
        "environment": {"id": 1, "key": "production"},
        "features": features,
        "experiments": experiments or {},
    }
    snapshot["version"] = snapshot_version(snapshot)
    snapshot["built_at"] = 0.0
    return config_compile(snapshot)


def force(value, condition=None) -> dict:
    return {"type": "force", "condition": condition or {}, "value": value}


def rollout(value, coverage, condition=None) -> dict:
    return {"type": "rollout", "condition": condition or {}, "value": value, "coverage": coverage}


def experiment_rule(key, values, condition=None) -> dict:
    return {"type": "experiment", "condition": condition or {}, "experiment": key, "values": values}


def test_evaluate_feature__unknown_key__none():
    assert evaluate_feature(compiled({}), "nope", "u", {}) is None


@pytest.mark.parametrize(
    ("feature", "attributes", "expected"),
    [
        (flag(default=False), {}, (False, "default", Reason.STATIC)),
        (flag(default=False, enabled=False, rules=[force(True)]), {}, (False, "disabled", Reason.DISABLED)),
        (flag(rules=[force(True)]), {}, (True, "rule-1", Reason.TARGETING_MATCH)),
        (
            flag(rules=[force(True, {"plan": "pro"})]),
            {"plan": "pro"},
            (True, "rule-1", Reason.TARGETING_MATCH),
        ),
        (flag(rules=[force(True, {"plan": "pro"})]), {"plan": "free"}, (False, "default", Reason.DEFAULT)),
        (flag(rules=[rollout(True, 1.0)]), {}, (True, "rule-1", Reason.SPLIT)),
        (flag(rules=[rollout(True, 0.0)]), {}, (False, "default", Reason.DEFAULT)),
        (
            flag(rules=[rollout(True, 1.0, {"beta": True})]),
            {"beta": False},
            (False, "default", Reason.DEFAULT),
        ),
        (
            flag(type="string", default="a", rules=[force("b", {"x": 1}), force("c", {"y": 1})]),
            {"y": 1},
            ("c", "rule-2", Reason.TARGETING_MATCH),
        ),
        (
            flag(type="string", default="a", rules=[force("b", {}), force("c", {})]),
            {},
            ("b", "rule-1", Reason.TARGETING_MATCH),
        ),
    ],
    ids=[
        "no-rules-static",
        "disabled",
        "force-everyone",
        "force-match",
        "force-miss-default",
        "rollout-full",
        "rollout-zero",
        "rollout-condition-miss",
        "second-rule-wins",
        "first-rule-wins",
    ],
)
def test_evaluate_feature__rules__value_variant_reason(feature, attributes, expected):
    result = evaluate_feature(compiled({"f": feature}), "f", "user-1", attributes)
    assert (result.value, result.variant, result.reason) == expected
    assert result.experiment is None and result.exposures == ()


def test_evaluate_feature__rollout__share_is_coverage_and_matches_bucketing():
    config = compiled({"f": flag(rules=[rollout(True, 0.3)])})
    served = {u for u in UNITS if evaluate_feature(config, "f", u, {}).reason == Reason.SPLIT}
    assert served == {u for u in UNITS if in_rollout("f", u, 0.3)}
    assert abs(len(served) / len(UNITS) - 0.3) < 0.03


def test_evaluate_feature__rollout_raised__keeps_units_that_had_it():
    low = compiled({"f": flag(rules=[rollout(True, 0.2)])})
    high = compiled({"f": flag(rules=[rollout(True, 0.5)])})
    had_it = [u for u in UNITS if evaluate_feature(low, "f", u, {}).value is True]
    assert all(evaluate_feature(high, "f", u, {}).value is True for u in had_it)


def test_evaluate_feature__experiment_rule__variant_value_split_and_exposure():
    config = compiled(
        {
            "color": flag(
                type="string",
                default="grey",
                rules=[experiment_rule("exp", {"control": "blue", "treatment": "green"})],
            )
        },
        {"exp": running("exp")},
    )
    results = [evaluate_feature(config, "color", u, {}) for u in UNITS[:1000]]
    assert {r.reason for r in results} == {Reason.SPLIT}
    assert {(r.variant, r.value) for r in results} == {("control", "blue"), ("treatment", "green")}
    assert all(r.experiment == "exp" and r.exposures == (("exp", r.variant, "id"),) for r in results)
    # The variant is the experiment's own assignment.
    assignments = {a.experiment: a.variant for a in assign_unit(config, "user-3", {})}
    assert evaluate_feature(config, "color", "user-3", {}).variant == assignments["exp"]


@pytest.mark.parametrize("status", ["draft", "paused", "stopped"])
def test_evaluate_feature__experiment_not_running__falls_through(status):
    experiments = (
        {"exp": running("exp", status=status)} if status != "stopped" else {"exp": {"status": "stopped"}}
    )
    config = compiled(
        {"f": flag(rules=[experiment_rule("exp", {"control": False, "treatment": True}), force(True)])},
        experiments,
    )
    result = evaluate_feature(config, "f", "user-1", {})
    assert (result.value, result.variant, result.reason, result.exposures) == (
        True,
        "rule-2",
        Reason.TARGETING_MATCH,
        (),
    )


def test_evaluate_feature__experiment_rule_unit_not_in__falls_through_to_next_rule():
    config = compiled(
        {
            "f": flag(
                type="string",
                default="d",
                rules=[experiment_rule("exp", {"control": "c", "treatment": "t"}), rollout("r", 1.0)],
            )
        },
        {"exp": running("exp", traffic_allocation=0.3)},
    )
    results = [evaluate_feature(config, "f", u, {}) for u in UNITS]
    fell_through = [r for r in results if r.variant == "rule-2"]
    assert all(r.value == "r" and r.reason == Reason.SPLIT and r.exposures == () for r in fell_through)
    assert abs(len(fell_through) / len(UNITS) - 0.7) < 0.03


def test_evaluate_feature__experiment_rule_missing_experiment__falls_through():
    config = compiled({"f": flag(rules=[experiment_rule("deleted", {"control": True})])})
    assert evaluate_feature(config, "f", "user-1", {}).reason == Reason.DEFAULT


def test_evaluate_feature__experiment_rule_condition__checked_before_assignment():
    config = compiled(
        {"f": flag(rules=[experiment_rule("exp", {"control": True, "treatment": True}, {"plan": "pro"})])},
        {"exp": running("exp")},
    )
    assert evaluate_feature(config, "f", "user-1", {"plan": "free"}).reason == Reason.DEFAULT
    assert evaluate_feature(config, "f", "user-1", {"plan": "pro"}).reason == Reason.SPLIT


@pytest.mark.parametrize(
    ("gate", "required", "expected"),
    [
        (flag(rules=[force(True)]), True, (True, "rule-1", Reason.TARGETING_MATCH)),
        (flag(rules=[force(False)]), True, (False, "prerequisite-failed", Reason.PREREQUISITE_FAILED)),
        (
            flag(enabled=False, default=False),
            True,
            (False, "prerequisite-failed", Reason.PREREQUISITE_FAILED),
        ),
        (flag(enabled=False, default=False), False, (True, "rule-1", Reason.TARGETING_MATCH)),
        (flag(type="string", default="eu"), "eu", (True, "rule-1", Reason.TARGETING_MATCH)),
        (flag(type="number", default=1), True, (False, "prerequisite-failed", Reason.PREREQUISITE_FAILED)),
    ],
    ids=["met", "unmet", "disabled-gate-unmet", "disabled-gate-wants-false", "string-met", "true-is-not-1"],
)
def test_evaluate_feature__prerequisite__gates_the_rules(gate, required, expected):
    config = compiled({"gate": gate, "f": flag(rules=[force(True)], prerequisites=[("gate", required)])})
    result = evaluate_feature(config, "f", "user-1", {})
    assert (result.value, result.variant, result.reason) == expected


def test_evaluate_feature__prerequisites_chained__each_level_evaluated_for_the_unit():
    # Given c requires b, b requires a, and a is rolled out to 50%.
    config = compiled(
        {
            "a": flag(rules=[rollout(True, 0.5)]),
            "b": flag(rules=[force(True)], prerequisites=[("a", True)]),
            "c": flag(type="string", default="off", rules=[force("on")], prerequisites=[("b", True)]),
        }
    )
    for unit_id in UNITS[:300]:
        result = evaluate_feature(config, "c", unit_id, {})
        if in_rollout("a", unit_id, 0.5):
            assert (result.value, result.reason) == ("on", Reason.TARGETING_MATCH)
        else:
            assert (result.value, result.reason) == ("off", Reason.PREREQUISITE_FAILED)


def test_evaluate_feature__prerequisite_cycle__depth_limit_fails_it():
    # Saving refuses cycles; a damaged snapshot still must not recurse forever.
    # (With rules: a flag without any never evaluates its prerequisites, as GrowthBook's SDKs.)
    config = compiled(
        {
            "a": flag(rules=[force(True)], prerequisites=[("b", True)]),
            "b": flag(rules=[force(True)], prerequisites=[("a", True)]),
        }
    )
    assert evaluate_feature(config, "a", "u", {}).reason == Reason.PREREQUISITE_FAILED


def test_evaluate_feature__prerequisite_chain_at_depth_limit__fails_past_it():
    def chain(length: int) -> dict:
        features = {"f0": flag(rules=[force(True)])}
        for i in range(1, length + 1):
            features[f"f{i}"] = flag(rules=[force(True)], prerequisites=[(f"f{i - 1}", True)])
        return features

    assert (
        evaluate_feature(compiled(chain(MAX_PREREQUISITE_DEPTH)), f"f{MAX_PREREQUISITE_DEPTH}", "u", {}).value
        is True
    )
    deeper = MAX_PREREQUISITE_DEPTH + 1
    assert (
        evaluate_feature(compiled(chain(deeper)), f"f{deeper}", "u", {}).reason == Reason.PREREQUISITE_FAILED
    )


def test_evaluate_feature__prerequisite_served_by_experiment__exposure_reported():
    config = compiled(
        {
            "gate": flag(rules=[experiment_rule("exp", {"control": True, "treatment": True})]),
            "f": flag(rules=[force(True)], prerequisites=[("gate", True)]),
        },
        {"exp": running("exp")},
    )
    result = evaluate_feature(config, "f", "user-1", {})
    assert result.reason == Reason.TARGETING_MATCH and result.experiment is None
    assert [exposure[0] for exposure in result.exposures] == ["exp"]


def test_evaluate_feature__disabled__beats_unmet_prerequisite():
    config = compiled({"gate": flag(enabled=False), "f": flag(enabled=False, prerequisites=[("gate", True)])})
    assert evaluate_feature(config, "f", "u", {}).reason == Reason.DISABLED


@pytest.mark.parametrize(
    ("type_", "value", "json_text"),
    [
        ("boolean", True, "true"),
        ("string", "green", '"green"'),
        ("number", 0.25, "0.25"),
        ("number", 1.0, "1.0"),
        ("number", 3, "3"),
        ("json", {"a": [1, 2.0]}, '{"a": [1, 2.0]}'),
    ],
)
def test_evaluate_feature__typed_values__served_as_stored(type_, value, json_text):
    config = compiled({"f": flag(type=type_, default=value)})
    result = evaluate_feature(config, "f", "u", {})
    assert json.dumps(result.value) == json_text
    assert type(result.value) is type(value)


def test_evaluate_all__every_flag__in_key_order():
    config = compiled({"a": flag(), "b": flag(rules=[force(True)]), "c": flag(enabled=False)})
    assert [(e.key, e.reason) for e in evaluate_all(config, "u", {})] == [
        ("a", Reason.STATIC),
        ("b", Reason.TARGETING_MATCH),
        ("c", Reason.DISABLED),
    ]


@pytest.mark.parametrize(
    ("reason", "ofrep"),
    [(r, r) for r in ("STATIC", "TARGETING_MATCH", "SPLIT", "DEFAULT", "DISABLED")]
    + [("PREREQUISITE_FAILED", "DEFAULT")],
)
def test_ofrep_reason__ours__openfeature_reason(reason, ofrep):
    assert ofrep_reason(reason) == ofrep


def test_assign_unit__keys_or_all_running__in_order():
    config = compiled({}, {"a": running("a"), "b": running("b", status="paused"), "c": {"status": "draft"}})
    assert [a.experiment for a in assign_unit(config, "u", {})] == ["a"]
    assert [(a.experiment, a.reason) for a in assign_unit(config, "u", {}, ["c", "zzz", "b"])] == [
        ("c", "NOT_RUNNING"),
        ("zzz", "NOT_FOUND"),
        ("b", "NOT_RUNNING"),
    ]


def test_snapshot_version__content__changes_with_value_kind_only():
    base = {
        "environment": {"id": 1, "key": "p"},
        "features": {"f": flag(type="number", default=1)},
        "experiments": {},
    }
    same = json.loads(json.dumps(base))
    floaty = {**base, "features": {"f": flag(type="number", default=1.0)}}
    assert snapshot_version(base) == snapshot_version(same)
    assert snapshot_version(base) != snapshot_version(floaty)
