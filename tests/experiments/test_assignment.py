"""experiments.assignment: targeting, layer slice, traffic and weighted variant, over plain data."""

from collections import Counter

import pytest

from experiments.assignment import AssignmentReason, assign, experiment_compile, not_found
from experiments.bucketing import assign_variant

UNITS = [f"user-{i}" for i in range(4000)]


def experiment(key: str = "checkout", **overrides) -> dict:
    raw = {
        "key": key,
        "status": "running",
        "seed": key,
        "variants": [
            {"key": "control", "weight": 1.0, "payload": None},
            {"key": "treatment", "weight": 1.0, "payload": {"color": "green"}},
        ],
        "traffic_allocation": 1.0,
        "targeting": {},
        "layer": None,
        "layer_slice_start": None,
    }
    raw.update(overrides)
    return raw


@pytest.mark.parametrize("status", ["draft", "paused", "stopped", "archived"])
def test_assign__not_running__nobody_in(status):
    compiled = experiment_compile(experiment(status=status))
    for unit_id in UNITS[:200]:
        result = assign(compiled, unit_id, {})
        assert (result.in_experiment, result.variant, result.reason) == (
            False,
            None,
            AssignmentReason.NOT_RUNNING,
        )


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"country": "US"}, AssignmentReason.ASSIGNED),
        ({"country": "FR"}, AssignmentReason.TARGETING_MISS),
        ({}, AssignmentReason.TARGETING_MISS),
    ],
)
def test_assign__targeting__only_matching_units(attributes, reason):
    compiled = experiment_compile(experiment(targeting={"country": {"$in": ["US", "CA"]}}))
    assert assign(compiled, "user-1", attributes).reason == reason


def test_assign__running__deterministic_weighted_and_with_payload():
    # Given weights 3:1, about 75% of units get control.
    compiled = experiment_compile(
        experiment(
            variants=[{"key": "control", "weight": 3}, {"key": "treatment", "weight": 1, "payload": [1, 2]}]
        )
    )
    results = [assign(compiled, unit_id, {}) for unit_id in UNITS]
    counts = Counter(r.variant for r in results)
    assert abs(counts["control"] / len(UNITS) - 0.75) < 0.03
    assert all(r.in_experiment and r.reason == AssignmentReason.ASSIGNED for r in results)
    assert {r.payload for r in results if r.variant == "control"} == {None}
    assert all(r.payload == [1, 2] for r in results if r.variant == "treatment")
    # The same unit always gets the same variant, and it is bucketing's answer for the seed.
    assert [assign(compiled, u, {}).variant for u in UNITS[:100]] == [r.variant for r in results[:100]]
    index = assign_variant(seed="checkout", unit_id="user-7", weights=[3, 1], traffic_allocation=1.0)
    assert assign(compiled, "user-7", {}).variant == ["control", "treatment"][index]


def test_assign__hash_seed__changes_who_gets_what():
    by_key = experiment_compile(experiment())
    reseeded = experiment_compile(experiment(seed="another-seed"))
    differ = sum(assign(by_key, u, {}).variant != assign(reseeded, u, {}).variant for u in UNITS[:1000])
    assert 350 < differ < 650


def test_assign__traffic_allocation__share_in_and_reason_for_the_rest():
    compiled = experiment_compile(experiment(traffic_allocation=0.2))
    results = [assign(compiled, u, {}) for u in UNITS]
    share = sum(r.in_experiment for r in results) / len(UNITS)
    assert abs(share - 0.2) < 0.03
    assert {r.reason for r in results if not r.in_experiment} == {AssignmentReason.NOT_IN_TRAFFIC}


@pytest.mark.parametrize("layer", [None, "homepage"])
def test_assign__ramp_up__keeps_every_unit_that_was_in(layer):
    slice_start = 0.0 if layer else None
    before = experiment_compile(
        experiment(traffic_allocation=0.1, layer=layer, layer_slice_start=slice_start)
    )
    after = experiment_compile(experiment(traffic_allocation=0.6, layer=layer, layer_slice_start=slice_start))
    was_in = {u: assign(before, u, {}).variant for u in UNITS if assign(before, u, {}).in_experiment}
    assert was_in
    assert all(assign(after, u, {}).variant == variant for u, variant in was_in.items())
    assert sum(assign(after, u, {}).in_experiment for u in UNITS) > 4 * len(was_in)


def test_assign__layer__experiments_never_share_a_unit():
    # Given three experiments filling a layer with slices of 30%, 50% and 20%.
    slices = {"a": (0.0, 0.3), "b": (0.3, 0.5), "c": (0.8, 0.2)}
    compiled = {
        key: experiment_compile(
            experiment(key, layer="homepage", layer_slice_start=start, traffic_allocation=width)
        )
        for key, (start, width) in slices.items()
    }
    # Then every unit is in exactly one of them, each with about its share.
    memberships = Counter()
    for unit_id in UNITS:
        in_ = [key for key, exp in compiled.items() if assign(exp, unit_id, {}).in_experiment]
        assert len(in_) == 1, (unit_id, in_)
        memberships[in_[0]] += 1
    for key, (_, width) in slices.items():
        assert abs(memberships[key] / len(UNITS) - width) < 0.03


def test_assign__layer_without_slice__assigns_nobody():
    compiled = experiment_compile(experiment(layer="homepage", layer_slice_start=None))
    assert assign(compiled, "user-1", {}).reason == AssignmentReason.NOT_RUNNING


def test_not_found__unknown_key__not_in():
    result = not_found("gone")
    assert (result.experiment, result.variant, result.in_experiment, result.reason) == (
        "gone",
        None,
        False,
        AssignmentReason.NOT_FOUND,
    )
