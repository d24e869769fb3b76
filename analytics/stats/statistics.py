"""Per-variant sufficient statistics and the moments computed from them.

The ClickHouse roll-up reduces every unit of a variant to a handful of sums; everything the engine
needs (means, variances, covariances) is a function of those sums, so raw events never reach Python.

The formulas are those of GrowthBook's open-source engine (``gbstats/models/statistics.py``:
``SampleMeanStatistic``, ``ProportionStatistic``, ``RatioStatistic``, ``compute_covariance``;
``gbstats/utils.py``: ``variance_of_ratios``), so the same sums give the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analytics.stats.quantile import QuantileStats


@dataclass(frozen=True)
class SampleStats:
    """Sums of a plain metric over the units of one variant.

    ``binomial`` metrics are the same sums over 0/1 values (so ``sum_squares == sum``).
    """

    n: int
    sum: float
    sum_squares: float

    @classmethod
    def from_values(cls, values: Sequence[float] | np.ndarray) -> SampleStats:
        """Sums of one value per unit (a convenience for tests, demos and notebooks)."""
        y = np.asarray(values, dtype=float)
        return cls(n=int(y.size), sum=float(y.sum()), sum_squares=float((y * y).sum()))


@dataclass(frozen=True)
class CupedStats:
    """Sums of a metric ``y`` and of its pre-exposure covariate ``x`` (CUPED).

    ``sum_products`` is Σ y·x over the units of the variant.
    """

    n: int
    sum: float
    sum_squares: float
    pre_sum: float
    pre_sum_squares: float
    sum_products: float

    @property
    def post(self) -> SampleStats:
        return SampleStats(n=self.n, sum=self.sum, sum_squares=self.sum_squares)

    @property
    def pre(self) -> SampleStats:
        return SampleStats(n=self.n, sum=self.pre_sum, sum_squares=self.pre_sum_squares)

    @classmethod
    def from_values(
        cls, values: Sequence[float] | np.ndarray, pre_values: Sequence[float] | np.ndarray
    ) -> CupedStats:
        y = np.asarray(values, dtype=float)
        x = np.asarray(pre_values, dtype=float)
        return cls(
            n=int(y.size),
            sum=float(y.sum()),
            sum_squares=float((y * y).sum()),
            pre_sum=float(x.sum()),
            pre_sum_squares=float((x * x).sum()),
            sum_products=float((y * x).sum()),
        )


@dataclass(frozen=True)
class RatioStats:
    """Sums of a ratio metric's per-unit numerator ``m`` and denominator ``d``.

    The variant's ratio is Σm / Σd; ``md_sum_products`` is Σ m·d.
    """

    n: int
    m_sum: float
    m_sum_squares: float
    d_sum: float
    d_sum_squares: float
    md_sum_products: float

    @property
    def numerator(self) -> SampleStats:
        return SampleStats(n=self.n, sum=self.m_sum, sum_squares=self.m_sum_squares)

    @property
    def denominator(self) -> SampleStats:
        return SampleStats(n=self.n, sum=self.d_sum, sum_squares=self.d_sum_squares)

    @classmethod
    def from_values(
        cls, numerators: Sequence[float] | np.ndarray, denominators: Sequence[float] | np.ndarray
    ) -> RatioStats:
        m = np.asarray(numerators, dtype=float)
        d = np.asarray(denominators, dtype=float)
        return cls(
            n=int(m.size),
            m_sum=float(m.sum()),
            m_sum_squares=float((m * m).sum()),
            d_sum=float(d.sum()),
            d_sum_squares=float((d * d).sum()),
            md_sum_products=float((m * d).sum()),
        )


@dataclass(frozen=True)
class RatioCupedStats(RatioStats):
    """Ratio sums plus the pre-exposure numerator and denominator and all their cross products.

    Mirrors GrowthBook's ``RegressionAdjustedRatioStatistic``: ``m_pre``/``d_pre`` are the same
    numerator and denominator measured over the CUPED look-back window.
    """

    m_pre_sum: float = 0.0
    m_pre_sum_squares: float = 0.0
    d_pre_sum: float = 0.0
    d_pre_sum_squares: float = 0.0
    m_post_m_pre_sum_products: float = 0.0
    d_post_d_pre_sum_products: float = 0.0
    m_pre_d_pre_sum_products: float = 0.0
    m_post_d_pre_sum_products: float = 0.0
    m_pre_d_post_sum_products: float = 0.0

    @classmethod
    def from_values(  # type: ignore[override]
        cls,
        numerators: Sequence[float] | np.ndarray,
        denominators: Sequence[float] | np.ndarray,
        pre_numerators: Sequence[float] | np.ndarray = (),
        pre_denominators: Sequence[float] | np.ndarray = (),
    ) -> RatioCupedStats:
        m = np.asarray(numerators, dtype=float)
        d = np.asarray(denominators, dtype=float)
        mp = np.asarray(pre_numerators, dtype=float)
        dp = np.asarray(pre_denominators, dtype=float)
        return cls(
            n=int(m.size),
            m_sum=float(m.sum()),
            m_sum_squares=float((m * m).sum()),
            d_sum=float(d.sum()),
            d_sum_squares=float((d * d).sum()),
            md_sum_products=float((m * d).sum()),
            m_pre_sum=float(mp.sum()),
            m_pre_sum_squares=float((mp * mp).sum()),
            d_pre_sum=float(dp.sum()),
            d_pre_sum_squares=float((dp * dp).sum()),
            m_post_m_pre_sum_products=float((m * mp).sum()),
            d_post_d_pre_sum_products=float((d * dp).sum()),
            m_pre_d_pre_sum_products=float((mp * dp).sum()),
            m_post_d_pre_sum_products=float((m * dp).sum()),
            m_pre_d_post_sum_products=float((mp * d).sum()),
        )


MetricStats = SampleStats | CupedStats | RatioStats | RatioCupedStats | QuantileStats


def mean(n: int, total: float) -> float:
    """Σy / n; 0 for an empty variant (as GrowthBook does)."""
    return total / n if n > 0 else 0.0


def sample_variance(n: int, total: float, sum_squares: float) -> float:
    """Unbiased sample variance from sums: (Σy² − (Σy)²/n) / (n − 1); 0 when n ≤ 1.

    Source: gbstats ``SampleMeanStatistic.variance``. For 0/1 values this equals
    p(1 − p)·n/(n − 1), i.e. the proportion variance with Bessel's correction.
    """
    if n <= 1:
        return 0.0
    return (sum_squares - total * total / n) / (n - 1)


def proportion_variance(n: int, total: float) -> float:
    """p(1 − p) with p = Σy / n: the variance GrowthBook uses for binomial metrics.

    Source: gbstats ``ProportionStatistic.variance`` (population variance, no Bessel correction).
    """
    p = mean(n, total)
    return p * (1.0 - p)


def variance(stats: SampleStats, *, binomial: bool = False) -> float:
    """Per-unit variance of a plain metric: p(1 − p) for binomial metrics, else the sample variance."""
    if binomial:
        return proportion_variance(stats.n, stats.sum)
    return sample_variance(stats.n, stats.sum, stats.sum_squares)


def covariance(n: int, sum_a: float, sum_b: float, sum_products: float, *, binomial: bool = False) -> float:
    """Per-unit covariance of two quantities measured on the same units.

    Source: gbstats ``compute_covariance``: Σab/n − ΣaΣb/n² when both are proportions (matching
    the population variance p(1 − p)), otherwise (Σab − ΣaΣb/n) / (n − 1). 0 when n ≤ 1.
    """
    if n <= 1:
        return 0.0
    if binomial:
        return sum_products / n - sum_a * sum_b / (n * n)
    return (sum_products - sum_a * sum_b / n) / (n - 1)


def variance_of_ratio(mean_m: float, var_m: float, mean_d: float, var_d: float, cov_md: float) -> float:
    """Delta-method variance of M / D for random variables M, D.

    Var(M/D) ≈ Var(M)/μ_D² + Var(D)·μ_M²/μ_D⁴ − 2·Cov(M, D)·μ_M/μ_D³
    Source: gbstats ``utils.variance_of_ratios``.
    """
    return var_m / mean_d**2 + var_d * mean_m**2 / mean_d**4 - 2.0 * cov_md * mean_m / mean_d**3


def ratio_mean(stats: RatioStats) -> float:
    """The variant's ratio Σm / Σd (0 when Σd = 0, as GrowthBook does)."""
    return stats.m_sum / stats.d_sum if stats.d_sum != 0 else 0.0


