"""Which way a metric moved, and whether that is good, given the metric's ``higher_is_better``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Direction = Literal["improved", "regressed", "inconclusive"]


def is_significant(ci: Sequence[float | None] | None) -> bool:
    """True when the interval excludes 0 (gbstats ``is_statistically_significant``)."""
    if ci is None or ci[0] is None or ci[1] is None:
        return False
    return ci[0] > 0 or ci[1] < 0


def change_direction(ci: Sequence[float | None] | None, *, higher_is_better: bool = True) -> Direction:
    """``improved`` / ``regressed`` when the interval excludes 0 on the good / bad side, else
    ``inconclusive``. Guardrails fail on ``regressed``."""
    if ci is None or not is_significant(ci):
        return "inconclusive"
    went_up = ci[0] is not None and ci[0] > 0
    return "improved" if went_up == higher_is_better else "regressed"
