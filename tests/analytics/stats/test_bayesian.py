"""Bayesian engine against Monte Carlo, the one-sided t-test, numerical integration and conjugacy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as scipy_stats

from analytics.stats import (
    GaussianPrior,
    SampleStats,
    bayesian_test,
    chance_to_win,
    effect_moments,
    expected_loss,
)
from tests.analytics.stats.simulation import seeded


def _datasets() -> list:
    rng = seeded(2024)
    return [
        pytest.param(rng.normal(10, 3, 2000), rng.normal(10.15, 3, 2000), id="close_race"),
        pytest.param(rng.exponential(4, 5000), rng.exponential(4.3, 4000), id="skewed_clear_winner"),
        pytest.param(rng.normal(50, 20, 800), rng.normal(49, 25, 900), id="likely_loser"),
        pytest.param(
            rng.binomial(1, 0.2, 3000).astype(float), rng.binomial(1, 0.21, 3000).astype(float), id="binary"
        ),
    ]


@pytest.mark.parametrize(("control", "treatment"), _datasets())
def test_chance_to_win__flat_prior__matches_monte_carlo_of_posterior_means(control, treatment):
    # Given flat priors, each mean's posterior is N(sample mean, s²/n); draw both and compare
    rng = seeded(5)
    draws = 400_000
    mu_a = rng.normal(control.mean(), control.std(ddof=1) / np.sqrt(control.size), draws)
    mu_b = rng.normal(treatment.mean(), treatment.std(ddof=1) / np.sqrt(treatment.size), draws)
    lift = mu_b / mu_a - 1

    result = bayesian_test(
        effect_moments(SampleStats.from_values(control), SampleStats.from_values(treatment))
    )

    assert result.chance_to_win == pytest.approx(np.mean(lift > 0), abs=0.01)
    lo, hi = np.quantile(lift, [0.025, 0.975])
    width = hi - lo
    assert result.relative.ci[0] == pytest.approx(lo, abs=0.03 * width)
    assert result.relative.ci[1] == pytest.approx(hi, abs=0.03 * width)


@pytest.mark.parametrize(("control", "treatment"), _datasets())
def test_chance_to_win__flat_prior__equals_one_minus_one_sided_p_value(control, treatment):
    one_sided = scipy_stats.ttest_ind(treatment, control, equal_var=False, alternative="greater").pvalue
    result = bayesian_test(
        effect_moments(SampleStats.from_values(control), SampleStats.from_values(treatment))
    )
    assert result.chance_to_win == pytest.approx(1 - one_sided, abs=0.01)


@pytest.mark.parametrize("prior", [None, GaussianPrior(0.0, 0.01**2), GaussianPrior(0.05, 0.1**2)])
@pytest.mark.parametrize(("control", "treatment"), _datasets())
def test_absolute_interval__any_prior__normal_interval_on_difference_of_means(control, treatment, prior):
    # CONTRACT: the Bayesian absolute interval is the normal interval on the difference of means; a
    # prior (on the relative lift) shrinks the relative posterior only
    result = bayesian_test(
        effect_moments(SampleStats.from_values(control), SampleStats.from_values(treatment)), prior=prior
    )
    diff = treatment.mean() - control.mean()
    se = np.sqrt(control.var(ddof=1) / control.size + treatment.var(ddof=1) / treatment.size)
    z = scipy_stats.norm.ppf(0.975)
    assert result.absolute.mean == pytest.approx(diff, rel=1e-9, abs=1e-12)
    assert result.absolute.ci == pytest.approx((diff - z * se, diff + z * se), rel=1e-9)


def _integrated_losses(mean: float, std: float) -> tuple[float, float]:
    """∫ max(x, 0) and ∫ max(−x, 0) against the N(mean, std²) density, by adaptive quadrature."""
    density = scipy_stats.norm(mean, std).pdf
    lo, hi = min(mean - 40 * std, 0.0), max(mean + 40 * std, 0.0)

    def integral(f, a: float, b: float) -> float:
        inner = [p for p in (mean,) if a < p < b]
        return integrate.quad(f, a, b, points=inner or None, limit=200, epsabs=0, epsrel=1e-12)[0]

    return integral(lambda x: x * density(x), 0.0, hi), integral(lambda x: -x * density(x), lo, 0.0)


@pytest.mark.parametrize(
    ("mean", "std"),
    [(0.0, 0.05), (0.02, 0.01), (-0.03, 0.02), (0.5, 0.1), (-0.001, 0.2), (0.1, 0.01)],
)
def test_expected_loss__posterior_normal__equals_numerical_integration(mean, std):
    keep_baseline, ship_variant = _integrated_losses(mean, std)
    risk = expected_loss(mean, std)
    assert risk[0] == pytest.approx(keep_baseline, rel=1e-7, abs=1e-14)
    assert risk[1] == pytest.approx(ship_variant, rel=1e-7, abs=1e-14)


@pytest.mark.parametrize(("control", "treatment"), _datasets())
def test_bayesian_risk__engine_posterior__equals_numerical_integration(control, treatment):
    result = bayesian_test(
        effect_moments(SampleStats.from_values(control), SampleStats.from_values(treatment))
    )
    expected = _integrated_losses(result.relative.mean, result.relative.std)
    assert result.risk == pytest.approx(expected, rel=1e-7, abs=1e-14)


@pytest.mark.parametrize(
    ("prior_mean", "prior_variance"), [(0.0, 0.3**2), (0.05, 0.01**2), (-0.1, 0.5), (0.0, 1e-6)]
)
def test_posterior__proper_prior__conjugate_normal_update(prior_mean, prior_variance):
    rng = seeded(9)
    control, treatment = (
        SampleStats.from_values(rng.normal(10, 3, 600)),
        SampleStats.from_values(rng.normal(10.3, 3, 600)),
    )
    moments = effect_moments(control, treatment)
    flat = bayesian_test(moments).relative

    result = bayesian_test(moments, prior=GaussianPrior(prior_mean, prior_variance)).relative

    # Textbook conjugate normal: precisions add, the mean is the precision-weighted average
    data_precision, prior_precision = 1 / flat.std**2, 1 / prior_variance
    expected_mean = (flat.mean * data_precision + prior_mean * prior_precision) / (
        data_precision + prior_precision
    )
    assert result.mean == pytest.approx(expected_mean, rel=1e-9)
    assert result.std == pytest.approx((data_precision + prior_precision) ** -0.5, rel=1e-9)
    assert abs(result.mean - prior_mean) <= abs(flat.mean - prior_mean) + 1e-15  # shrunk towards the prior


def test_posterior__very_wide_prior__same_as_flat_prior():
    moments = effect_moments(SampleStats(1000, 10_000, 110_000), SampleStats(1000, 10_300, 117_000))
    flat = bayesian_test(moments)
    wide = bayesian_test(moments, prior=GaussianPrior(0.0, 1e12))
    assert wide.chance_to_win == pytest.approx(flat.chance_to_win, rel=1e-9)
    assert wide.relative.ci == pytest.approx(flat.relative.ci, rel=1e-9)


@pytest.mark.parametrize(("mean", "std"), [(0.03, 0.02), (-0.01, 0.05), (0.0, 0.1)])
def test_chance_to_win__lower_is_better__complement_and_risk_swapped(mean, std):
    assert chance_to_win(mean, std, higher_is_better=False) == pytest.approx(
        1 - chance_to_win(mean, std, higher_is_better=True), abs=1e-15
    )
    up = expected_loss(mean, std, higher_is_better=True)
    down = expected_loss(mean, std, higher_is_better=False)
    assert down == (up[1], up[0])


def test_gaussian_prior__non_positive_variance__raises_value_error():
    with pytest.raises(ValueError):
        GaussianPrior(0.0, 0.0)
