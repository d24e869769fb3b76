"""Writes and calculations of the analytics app that are not results: the power calculator.

Experiment results are computed and stored by ``analytics.results.services``.
"""

from __future__ import annotations

import math
from typing import Any

from django.core.exceptions import ValidationError

from analytics.stats import days_needed, minimum_detectable_effect, statistical_power


# --- power -------------------------------------------------------------------------------------------------
def power_plan(
    *,
    baseline_mean: float,
    baseline_variance: float | None,
    daily_units: float,
    weights: list[float],
    alpha: float,
    power: float,
    sequential: bool,
    sequential_tuning: float,
    relative_lift: float | None = None,
    days: float | None = None,
) -> dict[str, Any]:
    """Days needed to detect ``relative_lift``, or the lift detectable in ``days`` (``analytics.stats``).

    Raises Django's ``ValidationError`` for inputs the power functions refuse, and, naming the field
    asked about, when the answer is not a finite number (a lift too small for any experiment to detect).
    """
    common = {
        "mean": baseline_mean,
        "variance": baseline_variance,
        "weights": weights,
        "alpha": alpha,
        "sequential": sequential,
        "sequential_tuning": sequential_tuning,
    }
    inputs = {
        "baseline_mean": baseline_mean, "baseline_variance": baseline_variance, "daily_units": daily_units,
        "weights": weights, "alpha": alpha, "power": power, "sequential": sequential,
        "sequential_tuning": sequential_tuning, "relative_lift": relative_lift, "days": days,
    }  # fmt: skip
    asked = "relative_lift" if relative_lift is not None else "days"
    try:
        if relative_lift is not None:
            days = days_needed(
                relative_lift=relative_lift, daily_units=daily_units, target_power=power, **common
            )
            if not math.isfinite(days):
                raise ValidationError({"relative_lift": _TOO_SMALL_TO_DETECT})
        else:
            relative_lift = minimum_detectable_effect(
                days=days, daily_units=daily_units, target_power=power, **common
            )
        if relative_lift is None:
            return {"days": days, "relative_lift": None, "detectable": False, "units": days * daily_units,
                    "power": None, "inputs": inputs}  # fmt: skip
        units = days * daily_units
        achieved = statistical_power(relative_lift=relative_lift, units=units, **common)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc
    except ArithmeticError as exc:  # an input combination past floating point that the bounds let through
        raise ValidationError({asked: f"Out of the range this calculator can compute ({exc})."}) from exc
    if not all(math.isfinite(value) for value in (days, relative_lift, units, achieved)):
        raise ValidationError({asked: _TOO_SMALL_TO_DETECT if asked == "relative_lift" else _NOT_FINITE})
    return {
        "days": days,
        "relative_lift": relative_lift,
        "detectable": True,
        "units": units,
        "power": achieved,
        "inputs": inputs,
    }


_TOO_SMALL_TO_DETECT = (
    "Too small to detect: on this baseline it would take more units than can be counted. "
    "Plan for a larger lift (0.05 = +5%)."
)
_NOT_FINITE = "The answer for these inputs is not a finite number; check the baseline and the traffic."
