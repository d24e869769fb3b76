"""Quantile metrics: the summary a variant's quantile is compared from, and its variance.

The method is GrowthBook's (docs "Quantile Testing"; engine ``gbstats/models/statistics.py``,
``QuantileStatistic`` and ``QuantileClusteredStatistic``), after Deng, Knoblich and Lu (KDD 2018) and
Yao, Li and Lu (2024, arXiv:2401.14549, Algorithm 1). For a variant with n observations (its units'
values for a ``unit`` quantile, its units' individual events for an ``event`` quantile) and the
quantile level ν:

1. the estimate is the order statistic Y₍ᵣ₎ at rank r(ν) = max(1, ⌈n·ν⌉) (the inverse of the
   empirical distribution function: an observed value, exact, no interpolation);
2. the bounds are the order statistics at the levels ν ± z·√(ν(1 − ν)/n*), z = Φ⁻¹(0.975), clamped
   to [10⁻⁸, 1 − 10⁻⁸]: the normal approximation of the binomial count of observations below the
   quantile. n* is the largest of 100·2ᵏ (k = 0…19) below n (100 when n ≤ 100), the grid GrowthBook's
   SQL computes all at once; when the pair at n* is one value (ties) the next smaller n* whose pair
   differs is used (GrowthBook's ``getQuantileBoundsFromQueryResponse``);
3. the per-observation variance is

       σ² = (n*/n)·(n − 1)·((Y_U − Y_L) / (2z))²,

   so the estimate's variance σ²/n = (n*/n)·((n − 1)/n)·((Y_U − Y_L)/(2z))²: the interval's width at
   n* rescaled to n (GrowthBook's docs page leaves out the (n − 1)/n factor; the engine has it).
   For n ≥ 100 it is floored at 10⁻⁵ (gbstats);
4. for an ``event`` quantile the events of one unit are correlated, so σ² is multiplied by the ratio
   of the clustered to the independent variance of the share of events at or below the estimate:

       σ²_cluster = σ² · Var_c(Ī) / (ν(1 − ν)/n),

   where Ī = Σᵢ Sᵢ / Σᵢ Nᵢ over the variant's K units, Sᵢ the unit's events at or below the estimate
   and Nᵢ its events, and Var_c(Ī) = [σ²_S − 2(S̄/N̄)σ_SN + (S̄/N̄)²σ²_N] / (K·N̄²) (the delta method
   for a ratio of means, K − 1 in the (co)variances). The docs page writes that ratio upside down;
   the engine's orientation (clustered over independent) is the one that widens the interval when
   events cluster, and is used here.

A variant's quantile cannot be estimated (``_has_zero_variance`` in gbstats) when
n ≤ z²·ν/(1 − ν) or n ≤ z²·(1 − ν)/ν (the bounds would fall outside the data) or when Y_U = Y_L at
every n* (a quantile inside a run of ties). The comparison itself is the engine's, on the estimate
and σ² like any mean: Welch t-test, confidence sequence or Gaussian posterior on the relative lift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import special

# The n* grid: GrowthBook's N_STAR_VALUES, 100·2^k for k = 0..19.
N_STAR_GRID: tuple[int, ...] = tuple(100 * 2**k for k in range(20))
# The bounds are always taken at the 95% level, whatever the experiment's alpha: they estimate the
# quantile's standard error, not an interval (gbstats uses the same constant in the variance).
BOUND_Z = float(special.ndtri(0.975))
LEVEL_FLOOR = 1e-8
VARIANCE_FLOOR = 1e-5  # gbstats QuantileStatistic.variance for n >= 100


@dataclass(frozen=True)
class QuantileStats:
    """One variant's quantile summary (the ``quantile_stats`` of the results document).

    ``n``: observations (units for a unit quantile, events for an event quantile); ``n_star``: the
    grid size the bounds were taken at; ``estimate``: the quantile; ``lower``/``upper``: the order
    statistics at the bound levels. ``level`` is the quantile level ν (e.g. 0.9).
    """

    n: int
    n_star: int
    level: float
    estimate: float
    lower: float
    upper: float


@dataclass(frozen=True)
class QuantileClusteredStats(QuantileStats):
    """An event quantile's summary plus the per-unit sums of the clustering adjustment.

    ``units``: the variant's units (K, every exposed unit, with or without events); ``main_*``: of
    Sᵢ, the unit's events at or below the estimate; ``denominator_*``: of Nᵢ, the unit's events.
    """

    units: int = 0
    main_sum: float = 0.0
    main_sum_squares: float = 0.0
    denominator_sum: float = 0.0
    denominator_sum_squares: float = 0.0
    main_denominator_sum_product: float = 0.0


def bound_levels(level: float, n_star: int) -> tuple[float, float]:
    """The quantile levels of the lower and upper bounds at grid size ``n_star``."""
    half = BOUND_Z * math.sqrt(level * (1.0 - level) / n_star)
    return max(level - half, LEVEL_FLOOR), min(level + half, 1.0 - LEVEL_FLOOR)


def grid_levels(level: float) -> list[float]:
    """[lower₁, upper₁, lower₂, upper₂, ...]: the bound levels at every n* of the grid, in order."""
    return [bound for n_star in N_STAR_GRID for bound in bound_levels(level, n_star)]


def order_statistic_rank(n: int, level: float) -> int:
    """The 1-based rank of the order statistic at ``level`` among ``n`` values: max(1, ⌈n·level⌉).

    n·level is computed in double precision (as ClickHouse computes it in the roll-up's SQL).
    """
    return min(n, max(1, math.ceil(n * level)))


def select_bounds(n: int, grid: Sequence[float]) -> tuple[int, float, float]:
    """(n*, lower, upper) from the grid's order statistics [lower₁, upper₁, ...] (see the docstring).

    The largest n* below n (the smallest n* when none is); when its pair is one value, the largest
    smaller n* whose pair differs; when none differs, the collapsed pair (its variance is 0).
    """
    if len(grid) != 2 * len(N_STAR_GRID):
        raise ValueError(f"A quantile grid has {2 * len(N_STAR_GRID)} values, not {len(grid)}.")
    chosen = 0
    for k, n_star in enumerate(N_STAR_GRID):
        if n_star < n:
            chosen = k
    lower, upper = grid[2 * chosen], grid[2 * chosen + 1]
    if lower == upper:
        for k in range(chosen - 1, -1, -1):
            if grid[2 * k] != grid[2 * k + 1]:
                chosen, lower, upper = k, grid[2 * k], grid[2 * k + 1]
                break
    return N_STAR_GRID[chosen], float(lower), float(upper)


def iid_variance(stats: QuantileStats) -> float:
    """σ² of independent observations, before any floor: (n*/n)·(n − 1)·((Y_U − Y_L)/(2z))²."""
    if stats.n <= 1:
        return 0.0
    width = (stats.upper - stats.lower) / (2.0 * BOUND_Z)
    return (stats.n_star / stats.n) * (stats.n - 1) * width * width


def clustered_share_variance(stats: QuantileClusteredStats) -> float:
    """Var_c(Ī): the variance of the share of events at or below the estimate, units as clusters."""
    k = stats.units
    mean_s = stats.main_sum / k
    mean_n = stats.denominator_sum / k
    correction = k / (k - 1)
    var_s = (stats.main_sum_squares / k - mean_s * mean_s) * correction
    var_n = (stats.denominator_sum_squares / k - mean_n * mean_n) * correction
    cov_sn = (stats.main_denominator_sum_product / k - mean_s * mean_n) * correction
    ratio = mean_s / mean_n
    return (var_s - 2.0 * ratio * cov_sn + ratio * ratio * var_n) / (k * mean_n * mean_n)


def initial_variance(stats: QuantileStats) -> float:
    """σ² (per observation) before the floor; clustered for event quantiles (gbstats ``variance_init``)."""
    if not isinstance(stats, QuantileClusteredStats):
        return iid_variance(stats)
    if stats.n <= 1 or stats.level == 0 or stats.units <= 1 or stats.denominator_sum <= 0:
        return 0.0
    independent_share_variance = stats.level * (1.0 - stats.level) / stats.n
    return iid_variance(stats) * clustered_share_variance(stats) / independent_share_variance


def quantile_variance(stats: QuantileStats) -> float:
    """The per-observation variance the engine divides by n: σ², floored at 10⁻⁵ from n = 100."""
    variance = initial_variance(stats)
    return variance if stats.n < 100 else max(variance, VARIANCE_FLOOR)


def too_few_observations(stats: QuantileStats) -> bool:
    """n ≤ z²·ν/(1 − ν) or n ≤ z²·(1 − ν)/ν: a bound would fall beyond the data."""
    nu, z2 = stats.level, BOUND_Z * BOUND_Z
    return stats.n <= z2 * nu / (1.0 - nu) or stats.n <= z2 * (1.0 - nu) / nu


def quantile_stats_from_values(values: Sequence[float], level: float) -> QuantileStats:
    """The summary of one variant's observations (for tests, simulations and notebooks).

    Sorts in Python; the roll-up computes the same order statistics in ClickHouse.
    """
    ordered = sorted(float(v) for v in values)
    n = len(ordered)
    if n == 0:
        return QuantileStats(n=0, n_star=0, level=level, estimate=0.0, lower=0.0, upper=0.0)
    grid = [ordered[order_statistic_rank(n, p) - 1] for p in grid_levels(level)]
    n_star, lower, upper = select_bounds(n, grid)
    estimate = ordered[order_statistic_rank(n, level) - 1]
    return QuantileStats(n=n, n_star=n_star, level=level, estimate=estimate, lower=lower, upper=upper)


def quantile_clustered_stats_from_units(
    units: Sequence[Sequence[float]], level: float
) -> QuantileClusteredStats:
    """An event quantile's summary from each unit's event values (units without events included)."""
    base = quantile_stats_from_values([v for unit in units for v in unit], level)
    below = [float(sum(1 for v in unit if v <= base.estimate)) for unit in units]
    counts = [float(len(unit)) for unit in units]
    return QuantileClusteredStats(
        n=base.n,
        n_star=base.n_star,
        level=level,
        estimate=base.estimate,
        lower=base.lower,
        upper=base.upper,
        units=len(units),
        main_sum=sum(below),
        main_sum_squares=sum(s * s for s in below),
        denominator_sum=sum(counts),
        denominator_sum_squares=sum(c * c for c in counts),
        main_denominator_sum_product=sum(s * c for s, c in zip(below, counts, strict=True)),
    )
