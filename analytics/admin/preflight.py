"""The pre-flight check shown before an experiment starts: metrics, split and how long it will take.

The power estimate needs a baseline for the primary metric: its mean (a rate for conversions, the
ratio of sums for ratios), its per-user variance, and how many users a day could enter.
``metric_baseline`` reads them from the last ``BASELINE_DAYS`` days of ClickHouse data, computing each
user's value the way the analysis will once the experiment runs:

* the users are those seen in those days (any event or exposure) in the experiment's analysed
  environments (production by default); a user's t0 stands in for the first exposure: their first
  exposure to any experiment in the period, or, for a user never exposed, their first event. (Not
  simply the first event: a user first seen through a purchase would count that purchase as a
  conversion at t0, which no exposed user does; a purchase rate read that way came out 14.6% on the
  demo against the 10% its running experiments measure.)
* each user's value is the metric's measure over its conversion window from t0 (``t0 <= timestamp <
  t0 + window_hours``, cut at now like a running experiment's), capped like the metric: any event for a
  conversion, their number for a count, the sum of their values for a sum; a count or sum metric
  winsorized (``cap_percentile`` p) is capped at the p-th percentile of every baseline user's uncapped
  value (users without events as 0, or left out with ``cap_ignore_zeros``), the pooled cap the analysis
  takes over an experiment's exposed users (docs/analysis.md, "Winsorizing"), so a heavy tail does not
  inflate the variance and the estimated duration;
* a ratio metric gets its numerator (the sum of its event's value, its window and cap) and its
  denominator (the denominator metric's measure) per user; the baseline is Σ numerator / Σ denominator
  and the variance the engine's delta-method per-user variance (``analytics.stats.statistics``);
* users a day = users seen / days, as if each user arrived once; the experiment then takes its
  traffic allocation of them (targeting is not applied, so a targeted experiment gets fewer).

Without recent data (or when a ratio's denominator is always 0) ``metric_baseline`` raises
``NoBaseline`` with the reason, and the product manager types a baseline and a number of users a day.
The estimate itself is ``analytics.services.power_plan`` (GrowthBook's power formulas,
``analytics.stats.power``) at 80% power.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.utils.html import format_html

from analytics import clickhouse
from analytics.admin.summary import confidence_level, mean_text, metric_label, percent
from analytics.calibration import UNIT_SUMS_SQL, WINSORIZED_UNIT_SUMS_SQL, measure_params
from analytics.services import power_plan
from analytics.stats.statistics import RatioStats, ratio_variance, sample_variance
from experiments.models import Experiment, MetricRole
from metrics.models import Metric, MetricType

BASELINE_DAYS = 14
TARGET_POWER = 0.8
BASELINE_CACHE_SECONDS = 10 * 60  # the page may be reloaded while typing; the data barely moves

# The baseline is read by analytics.calibration's UNIT_SUMS_SQL: per user, t0 = the first exposure (to
# any experiment) in the period, or the first event; each measure over its window from t0, capped.


def winsorizing_params(prefix: str, metric: Metric) -> dict[str, Any]:
    """A measure's percentile cap, as the analysis applies it (``analytics.results.services``): count and
    sum metrics only; a ratio's numerator is never winsorized, its denominator metric may be."""
    percentile = metric.cap_percentile if metric.type in (MetricType.COUNT, MetricType.SUM) else None
    if prefix == "y" and metric.type == MetricType.RATIO:
        percentile = None
    return {
        f"{prefix}_winsorized": int(percentile is not None),
        f"{prefix}_level": float(percentile) if percentile is not None else 0.5,
        f"{prefix}_ignore_zeros": int(bool(metric.cap_ignore_zeros) and percentile is not None),
    }


class NoBaseline(Exception):
    """There is no baseline to read from the data; the message says why, in a product manager's words
    (not an error: the page then asks for a typed baseline)."""


@dataclass(frozen=True)
class Baseline:
    """What the power estimate starts from; ``variance`` is None for a conversion rate (p(1 − p))."""

    mean: float
    variance: float | None
    daily_units: float
    units: int | None  # users seen (None when typed in)
    days: int | None
    source: str  # "data" or "form"
    environments: tuple[str, ...] = ()  # where the users were seen (data only)
    # The winsorized measure's percentile cap over those users (the metric's; a ratio's denominator's)
    percentile_cap: float | None = None


