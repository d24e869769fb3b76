"""Power analysis: exact round trips and simulated power of the engine's own test."""

from __future__ import annotations

import math

import pytest

from analytics.stats import (
    days_needed,
    effect_moments,
    frequentist_test,
    minimum_detectable_effect,
    statistical_power,
)
from tests.analytics.stats.simulation import binomial_sample_stats, normal_sample_stats, seeded

PLANS = [
    pytest.param({"mean": 10.0, "variance": 16.0, "daily_units": 500}, id="revenue_50_50"),
    pytest.param({"mean": 0.1, "daily_units": 2000}, id="conversion_rate"),
    pytest.param({"mean": 3.0, "variance": 30.0, "daily_units": 800, "weights": [2, 1, 1]}, id="three_arms"),
    pytest.param(
        {"mean": 0.05, "daily_units": 5000, "alpha": 0.1, "target_power": 0.9}, id="alpha_10_power_90"
    ),
    pytest.param({"mean": 10.0, "variance": 16.0, "daily_units": 500, "sequential": True}, id="sequential"),
    pytest.param(
        {"mean": -4.0, "variance": 9.0, "daily_units": 300, "weights": [1, 3]}, id="negative_mean_uneven"
    ),
]


@pytest.mark.parametrize("days", [7.0, 14.0, 30.5])
@pytest.mark.parametrize("plan", PLANS)
def test_power_plan__days_to_lift_to_days__round_trip(plan, days):
    mde = minimum_detectable_effect(days=days, **plan)
    assert mde is not None and mde > 0
    assert days_needed(relative_lift=mde, **plan) == pytest.approx(days, rel=1e-8)


@pytest.mark.parametrize("lift", [0.02, 0.1, 0.3])
@pytest.mark.parametrize("plan", PLANS)
def test_power_plan__lift_to_days_to_lift__round_trip_and_target_power(plan, lift):
    days = days_needed(relative_lift=lift, **plan)
    assert minimum_detectable_effect(days=days, **plan) == pytest.approx(lift, rel=1e-8)
    # At that duration the full two-sided power (both tails) is the target, up to the negligible tail.
    power_args = {k: v for k, v in plan.items() if k not in ("daily_units", "target_power")}
    achieved = statistical_power(relative_lift=lift, units=days * plan["daily_units"], **power_args)
    assert achieved == pytest.approx(plan.get("target_power", 0.8), abs=1e-3)


def test_days_needed__larger_lift_or_more_traffic__fewer_days():
    base = {"mean": 10.0, "variance": 16.0, "daily_units": 500}
    assert days_needed(relative_lift=0.1, **base) < days_needed(relative_lift=0.05, **base)
    assert days_needed(relative_lift=0.05, **{**base, "daily_units": 1000}) == pytest.approx(
        days_needed(relative_lift=0.05, **base) / 2, rel=1e-12
    )
    assert days_needed(relative_lift=0.05, sequential=True, **base) > days_needed(relative_lift=0.05, **base)


def test_minimum_detectable_effect__too_few_units__none():
    # GrowthBook's existence condition: n must exceed k²σ²/μ² (about 9 × variance / mean²)
    assert minimum_detectable_effect(days=1, mean=1.0, variance=100.0, daily_units=500) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mean": 0.0, "variance": 1.0},
        {"mean": 1.5},  # no variance: must be a rate in (0, 1)
        {"mean": 1.0, "variance": 0.0},
        {"mean": 1.0, "variance": 1.0, "weights": [1]},
        {"mean": 1.0, "variance": 1.0, "weights": [1, 0]},
        {"mean": 1.0, "variance": 1.0, "target_power": 1.0},
    ],
)
def test_days_needed__invalid_plan__raises_value_error(kwargs):
    with pytest.raises(ValueError):
        days_needed(relative_lift=0.05, daily_units=100, **kwargs)


def _simulated_power(control, treatment, sequential: bool = False) -> float:
    hits = 0
    for a, b in zip(control, treatment, strict=True):
        hits += frequentist_test(effect_moments(a, b), sequential=sequential).relative.p_value < 0.05
    return hits / len(control)


@pytest.mark.slow
@pytest.mark.parametrize("sequential", [False, True])
def test_days_needed__500_simulated_experiments__reach_target_power(sequential):
    # Given the duration computed for +5% on a metric with mean 10 and sd 4 at 80% power
    mean, sd, lift, daily = 10.0, 4.0, 0.05, 200
    days = days_needed(
        relative_lift=lift, mean=mean, variance=sd**2, daily_units=daily, sequential=sequential
    )
    n = round(days * daily / 2)

    # When 500 experiments of that size are run and tested by the engine
    rng = seeded(77 + sequential)
    control = normal_sample_stats(rng, 500, n, mean, sd)
    treatment = normal_sample_stats(rng, 500, n, mean * (1 + lift), sd)

    # Then about 80% of them detect the lift
    assert _simulated_power(control, treatment, sequential) == pytest.approx(0.8, abs=0.05)


@pytest.mark.slow
def test_days_needed__conversion_rate_uneven_split__reaches_target_power():
    rate, lift, daily, weights = 0.1, 0.1, 1000, [1, 3]
    days = days_needed(relative_lift=lift, mean=rate, daily_units=daily, weights=weights)
    units = days * daily
    rng = seeded(78)
    control = binomial_sample_stats(rng, 500, math.ceil(units / 4), rate)
    treatment = binomial_sample_stats(rng, 500, math.ceil(units * 3 / 4), rate * (1 + lift))
    assert _simulated_power(control, treatment) == pytest.approx(0.8, abs=0.05)


@pytest.mark.parametrize("sequential", [False, True])
def test_days_needed__lift_too_small_for_floating_point__infinite_not_an_error(sequential):
    assert days_needed(relative_lift=1e-300, mean=0.1, daily_units=2000, sequential=sequential) == math.inf


def test_power_functions__huge_equal_weights__same_as_one_to_one():
    plan = {"mean": 0.1, "daily_units": 2000}
    assert days_needed(relative_lift=0.05, weights=[1e308, 1e308], **plan) == pytest.approx(
        days_needed(relative_lift=0.05, weights=[1, 1], **plan), rel=1e-12
    )
    assert minimum_detectable_effect(days=14, weights=[1e308, 1e308], **plan) == pytest.approx(
        minimum_detectable_effect(days=14, weights=[1, 1], **plan), rel=1e-12
    )
    assert statistical_power(relative_lift=0.05, units=28_000, mean=0.1, weights=[1e308, 1e308]) == (
        pytest.approx(statistical_power(relative_lift=0.05, units=28_000, mean=0.1), rel=1e-12)
    )
