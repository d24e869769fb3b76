"""Frequentist engine against scipy, GrowthBook's published worked examples and simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from analytics.stats import CupedStats, SampleStats, effect_moments, frequentist_test
from tests.analytics.stats.simulation import sample_stats, seeded


def _datasets() -> list:
    rng = seeded(20240601)
    binary = rng.binomial(1, 0.1, 4000).astype(float), rng.binomial(1, 0.12, 3800).astype(float)
    return [
        pytest.param(rng.normal(10.0, 2.0, 500), rng.normal(10.3, 3.0, 500), id="normal_equal_n"),
        pytest.param(rng.exponential(5.0, 200), rng.exponential(5.6, 3000), id="skewed_unequal_n"),
        pytest.param(rng.normal(1.0, 1.0, 5), rng.normal(2.0, 1.5, 7), id="small_n"),
        pytest.param(*binary, id="binary_values"),
        pytest.param(rng.normal(-3.0, 4.0, 800), rng.normal(-2.5, 1.0, 900), id="negative_means"),
    ]


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.01])
@pytest.mark.parametrize(("control", "treatment"), _datasets())
def test_absolute_ttest__sums_of_raw_data__matches_scipy_welch(control, treatment, alpha):
    # Given the sums the roll-up would make from the same raw values
    moments = effect_moments(SampleStats.from_values(control), SampleStats.from_values(treatment))

    # When the engine runs its absolute test
    result = frequentist_test(moments, alpha=alpha).absolute

    # Then it is scipy's Welch test of the same data
    reference = scipy_stats.ttest_ind(treatment, control, equal_var=False)
    ci = reference.confidence_interval(confidence_level=1 - alpha)
    assert result.estimate == pytest.approx(treatment.mean() - control.mean(), rel=1e-9, abs=1e-12)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-7)
    assert result.ci[0] == pytest.approx(ci.low, rel=1e-7)
    assert result.ci[1] == pytest.approx(ci.high, rel=1e-7)
    assert moments.dof == pytest.approx(reference.df, rel=1e-9)


# GrowthBook's own unit tests (packages/stats/tests/frequentist/test_tests.py), rounded to 5 decimals
# there: the same summary statistics must give the same numbers.
GROWTHBOOK_CASES = [
    pytest.param(
        SampleStats(3407, 1396.87, 52377.9767),
        SampleStats(3461, 2422.7, 134698.29),
        {},
        "relative",
        (0.70732, -0.03526, 1.44989, 0.37879, 0.06191),
        id="two_sided_relative",
    ),
    pytest.param(
        SampleStats(3407, 1396.87, 52377.9767),
        SampleStats(3461, 2422.7, 134698.29),
        {},
        "absolute",
        (0.29, 0.04538, 0.53462, 0.12478, 0.02016),
        id="two_sided_absolute",
    ),
    pytest.param(
        SampleStats(28, 14, 14),
        SampleStats(30, 16, 16),
        {"binomial": True},
        "relative",
        (0.06667, -0.47767, 0.61101, 0.2717, 0.80707),
        id="binomial_relative",
    ),
    pytest.param(
        SampleStats(3000, 1396.87, 52377.9767),
        SampleStats(3461, 2422.7, 134698.29),
        {"sequential": True, "sequential_tuning": 1000},
        "relative",
        (0.50336, -0.55844, 1.56516, 0.33341, 1.0),
        id="sequential_tuning_1000",
    ),
    pytest.param(
        SampleStats(3000, 1396, 1396),
        SampleStats(3461, 2422, 2422),
        {"binomial": True, "sequential": True},
        "relative",
        (0.50386, 0.40098, 0.60675, 0.03386, 0.0),
        id="sequential_binomial",
    ),
    pytest.param(
        CupedStats(3000, 1396.87, 52377.9767, 16.87, 527.9767, 1),
        CupedStats(3461, 2422.7, 134698.29, 22.7, 1348.29, 1),
        {"cuped": True, "sequential": True},
        "relative",
        (0.50338, -0.50969, 1.51646, 0.33341, 1.0),
        id="sequential_cuped",
    ),
]


@pytest.mark.parametrize(("control", "treatment", "options", "scale", "expected"), GROWTHBOOK_CASES)
def test_frequentist_test__growthbook_worked_examples__same_numbers(
    control, treatment, options, scale, expected
):
    options = dict(options)
    binomial = options.pop("binomial", False)
    cuped = options.pop("cuped", False)
    result = frequentist_test(effect_moments(control, treatment, binomial=binomial, cuped=cuped), **options)
    interval = result.relative if scale == "relative" else result.absolute
    estimate, lo, hi, std_error, p_value = expected
    assert round(interval.estimate, 5) == pytest.approx(estimate, abs=1e-12)
    assert round(interval.ci[0], 5) == pytest.approx(lo, abs=1e-12)
    assert round(interval.ci[1], 5) == pytest.approx(hi, abs=1e-12)
    assert round(interval.std_error, 5) == pytest.approx(std_error, abs=1e-12)
    assert round(interval.p_value, 5) == pytest.approx(p_value, abs=1e-12)


@pytest.mark.slow
def test_relative_ci__2000_simulated_experiments__covers_true_lift_95_percent():
    # Given 2,000 experiments on skewed (exponential) data with a true lift of +5%
    rng = seeded(7)
    sims, n, control_mean, lift = 2000, 1000, 4.0, 0.05
    control = sample_stats(rng.exponential(control_mean, (sims, n)))
    treatment = sample_stats(rng.exponential(control_mean * (1 + lift), (sims, n)))

    # When each is analysed
    covered = 0
    for a, b in zip(control, treatment, strict=True):
        lo, hi = frequentist_test(effect_moments(a, b)).relative.ci
        covered += lo <= lift <= hi

    # Then the delta-method CI covers the true lift 95% ± 1.5% of the time
    coverage = covered / sims
    assert 0.935 <= coverage <= 0.965, coverage


@pytest.mark.slow
def test_fixed_horizon_test__1000_aa_experiments__false_positive_rate_near_alpha():
    rng = seeded(11)
    sims, n = 1000, 1000
    control = sample_stats(rng.exponential(3.0, (sims, n)))
    treatment = sample_stats(rng.exponential(3.0, (sims, n)))

    false_positives = sum(
        frequentist_test(effect_moments(a, b)).relative.p_value < 0.05
        for a, b in zip(control, treatment, strict=True)
    )

    rate = false_positives / sims
    assert 0.035 <= rate <= 0.065, rate


def _peeking_rates(sims: int, looks: int, batch: int, seed: int) -> tuple[float, float]:
    """(naive, sequential) false positive rates of A/A experiments read at every look."""
    rng = seeded(seed)
    arms = []
    for _ in range(2):
        values = rng.normal(10.0, 3.0, (sims, looks, batch))
        arms.append((values.sum(-1).cumsum(-1), (values * values).sum(-1).cumsum(-1)))
    (sum_a, sq_a), (sum_b, sq_b) = arms
    naive = sequential = 0
    for i in range(sims):
        naive_hit = sequential_hit = False
        for look in range(looks):
            n = batch * (look + 1)
            moments = effect_moments(
                SampleStats(n, float(sum_a[i, look]), float(sq_a[i, look])),
                SampleStats(n, float(sum_b[i, look]), float(sq_b[i, look])),
            )
            naive_hit |= frequentist_test(moments).relative.p_value < 0.05
            sequential_hit |= frequentist_test(moments, sequential=True).relative.p_value < 0.05
        naive += naive_hit
        sequential += sequential_hit
    return naive / sims, sequential / sims


@pytest.mark.slow
def test_sequential_test__aa_experiments_with_10_interim_looks__false_positive_rate_at_most_alpha():
    # Given 1,000 A/A experiments read at 10 looks of 200 units per arm each
    naive, sequential = _peeking_rates(sims=1000, looks=10, batch=200, seed=5)

    # Then peeking inflates the naive test's false positives, and the confidence sequence does not
    assert naive > 0.05, naive
    assert sequential <= 0.05, sequential


def test_sequential_interval__same_data__wider_than_fixed_horizon():
    rng = seeded(3)
    moments = effect_moments(
        SampleStats.from_values(rng.normal(10, 2, 2000)), SampleStats.from_values(rng.normal(10.2, 2, 2000))
    )
    fixed = frequentist_test(moments).relative
    sequential = frequentist_test(moments, sequential=True).relative
    assert sequential.ci[0] < fixed.ci[0] < fixed.ci[1] < sequential.ci[1]
    assert sequential.p_value >= fixed.p_value


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_sequential_p_value__random_experiments__below_alpha_exactly_when_sequence_excludes_zero(alpha):
    rng = seeded(17)
    for _ in range(300):
        n_a, n_b = rng.integers(50, 20000, 2)
        lift = rng.normal(0, 0.05)
        moments = effect_moments(
            SampleStats.from_values(rng.normal(10, 3, n_a)),
            SampleStats.from_values(rng.normal(10 * (1 + lift), 3, n_b)),
        )
        interval = frequentist_test(moments, alpha=alpha, sequential=True).relative
        excludes_zero = interval.ci[0] > 0 or interval.ci[1] < 0
        assert (interval.p_value < alpha) == excludes_zero


def test_sequential_tuning__tuned_near_sample_size__narrowest_interval():
    # GrowthBook's published property: a tuning parameter near the final sample size does best.
    moments = effect_moments(SampleStats(3000, 1396.87, 52377.9767), SampleStats(3461, 2422.7, 134698.29))
    widths = {
        tuning: np.diff(frequentist_test(moments, sequential=True, sequential_tuning=tuning).relative.ci)[0]
        for tuning in (10, 6461, 10000)
    }
    assert widths[6461] < widths[10000] < widths[10]


@pytest.mark.parametrize(("alpha", "tuning"), [(0.0, 5000), (1.0, 5000), (0.05, 0), (0.05, -1)])
def test_frequentist_test__invalid_settings__raises_value_error(alpha, tuning):
    moments = effect_moments(SampleStats(100, 50, 80), SampleStats(100, 55, 90))
    with pytest.raises(ValueError):
        frequentist_test(moments, alpha=alpha, sequential=True, sequential_tuning=tuning)