def metric_baseline(
    *,
    metric: Metric,
    until: dt.datetime,
    environments: Sequence[str] = ("production",),
    days: int = BASELINE_DAYS,
) -> Baseline:
    """The metric's baseline over the ``days`` days before ``until`` (see the module docstring).

    Raises ``NoBaseline`` (with the reason) when the data cannot give one, ``ClickHouseError`` when
    ClickHouse cannot be read.
    """
    environments = tuple(environments)
    if metric.type == MetricType.QUANTILE:
        raise NoBaseline(
            f"{metric.name} is a quantile metric: this estimate is for means and ratios, so it cannot "
            "give a quantile's power yet."
        )
    denominator = metric.denominator if metric.type == MetricType.RATIO else metric
    if denominator is None:
        raise NoBaseline(f"The ratio metric {metric.name} has no denominator metric.")
    params = {
        **measure_params("y", metric),
        **measure_params("d", denominator),
        "environments": list(environments),
    }
    winsorizing = {**winsorizing_params("y", metric), **winsorizing_params("d", denominator)}
    winsorized = bool(winsorizing["y_winsorized"] or winsorizing["d_winsorized"])
    if winsorized:
        params.update(winsorizing)
    # The same metric settings within the same hour: the answer of the last reload (the data barely moves).
    fingerprint = hashlib.sha256(json.dumps([params, days], sort_keys=True).encode()).hexdigest()[:24]
    key = f"analytics:preflight:baseline:{until:%Y%m%d%H}:{fingerprint}"
    row = cache.get(key)
    if row is None:
        rows = clickhouse.query(
            WINSORIZED_UNIT_SUMS_SQL if winsorized else UNIT_SUMS_SQL,
            {**params, "since": until - dt.timedelta(days=days), "until": until},
        )
        row = rows[0] if rows else {"units": 0}
        cache.set(key, row, BASELINE_CACHE_SECONDS)
    units = int(row.get("units") or 0)
    where = ", ".join(environments)
    if not units:
        raise NoBaseline(
            f"Nobody was seen in the last {days} days ({where}), so there is no baseline to read."
        )
    sums = {name: float(row[name]) for name in ("y_sum", "y_sum_squares", "d_sum", "d_sum_squares",
                                                "yd_sum_products")}  # fmt: skip
    if not all(math.isfinite(value) for value in sums.values()):
        raise NoBaseline("The recent event values are too large to add up, so there is no baseline to read.")
    if metric.type == MetricType.RATIO:
        if sums["d_sum"] == 0:
            raise NoBaseline(
                f"No user had any {metric_label(denominator.name)} (the denominator) in the last {days} days "
                f"({where}): the ratio has no value yet."
            )
        stats = RatioStats(n=units, m_sum=sums["y_sum"], m_sum_squares=sums["y_sum_squares"],
                           d_sum=sums["d_sum"], d_sum_squares=sums["d_sum_squares"],
                           md_sum_products=sums["yd_sum_products"])  # fmt: skip
        mean, variance = stats.m_sum / stats.d_sum, _finite(ratio_variance(stats))
    elif metric.type == MetricType.BINOMIAL:
        mean, variance = sums["y_sum"] / units, None
    else:
        mean = sums["y_sum"] / units
        variance = _finite(sample_variance(units, sums["y_sum"], sums["y_sum_squares"]))
    cap_column = "d_percentile_cap" if metric.type == MetricType.RATIO else "y_percentile_cap"
    return Baseline(
        mean=mean,
        variance=variance,
        daily_units=units / days,
        units=units,
        days=days,
        source="data",
        environments=environments,
        percentile_cap=_finite(row.get(cap_column)) if winsorized else None,
    )


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def primary_metric(experiment: Experiment) -> Metric | None:
    """The experiment's first primary metric, or None."""
    link = (
        experiment.metric_links.select_related("metric")
        .filter(role=MetricRole.PRIMARY)
        .order_by("id")
        .first()
    )
    return link.metric if link else None


