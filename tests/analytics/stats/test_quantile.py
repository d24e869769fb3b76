"""Quantile metrics: GrowthBook's engine on the same summaries, the order statistics, simulations."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from analytics.stats import AnalysisOptions, GaussianPrior, compare, summarise_variants
from analytics.stats.quantile import (
    N_STAR_GRID,
    QuantileClusteredStats,
    QuantileStats,
    bound_levels,
    grid_levels,
    order_statistic_rank,
    quantile_clustered_stats_from_units,
    quantile_stats_from_values,
    quantile_variance,
    select_bounds,
)
from tests.analytics.stats.simulation import seeded

# ../shared/oracles/gbstats beside the checkout (a worktree sits one level deeper: wt/<name>)
_ROOT = Path(__file__).resolve().parents[3]
GBSTATS = next(
    (p for p in (_ROOT.parent / "shared/oracles/gbstats", _ROOT.parent.parent / "shared/oracles/gbstats")
     if p.is_dir()),
    _ROOT.parent / "shared/oracles/gbstats",
)  # fmt: skip


def _gbstats():
    """GrowthBook's engine (tests only); skips with the reason when the oracle is not on this machine."""
    if not (GBSTATS / "gbstats").is_dir():
        pytest.skip(f"GrowthBook's engine (the oracle) is not at {GBSTATS}")
    pytest.importorskip("pydantic", reason="gbstats needs pydantic (pip install -e '.[dev]')")
    if str(GBSTATS) not in sys.path:
        sys.path.insert(0, str(GBSTATS))
    from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig, GaussianPrior
    from gbstats.frequentist.tests import (
        FrequentistConfig,
        SequentialConfig,
        SequentialTwoSidedTTest,
        TwoSidedTTest,
    )
    from gbstats.models import statistics

    return {
        "QuantileStatistic": statistics.QuantileStatistic,
        "QuantileClusteredStatistic": statistics.QuantileClusteredStatistic,
        "TwoSidedTTest": TwoSidedTTest,
        "FrequentistConfig": FrequentistConfig,
        "SequentialTwoSidedTTest": SequentialTwoSidedTTest,
        "SequentialConfig": SequentialConfig,
        "EffectBayesianABTest": EffectBayesianABTest,
        "EffectBayesianConfig": EffectBayesianConfig,
        "GaussianPrior": GaussianPrior,
    }


def _to_gbstats(gb, stats: QuantileStats):
    common = dict(
        n=stats.n,
        n_star=stats.n_star,
        nu=stats.level,
        quantile_hat=stats.estimate,
        quantile_lower=stats.lower,
        quantile_upper=stats.upper,
    )
    if isinstance(stats, QuantileClusteredStats):
        return gb["QuantileClusteredStatistic"](
            **common,
            main_sum=stats.main_sum,
            main_sum_squares=stats.main_sum_squares,
            denominator_sum=stats.denominator_sum,
            denominator_sum_squares=stats.denominator_sum_squares,
            main_denominator_sum_product=stats.main_denominator_sum_product,
            n_clusters=stats.units,
        )
    return gb["QuantileStatistic"](**common)


def _unit_scope(seed: int, level: float, n: int = 3000, shift: float = 1.05):
    rng = seeded(seed)
    control = quantile_stats_from_values(rng.lognormal(3.0, 1.0, n), level)
    treatment = quantile_stats_from_values(shift * rng.lognormal(3.0, 1.0, n), level)
    return control, treatment


def _units_events(rng: np.random.Generator, units: int, scale: float) -> list[list[float]]:
    """Each unit's page-load times: a unit effect (slow devices) times event noise; some units have none."""
    counts = rng.poisson(3.0, units)
    device = rng.lognormal(0.0, 0.5, units)
    return [list(scale * device[i] * rng.lognormal(5.0, 0.6, counts[i])) for i in range(units)]


def _event_scope(seed: int, level: float, units: int = 1500, shift: float = 1.04):
    rng = seeded(seed)
    control = quantile_clustered_stats_from_units(_units_events(rng, units, 1.0), level)
    treatment = quantile_clustered_stats_from_units(_units_events(rng, units, shift), level)
    return control, treatment


def _close(ours: float | None, theirs: float) -> None:
    assert ours is not None
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-300), (ours, theirs)


SCOPES = {"unit": _unit_scope, "event": _event_scope}


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("level", [0.5, 0.9, 0.99])
def test_quantile_frequentist__same_summaries__agree_with_gbstats(scope, level):
    gb = _gbstats()
    control, treatment = SCOPES[scope](11, level)
    pair = [(_to_gbstats(gb, control), _to_gbstats(gb, treatment))]

    ours = compare(("control", control), ("treatment", treatment), AnalysisOptions())

    relative = gb["TwoSidedTTest"](pair, gb["FrequentistConfig"](difference_type="relative")).compute_result()
    absolute = gb["TwoSidedTTest"](pair, gb["FrequentistConfig"](difference_type="absolute")).compute_result()
    assert relative.errorMessage is None and ours["error"] is None
    _close(ours["relative"]["estimate"], relative.expected)
    _close(ours["relative"]["ci"][0], relative.ci[0])
    _close(ours["relative"]["ci"][1], relative.ci[1])
    _close(ours["p_value"], relative.pValue)
    _close(ours["absolute"]["estimate"], absolute.expected)
    _close(ours["absolute"]["ci"][0], absolute.ci[0])
    _close(ours["absolute"]["ci"][1], absolute.ci[1])


