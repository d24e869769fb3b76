"""Moments from sufficient statistics against numpy computed on the raw values."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.stats import CupedStats, RatioStats, SampleStats
from analytics.stats.statistics import (
    covariance,
    proportion_variance,
    sample_variance,
    unadjusted_mean,
    variance,
)
from tests.analytics.stats.simulation import seeded

RNG = seeded(99)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(RNG.normal(50, 7, 1000), id="normal"),
        pytest.param(RNG.exponential(2, 37), id="skewed_small"),
        pytest.param(RNG.poisson(3, 5000).astype(float), id="counts"),
        pytest.param(np.array([1.0, 2.0]), id="two_units"),
    ],
)
def test_sample_variance__sums__equals_numpy_unbiased_variance(values):
    stats = SampleStats.from_values(values)
    assert variance(stats) == pytest.approx(np.var(values, ddof=1), rel=1e-9)
    assert stats.sum / stats.n == pytest.approx(values.mean(), rel=1e-12)


@pytest.mark.parametrize("rate", [0.01, 0.3, 0.5, 0.97])
def test_binomial_variance__zero_one_values__growthbook_and_sample_formulas_agree(rate):
    # Given 0/1 values (a binomial metric), whose sum of squares is their sum
    values = RNG.binomial(1, rate, 2500).astype(float)
    stats = SampleStats.from_values(values)
    assert stats.sum_squares == stats.sum
    p = values.mean()

    # Then GrowthBook's proportion variance is p(1 - p), the population variance of the values,
    assert variance(stats, binomial=True) == pytest.approx(p * (1 - p), rel=1e-12)
    assert proportion_variance(stats.n, stats.sum) == pytest.approx(np.var(values, ddof=0), rel=1e-9)
    # and the sample-variance formula is the same number with Bessel's correction
    assert variance(stats) == pytest.approx(p * (1 - p) * stats.n / (stats.n - 1), rel=1e-9)


@pytest.mark.parametrize("binomial", [False, True])
def test_covariance__sums_of_products__equals_numpy_covariance(binomial):
    if binomial:
        x = RNG.binomial(1, 0.4, 3000).astype(float)
        y = np.where(RNG.random(3000) < 0.7, x, 1 - x)
    else:
        x = RNG.normal(0, 1, 3000)
        y = 2 * x + RNG.normal(0, 1, 3000)
    stats = CupedStats.from_values(y, x)
    expected = np.cov(y, x, ddof=0 if binomial else 1)[0, 1]
    got = covariance(stats.n, stats.sum, stats.pre_sum, stats.sum_products, binomial=binomial)
    assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("stats", "expected_variance"),
    [
        pytest.param(SampleStats(0, 0.0, 0.0), 0.0, id="empty"),
        pytest.param(SampleStats(1, 5.0, 25.0), 0.0, id="one_unit"),
    ],
)
def test_sample_variance__fewer_than_two_units__zero(stats, expected_variance):
    assert sample_variance(stats.n, stats.sum, stats.sum_squares) == expected_variance


@pytest.mark.parametrize(
    ("stats", "expected"),
    [
        pytest.param(SampleStats(4, 10.0, 30.0), 2.5, id="plain"),
        pytest.param(SampleStats(0, 0.0, 0.0), None, id="empty"),
        pytest.param(CupedStats(2, 3.0, 5.0, 100.0, 5000.0, 150.0), 1.5, id="cuped_is_unadjusted"),
        pytest.param(RatioStats(3, 6.0, 14.0, 12.0, 50.0, 26.0), 0.5, id="ratio_of_sums"),
        pytest.param(RatioStats(3, 6.0, 14.0, 0.0, 0.0, 0.0), None, id="ratio_zero_denominator"),
    ],
)
def test_unadjusted_mean__stats__reported_mean_or_none(stats, expected):
    assert unadjusted_mean(stats) == expected