class BaselineForm(forms.Form):
    """The baseline typed in by hand, when there is no recent data or the PM knows better."""

    baseline_mean = forms.FloatField(
        label="Baseline",
        help_text="Today's value without the change: a rate from 0 to 1 for conversions (0.1 = 10%), "
        "otherwise the average per user.",
    )
    baseline_stddev = forms.FloatField(
        label="Standard deviation per user",
        required=False,
        min_value=0,
        help_text="Not needed for conversion rates. Unsure? The average is a fair guess for counts.",
    )
    daily_units = forms.FloatField(
        label="Users a day",
        min_value=1,
        help_text="How many new users a day could enter, before traffic allocation.",
    )

    def __init__(self, *args: Any, metric: Metric | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metric = metric
        if metric is not None and metric.type == MetricType.BINOMIAL:
            del self.fields["baseline_stddev"]
            self.fields["baseline_mean"].label = "Baseline rate"

    def clean_baseline_mean(self) -> float:
        value = self.cleaned_data["baseline_mean"]
        if self.metric is not None and self.metric.type == MetricType.BINOMIAL and not 0 < value < 1:
            raise ValidationError("A conversion rate is between 0 and 1, e.g. 0.1 for 10%.")
        if value == 0:
            raise ValidationError("The baseline must not be 0: a relative lift of 0 is still 0.")
        return value

    def baseline(self) -> Baseline:
        data = self.cleaned_data
        stddev = data.get("baseline_stddev")
        if self.metric is not None and self.metric.type != MetricType.BINOMIAL and not stddev:
            stddev = abs(data["baseline_mean"])  # the Poisson-like guess offered in the help text
        return Baseline(
            mean=data["baseline_mean"],
            variance=stddev**2 if stddev else None,
            daily_units=data["daily_units"],
            units=None,
            days=None,
            source="form",
        )


@dataclass(frozen=True)
class PowerEstimate:
    """Days to detect the experiment's minimum detectable effect, and a few other lifts for context."""

    relative_lift: float
    days: float
    daily_units: float  # entering the experiment (after traffic allocation)
    alternatives: list[tuple[float, float]]  # (lift, days)


def power_estimate(*, experiment: Experiment, metric: Metric, baseline: Baseline) -> PowerEstimate:
    """Days until the experiment's ``minimum_detectable_effect`` on ``metric`` is detected with 80%
    power. Raises ``ValidationError`` for a baseline the power formulas refuse."""
    daily_units = baseline.daily_units * experiment.traffic_allocation
    if not daily_units > 0:
        raise ValidationError("No users would enter: raise the traffic allocation above 0.")
    weights = [variant.weight for variant in experiment.variants.all()]
    variance = None if metric.type == MetricType.BINOMIAL else baseline.variance
    if metric.type != MetricType.BINOMIAL and not variance:
        raise ValidationError("The metric does not vary between users in the data: type a baseline instead.")

    def days_for(lift: float) -> float:
        plan = power_plan(
            baseline_mean=baseline.mean,
            baseline_variance=variance,
            daily_units=daily_units,
            weights=weights,
            alpha=experiment.alpha,
            power=TARGET_POWER,
            sequential=experiment.sequential,
            sequential_tuning=float(experiment.sequential_tuning),
            relative_lift=lift,
        )
        return float(plan["days"])

    mde = experiment.minimum_detectable_effect
    alternatives = [
        (lift, days_for(lift)) for lift in sorted({mde / 2, mde * 2, 0.01, 0.02, 0.05, 0.1}) if lift != mde
    ]
    return PowerEstimate(
        relative_lift=mde, days=days_for(mde), daily_units=daily_units, alternatives=alternatives
    )


# --- what the page says ---------------------------------------------------------------------------------
def variant_split(experiment: Experiment) -> list[dict[str, Any]]:
    """Each variant's share of the users, from the weights."""
    variants = list(experiment.variants.all())
    total = sum(v.weight for v in variants) or 1.0
    return [
        {
            "name": v.name or v.key,
            "key": v.key,
            "share": v.weight / total,
            "percent": percent(v.weight / total),
        }
        for v in variants
    ]


def preflight_checks(experiment: Experiment) -> list[dict[str, str]]:
    """What to look at before starting, each ``{"level": ok|warning|error, "text"}``."""
    checks: list[dict[str, str]] = []
    links = list(experiment.metric_links.select_related("metric").order_by("id"))
    by_role: dict[str, list[str]] = {}
    for link in links:
        by_role.setdefault(link.role, []).append(link.metric.name)
    if not links:
        checks.append({"level": "error", "text": "No metrics attached: the results would be empty. Add a primary "
                       "metric (what success means) in the experiment's Metrics section."})  # fmt: skip
    elif MetricRole.PRIMARY not in by_role:
        checks.append({"level": "warning", "text": "No primary metric: decide what success means before you start, "
                       "or every metric will be read as if it decided."})  # fmt: skip
    for role, label in ((MetricRole.PRIMARY, "Primary"), (MetricRole.SECONDARY, "Secondary"),
                        (MetricRole.GUARDRAIL, "Guardrails")):  # fmt: skip
        if by_role.get(role):
            checks.append({"level": "ok", "text": f"{label}: {', '.join(by_role[role])}."})
    if MetricRole.GUARDRAIL not in by_role and links:
        checks.append({"level": "warning", "text": "No guardrail: consider one that must not get worse "
                       "(errors, latency, unsubscribes)."})  # fmt: skip
    split = variant_split(experiment)
    if len(split) < 2:
        checks.append({"level": "error", "text": "An experiment needs at least two variants."})
    else:
        text = " · ".join(f"{v['name']} {v['percent']}" for v in split)
        checks.append({"level": "ok", "text": f"Split: {text} (the first is the control)."})
    allocation = experiment.traffic_allocation
    if allocation <= 0:
        checks.append({"level": "error", "text": "Traffic allocation is 0: nobody would take part."})
    else:
        if experiment.targeting:
            text = f"{percent(allocation, decimals=0)} of the users matching the targeting take part"
        elif allocation >= 1:
            text = "Everyone takes part (traffic allocation 100%)"
        else:
            text = f"{percent(allocation, decimals=0)} of all users take part"
        if experiment.layer:
            text += f", in layer “{experiment.layer}”"
        checks.append({"level": "ok" if allocation >= 0.1 else "warning", "text": text + "."})
    if experiment.scheduled_stop_at:
        checks.append(
            {
                "level": "ok",
                "text": f"Stops automatically on {experiment.scheduled_stop_at:%Y-%m-%d %H:%M} UTC.",
            }
        )
    if not experiment.hypothesis:
        checks.append({"level": "warning", "text": "No hypothesis written down: say what you expect and why, so "
                       "nobody reads the results into it afterwards."})  # fmt: skip
    return checks


def baseline_text(metric: Metric, baseline: Baseline) -> str:
    """Where the baseline came from, in a sentence."""
    if metric.type == MetricType.BINOMIAL:
        value = f"{percent(baseline.mean)} {metric_label(metric.name)}"
    elif metric.type == MetricType.RATIO:
        value = f"{mean_text(baseline.mean, metric.type)} {metric_label(metric.name)} (a ratio of totals)"
    else:
        value = f"{mean_text(baseline.mean, metric.type)} {metric_label(metric.name)} on average"
    if baseline.source != "data":
        return f"Baseline you typed: {value}, {baseline.daily_units:,.0f} users a day."
    window = f"the {metric.window_hours:,} hours" if metric.window_hours else "everything they did"
    how = f"each user counts {window} after their first exposure (or first event), as the results will"
    if metric.type == MetricType.RATIO:
        how += "; the per-user variance is the ratio's delta-method variance, as in the analysis"
    if baseline.percentile_cap is not None:
        measure = metric.denominator if metric.type == MetricType.RATIO else metric
        share = f"{measure.cap_percentile * 100:g}th percentile" if measure else "percentile"
        how += f"; values winsorized at the {share} of these users ({baseline.percentile_cap:,.4g})"
    return (
        f"Baseline from the last {baseline.days} days of events: {value}, over {baseline.units:,} users seen "
        f"(about {baseline.daily_units:,.0f} a day) in {', '.join(baseline.environments)}; {how}."
    )


def days_text(days: float) -> str:
    """``12.3`` → ``"13 days"`` (a planned duration rounds up)."""
    if days < 1:
        return "less than a day"
    return f"{math.ceil(days):,} day{'s' if math.ceil(days) != 1 else ''}"


def power_text(experiment: Experiment, metric: Metric, estimate: PowerEstimate) -> str:
    """The pre-flight's answer, as HTML (values escaped)."""
    how = "sequential testing" if experiment.sequential else "a fixed-horizon test"
    return format_html(
        "About <strong>{}</strong> to detect a {} lift in {} with 80% power ({} confidence, {}), "
        "counting about {} new users a day in the experiment ({} traffic allocation).",
        days_text(estimate.days),
        percent(estimate.relative_lift),
        metric_label(metric.name),
        confidence_level(experiment.alpha),
        how,
        f"{estimate.daily_units:,.0f}",
        percent(experiment.traffic_allocation, decimals=0),
    )