def ratio_variance(stats: RatioStats) -> float:
    """Per-unit delta-method variance of the ratio (gbstats ``RatioStatistic.variance``).

    Divided by n it is the variance of Σm/Σd. 0 when n ≤ 1 or the mean denominator is 0.
    """
    mean_d = mean(stats.n, stats.d_sum)
    if stats.n <= 1 or mean_d == 0:
        return 0.0
    return variance_of_ratio(
        mean(stats.n, stats.m_sum),
        sample_variance(stats.n, stats.m_sum, stats.m_sum_squares),
        mean_d,
        sample_variance(stats.n, stats.d_sum, stats.d_sum_squares),
        covariance(stats.n, stats.m_sum, stats.d_sum, stats.md_sum_products),
    )


def unadjusted_mean(stats: MetricStats) -> float | None:
    """The mean reported for a variant (never CUPED-adjusted): Σy/n, or Σm/Σd for ratios.

    None when it is undefined (no units, or a ratio whose denominator sums to 0). For a quantile
    metric: the variant's quantile (None without observations).
    """
    if isinstance(stats, QuantileStats):
        return stats.estimate if stats.n > 0 else None
    if isinstance(stats, RatioStats):
        return stats.m_sum / stats.d_sum if stats.d_sum != 0 else None
    return stats.sum / stats.n if stats.n > 0 else None
