"""CUPED: θ against least squares on the pooled raw data, variance reduction against 1 − ρ², coverage."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.stats import (
    AnalysisOptions,
    CupedStats,
    SampleStats,
    analyse_metric,
    effect_moments,
    frequentist_test,
    summarise_variants,
)
from analytics.stats.cuped import cuped_theta
from tests.analytics.stats.simulation import correlated_normal, cuped_stats, seeded


@pytest.mark.parametrize("binomial", [False, True])
def test_cuped_theta__two_variants__pooled_least_squares_slope(binomial):
    # Given raw pre- and post-period values of two variants
    rng = seeded(1)
    if binomial:
        x = rng.binomial(1, 0.3, (2, 4000)).astype(float)
        y = np.where(rng.random((2, 4000)) < 0.8, x, rng.binomial(1, 0.3, (2, 4000))).astype(float)
    else:
        y, x = correlated_normal(rng, (2, 4000), rho=0.7)
        y[1] += 0.5  # a treatment effect must not change θ much, and θ is pooled over both arms
    control, treatment = cuped_stats(y, x)

    # Then θ is the least-squares slope of y on x over both variants pooled (GrowthBook compute_theta)
    slope = np.polyfit(x.ravel(), y.ravel(), 1)[0]
    assert cuped_theta(control, treatment, binomial=binomial) == pytest.approx(slope, rel=1e-9)


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_cuped_variance__correlated_covariate__reduced_by_one_minus_rho_squared(rho):
    # Given large variants whose metric correlates with its pre-period value at rho
    rng = seeded(int(rho * 100))
    y, x = correlated_normal(rng, (2, 100_000), rho=rho)
    control, treatment = cuped_stats(y, x)

    plain = effect_moments(control, treatment, cuped=False)
    adjusted = effect_moments(control, treatment, cuped=True)

    # Then the estimator's variance shrinks by the factor 1 - rho^2
    reduction = adjusted.absolute_variance / plain.absolute_variance
    assert reduction == pytest.approx(1 - rho**2, abs=0.01)
    assert adjusted.relative_variance / plain.relative_variance == pytest.approx(1 - rho**2, abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_cuped_estimates__1000_simulated_experiments__empirical_variance_shrinks_and_ci_covers(rho):
    # Given 1,000 experiments with a true absolute effect of 0.2 and a covariate correlated at rho
    rng = seeded(40 + int(rho * 10))
    sims, n, effect = 1000, 500, 0.2
    y, x = correlated_normal(rng, (sims, 2, n), rho=rho)
    y[:, 1, :] += effect
    control = cuped_stats(y[:, 0], x[:, 0])
    treatment = cuped_stats(y[:, 1], x[:, 1])

    plain, adjusted, covered = [], [], 0
    for a, b in zip(control, treatment, strict=True):
        plain.append(effect_moments(a, b).absolute)
        result = frequentist_test(effect_moments(a, b, cuped=True)).absolute
        adjusted.append(result.estimate)
        covered += result.ci[0] <= effect <= result.ci[1]

    # Then the adjusted estimates are unbiased, vary 1 - rho^2 as much, and their CI covers ~95%
    assert np.mean(adjusted) == pytest.approx(effect, abs=0.01)
    assert np.var(adjusted) / np.var(plain) == pytest.approx(1 - rho**2, rel=0.12)
    assert 0.935 <= covered / sims <= 0.965, covered / sims


def test_cuped__constant_covariate__falls_back_to_unadjusted_analysis():
    # Given a pre-period with no variance (e.g. every unit is new): θ is 0, as in GrowthBook
    rng = seeded(8)
    y = rng.normal(10, 2, (2, 300))
    control, treatment = cuped_stats(y, np.zeros_like(y))
    adjusted = effect_moments(control, treatment, cuped=True)
    plain = effect_moments(control.post, treatment.post)
    assert adjusted.theta is None
    assert adjusted.relative == plain.relative
    assert adjusted.relative_variance == plain.relative_variance


def test_analyse_metric__cuped__reported_means_unadjusted_and_estimate_adjusted():
    rng = seeded(21)
    y, x = correlated_normal(rng, (2, 2000), rho=0.8)
    x[1] += 0.3  # chance imbalance in the pre-period that CUPED corrects for
    variants = [
        ("control", CupedStats.from_values(y[0], x[0])),
        ("treatment", CupedStats.from_values(y[1], x[1])),
    ]

    summary = summarise_variants(variants)
    comparison = analyse_metric(variants, AnalysisOptions(cuped=True))[0]

    assert [row["mean"] for row in summary] == pytest.approx([y[0].mean(), y[1].mean()], rel=1e-12)
    theta = np.polyfit(x.ravel(), y.ravel(), 1)[0]
    expected = (y[1].mean() - theta * x[1].mean()) - (y[0].mean() - theta * x[0].mean())
    assert comparison["absolute"]["estimate"] == pytest.approx(expected, rel=1e-9)
    assert comparison["relative"]["estimate"] == pytest.approx(expected / y[0].mean(), rel=1e-9)


def test_effect_moments__cuped_without_covariate_sums__raises_type_error():
    with pytest.raises(TypeError):
        effect_moments(SampleStats(10, 5, 5), SampleStats(10, 6, 6), cuped=True)