@pytest.mark.parametrize("scope", SCOPES)
def test_quantile_sequential__same_summaries__agree_with_gbstats(scope):
    gb = _gbstats()
    control, treatment = SCOPES[scope](12, 0.9)
    pair = [(_to_gbstats(gb, control), _to_gbstats(gb, treatment))]
    ours = compare(("control", control), ("treatment", treatment), AnalysisOptions(sequential=True))
    theirs = gb["SequentialTwoSidedTTest"](
        pair, gb["SequentialConfig"](sequential_tuning_parameter=5000)
    ).compute_result()
    _close(ours["relative"]["ci"][0], theirs.ci[0])
    _close(ours["relative"]["ci"][1], theirs.ci[1])
    _close(ours["p_value"], theirs.pValue)


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("higher_is_better", [True, False])
@pytest.mark.parametrize("prior", [None, GaussianPrior(mean=0.0, variance=0.3**2)])
def test_quantile_bayesian__same_summaries__agree_with_gbstats(scope, higher_is_better, prior):
    gb = _gbstats()
    control, treatment = SCOPES[scope](13, 0.9)
    pair = [(_to_gbstats(gb, control), _to_gbstats(gb, treatment))]
    options = AnalysisOptions(engine="bayesian", prior=prior, higher_is_better=higher_is_better)
    ours = compare(("control", control), ("treatment", treatment), options)

    gb_prior = gb["GaussianPrior"](
        mean=prior.mean if prior else 0.0, variance=prior.variance if prior else 1.0, proper=prior is not None
    )
    config = gb["EffectBayesianConfig"](inverse=not higher_is_better, prior_effect=gb_prior)
    theirs = gb["EffectBayesianABTest"](pair, config).compute_result()
    assert theirs.errorMessage is None
    _close(ours["chance_to_win"], theirs.chanceToWin)
    _close(ours["relative"]["estimate"], theirs.expected)
    _close(ours["relative"]["ci"][0], theirs.ci[0])
    _close(ours["relative"]["ci"][1], theirs.ci[1])
    _close(ours["risk"][0], theirs.risk[0])
    _close(ours["risk"][1], theirs.risk[1])


def test_quantile__negative_baseline__relative_over_its_magnitude_like_gbstats():
    # Given quantiles below 0 (net revenue after refunds) that rise from −10 to −9
    gb = _gbstats()
    control = QuantileStats(5000, 3200, 0.5, -10.0, -10.5, -9.5)
    treatment = QuantileStats(5000, 3200, 0.5, -9.0, -9.6, -8.4)
    theirs = gb["TwoSidedTTest"]([(_to_gbstats(gb, control), _to_gbstats(gb, treatment))]).compute_result()
    ours = compare(("control", control), ("treatment", treatment))
    # Then the lift is +10%, an improvement, as GrowthBook reports it
    _close(ours["relative"]["estimate"], theirs.expected)
    _close(ours["relative"]["ci"][0], theirs.ci[0])
    _close(ours["relative"]["ci"][1], theirs.ci[1])
    assert ours["relative"]["estimate"] == pytest.approx(0.1) and ours["direction"] == "improved"


@pytest.mark.parametrize(("n", "level"), [(3, 0.5), (30, 0.9), (300, 0.99), (200, 0.999), (200, 0.001)])
def test_quantile__too_few_observations__no_estimate_like_gbstats(n, level):
    gb = _gbstats()
    rng = seeded(14)
    control = quantile_stats_from_values(rng.normal(size=n) + 10, level)
    treatment = quantile_stats_from_values(rng.normal(size=n) + 10, level)
    gb_has_zero = _to_gbstats(gb, control)._has_zero_variance
    ours = compare(("control", control), ("treatment", treatment))
    assert (ours["error"] is not None) == gb_has_zero
    if gb_has_zero:
        assert ours["relative"]["estimate"] is None and ours["p_value"] is None


def test_quantile__bounds_in_a_run_of_ties__fall_back_to_a_smaller_n_star():
    # Given 10,000 values whose middle 300 (ranks 4851-5150) are all 5: at n* = 6400 the median's
    # bounds (ranks 4878 and 5123) are both 5
    values = [*np.linspace(0, 1, 4850), *[5.0] * 300, *np.linspace(10, 11, 4850)]
    assert [values[order_statistic_rank(10000, p) - 1] for p in bound_levels(0.5, 6400)] == [5.0, 5.0]
    stats = quantile_stats_from_values(values, 0.5)
    # Then the next smaller n* whose bounds differ is used, as GrowthBook's back-end does
    assert stats.n_star == 3200
    assert stats.lower < 5.0 < stats.upper


