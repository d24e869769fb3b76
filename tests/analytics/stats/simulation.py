"""Vectorised simulation helpers: many experiments at once, reduced to the sums the roll-up makes.

The engine is then fed those sums one experiment at a time (it is cheap); references (scipy,
statsmodels, closed forms) never go through the engine.
"""

from __future__ import annotations

import numpy as np

from analytics.stats import CupedStats, RatioStats, SampleStats


def seeded(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def sample_stats(values: np.ndarray) -> list[SampleStats]:
    """One SampleStats per row of a (experiments, units) array."""
    n = values.shape[-1]
    sums = values.sum(axis=-1)
    squares = (values * values).sum(axis=-1)
    return [SampleStats(n, float(s), float(q)) for s, q in zip(sums, squares, strict=True)]


def cuped_stats(y: np.ndarray, x: np.ndarray) -> list[CupedStats]:
    n = y.shape[-1]
    columns = (y.sum(-1), (y * y).sum(-1), x.sum(-1), (x * x).sum(-1), (x * y).sum(-1))
    return [CupedStats(n, *(float(c) for c in row)) for row in zip(*columns, strict=True)]


def ratio_stats(m: np.ndarray, d: np.ndarray) -> list[RatioStats]:
    n = m.shape[-1]
    columns = (m.sum(-1), (m * m).sum(-1), d.sum(-1), (d * d).sum(-1), (m * d).sum(-1))
    return [RatioStats(n, *(float(c) for c in row)) for row in zip(*columns, strict=True)]


def correlated_normal(
    rng: np.random.Generator, shape: tuple[int, ...], rho: float, mean: float = 10.0, sd: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) with Corr(y, x) = rho, both N(mean, sd²)."""
    x = rng.standard_normal(shape)
    noise = rng.standard_normal(shape)
    y = rho * x + np.sqrt(1.0 - rho**2) * noise
    return mean + sd * y, mean + sd * x


def normal_sample_stats(
    rng: np.random.Generator, sims: int, n: int, mean: float, sd: float
) -> list[SampleStats]:
    """Exact draws of the sums of n normal values, without drawing the values.

    For normal data the sample mean ~ N(mean, sd²/n) and (n − 1)s²/sd² ~ χ²(n − 1), independently;
    then Σy = n·ȳ and Σy² = (n − 1)s² + n·ȳ².
    """
    sample_mean = rng.normal(mean, sd / np.sqrt(n), sims)
    squared_deviations = sd**2 * rng.chisquare(n - 1, sims)
    sums = n * sample_mean
    squares = squared_deviations + n * sample_mean**2
    return [SampleStats(n, float(s), float(q)) for s, q in zip(sums, squares, strict=True)]


def binomial_sample_stats(rng: np.random.Generator, sims: int, n: int, rate: float) -> list[SampleStats]:
    successes = rng.binomial(n, rate, sims).astype(float)
    return [SampleStats(n, float(s), float(s)) for s in successes]
