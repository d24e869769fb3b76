"""Multiple-testing corrections of p-values (Holm–Bonferroni, Benjamini–Hochberg).

The results apply them across all primary and secondary comparisons of an experiment, per its
``correction`` setting; guardrails keep their raw p-values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Correction = Literal["none", "holm", "bh"]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni step-down adjusted p-values (controls the family-wise error rate).

    With p₍₁₎ ≤ … ≤ p₍ₘ₎: p̃₍ᵢ₎ = max_{j ≤ i} min(1, (m − j + 1)·p₍ⱼ₎) (Holm 1979).
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return [float(x) for x in adjusted]


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg step-up adjusted p-values (controls the false discovery rate).

    With p₍₁₎ ≤ … ≤ p₍ₘ₎: p̃₍ᵢ₎ = min_{j ≥ i} min(1, m·p₍ⱼ₎ / j) (Benjamini & Hochberg 1995).
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, m * p[order] / np.arange(1, m + 1))
    adjusted = np.empty(m)
    adjusted[order] = np.minimum.accumulate(stepped[::-1])[::-1]
    return [float(x) for x in adjusted]


def adjust_p_values(p_values: Sequence[float | None], correction: Correction = "none") -> list[float | None]:
    """Adjusted p-values in the input order; None entries (not computable) stay None and don't count.

    ``correction``: ``none`` returns the p-values unchanged, ``holm`` or ``bh`` as above.
    """
    if correction not in ("none", "holm", "bh"):
        raise ValueError(f"Unknown correction {correction!r}; expected 'none', 'holm' or 'bh'.")
    present = [i for i, p in enumerate(p_values) if p is not None]
    result: list[float | None] = [None] * len(p_values)
    values = [float(p_values[i]) for i in present]  # type: ignore[arg-type]
    if correction == "holm":
        values = holm(values)
    elif correction == "bh":
        values = benjamini_hochberg(values)
    for i, value in zip(present, values, strict=True):
        result[i] = value
    return result