def test_quantile__bounds_tied_at_every_n_star__zero_variance():
    values = [0.0] * 9000 + list(np.linspace(1, 100, 1000))
    control = quantile_stats_from_values(values, 0.5)
    assert control.lower == control.upper == 0.0
    assert compare(("a", control), ("b", control))["error"] == "zero_variance"


def test_select_bounds__grid__largest_n_star_below_n():
    grid = [float(i) for i in range(2 * len(N_STAR_GRID))]
    assert select_bounds(50, grid) == (100, 0.0, 1.0)
    assert select_bounds(100, grid) == (100, 0.0, 1.0)
    assert select_bounds(101, grid) == (100, 0.0, 1.0)
    assert select_bounds(201, grid) == (200, 2.0, 3.0)
    assert select_bounds(10**9, grid) == (N_STAR_GRID[-1], 38.0, 39.0)


def test_order_statistics__match_numpy_inverted_cdf():
    rng = seeded(15)
    values = rng.exponential(size=1237)
    ordered = np.sort(values)
    for level in [0.01, 0.25, 0.5, 0.9, 0.99, *grid_levels(0.9)]:
        ours = ordered[order_statistic_rank(values.size, level) - 1]
        assert ours == np.quantile(values, level, method="inverted_cdf")


def test_bound_levels__normal_approximation_of_the_binomial():
    lower, upper = bound_levels(0.9, 400)
    half = 1.959963984540054 * math.sqrt(0.9 * 0.1 / 400)
    assert lower == pytest.approx(0.9 - half, rel=1e-12)
    assert upper == pytest.approx(0.9 + half, rel=1e-12)
    assert bound_levels(0.999, 100)[1] == 1 - 1e-8  # clamped


def test_summarise_variants__quantile__reports_quantile_stats_and_units():
    control, _ = _event_scope(16, 0.9, units=200)
    (block,) = summarise_variants([("control", control)])
    assert block["units"] == 200 and block["quantile_stats"]["n"] == control.n > 200
    assert block["mean"] == block["quantile_stats"]["estimate"] == control.estimate
    assert set(block["quantile_stats"]) == {"n", "n_star", "estimate", "lower", "upper"}


def test_event_scope__clustered_events__wider_than_independent():
    # Given events that cluster within units (a strong per-unit effect)
    control, _ = _event_scope(17, 0.9)
    independent = QuantileStats(
        control.n, control.n_star, control.level, control.estimate, control.lower, control.upper
    )
    assert quantile_variance(control) > quantile_variance(independent)


# --- simulations: order statistics computed by numpy exactly as the roll-up's SQL does --------------
def _summaries(samples: np.ndarray, level: float) -> list[QuantileStats]:
    """One summary per row, from the sorted rows (vectorised quantile_stats_from_values)."""
    ordered = np.sort(samples, axis=1)
    n = samples.shape[1]
    ranks = [order_statistic_rank(n, p) - 1 for p in grid_levels(level)]
    grids = ordered[:, ranks]
    estimates = ordered[:, order_statistic_rank(n, level) - 1]
    result = []
    for grid, estimate in zip(grids, estimates, strict=True):
        n_star, lower, upper = select_bounds(n, list(grid))
        result.append(QuantileStats(n, n_star, level, float(estimate), lower, upper))
    return result


@pytest.mark.slow
@pytest.mark.parametrize("level", [0.5, 0.9])
def test_quantile_aa__1000_experiments__false_positive_rate_near_alpha(level):
    rng = seeded(18 if level == 0.5 else 19)
    sims, n = 1000, 2000
    control = _summaries(rng.lognormal(3.0, 1.0, (sims, n)), level)
    treatment = _summaries(rng.lognormal(3.0, 1.0, (sims, n)), level)
    positives = sum(
        compare(("a", a), ("b", b))["p_value"] < 0.05 for a, b in zip(control, treatment, strict=True)
    )
    assert 0.035 <= positives / sims <= 0.065, positives / sims


@pytest.mark.slow
def test_quantile_ci__1000_experiments__covers_known_difference():
    # Given exponential values, treatment scaled by 1.1: the p90 moves from ln 10 to 1.1·ln 10
    rng = seeded(20)
    sims, n, level = 1000, 2000, 0.9
    truth = 0.1 * math.log(10.0)  # absolute difference of the true p90s
    control = _summaries(rng.exponential(1.0, (sims, n)), level)
    treatment = _summaries(1.1 * rng.exponential(1.0, (sims, n)), level)
    covered = 0
    for a, b in zip(control, treatment, strict=True):
        ci = compare(("a", a), ("b", b))["absolute"]["ci"]
        covered += ci[0] <= truth <= ci[1]
    assert abs(covered / sims - 0.95) <= 0.015, covered / sims
