"""Ratio metrics (delta method) against a bootstrap, simulation coverage and GrowthBook's example."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.stats import RatioCupedStats, RatioStats, effect_moments, frequentist_test
from analytics.stats.statistics import ratio_variance
from tests.analytics.stats.simulation import ratio_stats, seeded


def _sessions_and_clicks(rng: np.random.Generator, shape: tuple[int, ...], click_rate: float):
    """Per-unit denominators (sessions ≥ 1) and numerators (clicks per session)."""
    sessions = 1.0 + rng.poisson(2.0, shape)
    clicks = rng.binomial(sessions.astype(int), click_rate).astype(float)
    return clicks, sessions


def test_ratio_variance__delta_method__matches_bootstrap_of_units():
    # Given one variant's per-unit numerators and denominators
    rng = seeded(31)
    m, d = _sessions_and_clicks(rng, (3000,), 0.1)
    stats = RatioStats.from_values(m, d)

    # When the units are resampled 4,000 times
    idx = rng.integers(0, m.size, (4000, m.size))
    boot = m[idx].sum(axis=1) / d[idx].sum(axis=1)

    # Then the delta-method standard error of Σm/Σd is the bootstrap's
    assert np.sqrt(ratio_variance(stats) / stats.n) == pytest.approx(boot.std(ddof=1), rel=0.05)


@pytest.mark.slow
def test_ratio_ci__2000_simulated_experiments__covers_true_effects_95_percent():
    # Given 2,000 experiments with click-through 0.10 vs 0.105 per session (+5%)
    rng = seeded(32)
    sims, n, rate, lift = 2000, 800, 0.10, 0.05
    control = ratio_stats(*_sessions_and_clicks(rng, (sims, n), rate))
    treatment = ratio_stats(*_sessions_and_clicks(rng, (sims, n), rate * (1 + lift)))

    covered_relative = covered_absolute = 0
    for a, b in zip(control, treatment, strict=True):
        result = frequentist_test(effect_moments(a, b))
        covered_relative += result.relative.ci[0] <= lift <= result.relative.ci[1]
        covered_absolute += result.absolute.ci[0] <= rate * lift <= result.absolute.ci[1]

    assert 0.935 <= covered_relative / sims <= 0.965, covered_relative / sims
    assert 0.935 <= covered_absolute / sims <= 0.965, covered_absolute / sims


def _ratio_cuped_experiments(rng: np.random.Generator, sims: int, n: int, lift: float):
    """Units with a persistent click propensity seen both before and after exposure."""
    stats = []
    for arm_lift in (0.0, lift):
        propensity = 0.9 * rng.beta(1.0, 4.0, (sims, n))  # mean 0.18, varies a lot between units
        d_pre = 5.0 + rng.poisson(10.0, (sims, n))
        d = 5.0 + rng.poisson(10.0, (sims, n))
        m_pre = rng.binomial(d_pre.astype(int), propensity).astype(float)
        m = rng.binomial(d.astype(int), propensity * (1 + arm_lift)).astype(float)
        arm = [
            RatioCupedStats.from_values(m[i], d[i], m_pre[i], d_pre[i])  # small n: cheap enough
            for i in range(sims)
        ]
        stats.append(arm)
    return stats


@pytest.mark.slow
def test_ratio_cuped__simulated_experiments__covers_true_lift_with_smaller_variance():
    rng = seeded(33)
    lift = 0.05
    control, treatment = _ratio_cuped_experiments(rng, sims=1000, n=1000, lift=lift)

    covered, plain_estimates, adjusted_estimates = 0, [], []
    for a, b in zip(control, treatment, strict=True):
        adjusted = frequentist_test(effect_moments(a, b, cuped=True)).relative
        covered += adjusted.ci[0] <= lift <= adjusted.ci[1]
        adjusted_estimates.append(adjusted.estimate)
        plain_estimates.append(effect_moments(a, b).relative)

    assert 0.935 <= covered / len(control) <= 0.965, covered / len(control)
    assert np.var(adjusted_estimates) < 0.7 * np.var(plain_estimates)
    assert np.mean(adjusted_estimates) == pytest.approx(lift, abs=0.01)


# GrowthBook's unit test for ratio metrics with CUPED (gbstats test_tests.py,
# test_two_sided_ttest_test_runs_ratio_ra and test_sequential_test_runs_ratio_ra), 5 decimals.
GB_RATIO_CONTROL = RatioCupedStats(
    n=100,
    m_sum=485.112236689623,
    m_sum_squares=2715.484666118136,
    d_sum=679.9093275844917,
    d_sum_squares=4939.424001640236,
    md_sum_products=3602.146836776702,
    m_pre_sum=192.59138069991536,
    m_pre_sum_squares=460.076026390857,
    d_pre_sum=290.1398399750233,
    d_pre_sum_squares=920.9461385038898,
    m_post_m_pre_sum_products=1113.6215759318352,
    d_post_d_pre_sum_products=2130.9404074446747,
    m_pre_d_pre_sum_products=634.239482353647,
    m_post_d_pre_sum_products=1559.2878434944676,
    m_pre_d_post_sum_products=1460.3181079276983,
)
GB_RATIO_TREATMENT = RatioCupedStats(
    n=100,
    m_sum=514.7757826608777,
    m_sum_squares=2994.897482705013,
    d_sum=705.4090874383759,
    d_sum_squares=5291.36604146392,
    md_sum_products=3918.1561431600717,
    m_pre_sum=206.94157227402536,
    m_pre_sum_squares=514.2903702246757,
    d_pre_sum=302.54389139107326,
    d_pre_sum_squares=994.4506208125663,
    m_post_m_pre_sum_products=1237.0953021125997,
    d_post_d_pre_sum_products=2292.081739775257,
    m_pre_d_pre_sum_products=698.4173425817908,
    m_post_d_pre_sum_products=1701.0287270040265,
    m_pre_d_post_sum_products=1604.0759503266522,
)


@pytest.mark.parametrize(
    ("sequential", "expected"),
    [
        pytest.param(False, (-0.0007, -0.00841, 0.00700, 0.00391, 0.85771), id="fixed_horizon"),
        pytest.param(True, (-0.0007, -0.02063, 0.01923, 0.00391, 1.0), id="sequential"),
    ],
)
def test_ratio_cuped__growthbook_worked_example__same_numbers(sequential, expected):
    moments = effect_moments(GB_RATIO_CONTROL, GB_RATIO_TREATMENT, cuped=True)
    result = frequentist_test(moments, sequential=sequential).relative
    got = (result.estimate, result.ci[0], result.ci[1], result.std_error, result.p_value)
    assert [round(v, 5) for v in got] == pytest.approx(list(expected), abs=1e-12)


def test_ratio__zero_denominator_in_baseline__degenerate_not_raising():
    control = RatioStats(50, 0.0, 0.0, 0.0, 0.0, 0.0)
    treatment = RatioStats(50, 10.0, 12.0, 60.0, 80.0, 14.0)
    moments = effect_moments(control, treatment)
    assert moments.relative is None and moments.absolute is None
    assert moments.error == "zero_variance"
