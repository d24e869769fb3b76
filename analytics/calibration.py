"""Calibration on the user's own data: placebo (A/A) experiments on the units seen recently.

For each metric, ``metric_calibrate`` splits the units seen in the last ``days`` days at random into
two arms, ``seeds`` times over, analyses every split with the results' engine and counts how often
the engine calls a difference that cannot exist. A healthy metric is "significant" in about a share
alpha of the splits; a metric far from it has a problem the real experiments will have too (heavy
tails or a whale: far fewer, because one unit's value swamps the variance; values that are not
independent between units, e.g. one person logged under several ids, or a unit mismatch: far more).

Who and what (the same as the pre-flight power estimate, ``analytics.admin.preflight``):

* the units are those seen in the period (any exposure to any experiment, or any event) in the
  analysed environments (production by default); a unit's t0 is its first exposure in the period,
  or its first event for a unit never exposed;
* each unit's value is the metric's measure over its conversion window from t0 (``t0 <= timestamp <
  t0 + window``, cut at ``until``), capped like the metric; a ratio gets numerator and denominator.

One pass in ClickHouse, not one query per seed: every unit's values are computed once, then
``arrayJoin(range(seeds))`` repeats each unit once per seed with its arm ``cityHash64(seed, unit_id)
% 2`` (independent of the experiments' own bucketing hash), and ``GROUP BY seed, arm`` reduces them to
the sufficient statistics n, Σy, Σy², Σd, Σd², Σyd per seed and arm (2 × seeds rows).

Each seed is then one comparison of the engine (``analytics.stats.compare``: the frequentist
fixed-horizon test of the relative lift that the results use, at ``alpha``). The report per metric:

* the false-positive rate r = (splits called significant) / (splits analysed) and the binomial 99%
  band of the count for that many splits at alpha; a rate outside it is flagged. The splits re-use
  one population, so they are not quite independent; the band is a yardstick, not a test;
* the minimum detectable effect at 80% power (``analytics.stats.power``) for an experiment of
  ``duration_days`` days on all the traffic seen, from the metric's observed mean and per-unit
  variance (the delta-method variance for a ratio, p(1 − p) for a conversion) and units per day =
  units seen / days.

Quantile metrics are not calibrated (the placebo test would need the order statistics per seed).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Sequence
from typing import Any

from django.utils import timezone
from scipy import stats as scipy_stats

from analytics import clickhouse
from analytics.models import MetricCalibration
from analytics.stats import AnalysisOptions, RatioStats, SampleStats, compare, minimum_detectable_effect
from analytics.stats.statistics import ratio_variance, sample_variance
from metrics.models import Metric, MetricType

DEFAULT_DAYS = 14
DEFAULT_SEEDS = 200
DEFAULT_DURATION_DAYS = 14
MAX_DAYS = 90
MAX_SEEDS = 1000
TARGET_POWER = 0.8
BAND_LEVEL = 0.99
HOUR_MS = 3_600_000

# A unit's arm in the split of ``seed``: the same expression in the calibration and in any check of it.
ARM_SQL = "cityHash64(seed, unit_id) % 2"

# Per unit: t0 = the first exposure (to any experiment) in the period, or the first event for a unit
# never exposed; y = the metric's measure (a ratio's numerator), d = a ratio's denominator measure,
# each over its own window from t0 (0: no window) and capped; events before t0 do not count.
UNIT_VALUES_SQL = """
SELECT
    unit_id,
    multiIf({y_kind:String} = 'binomial', toFloat64(length(y_events) > 0),
            {y_kind:String} = 'count', toFloat64(length(y_events)),
            arraySum(e -> e.4, y_events)) AS y_raw,
    if({y_capped:UInt8} = 1, least(y_raw, {y_cap:Float64}), y_raw) AS y,
    multiIf({d_kind:String} = 'binomial', toFloat64(length(d_events) > 0),
            {d_kind:String} = 'count', toFloat64(length(d_events)),
            arraySum(e -> e.4, d_events)) AS d_raw,
    if({d_capped:UInt8} = 1, least(d_raw, {d_cap:Float64}), d_raw) AS d
FROM (
    SELECT
        unit_id,
        arrayFilter(e -> e.2 AND e.1 >= t0 AND ({y_window_ms:Int64} = 0 OR e.1 < t0 + {y_window_ms:Int64}),
                    metric_events) AS y_events,
        arrayFilter(e -> e.3 AND e.1 >= t0 AND ({d_window_ms:Int64} = 0 OR e.1 < t0 + {d_window_ms:Int64}),
                    metric_events) AS d_events
    FROM (
        SELECT
            unit_id,
            if(countIf(is_exposure) > 0, minIf(ts, is_exposure), min(ts)) AS t0,
            groupArrayIf((ts, is_y, is_d, value), is_y OR is_d) AS metric_events
        FROM (
            SELECT unit_id, toUnixTimestamp64Milli(timestamp) AS ts, name = {y_event:String} AS is_y,
                   name = {d_event:String} AS is_d, value, false AS is_exposure
            FROM events_dedup
            WHERE timestamp >= {since:DateTime64(3)} AND timestamp < {until:DateTime64(3)}
              AND environment IN {environments:Array(String)}
            UNION ALL
            SELECT unit_id, toUnixTimestamp64Milli(timestamp) AS ts, false AS is_y, false AS is_d,
                   0.0 AS value, true AS is_exposure
            FROM exposures_dedup
            WHERE timestamp >= {since:DateTime64(3)} AND timestamp < {until:DateTime64(3)}
              AND environment IN {environments:Array(String)}
        )
        GROUP BY unit_id
    )
)
"""

# The sums over every unit at once (the pre-flight baseline's power inputs): the same per-unit values.
UNIT_SUMS_SQL = f"""
SELECT
    count() AS units,
    sum(y) AS y_sum,
    sum(y * y) AS y_sum_squares,
    sum(d) AS d_sum,
    sum(d * d) AS d_sum_squares,
    sum(y * d) AS yd_sum_products
FROM ({UNIT_VALUES_SQL})
"""  # noqa: S608 - only the constant above is formatted in; values are bound parameters

# The same sums when a measure is winsorized (the pre-flight baseline, analytics.admin.preflight): each
# measure's percentile cap is a window over every unit's uncapped value (quantileExactInclusive: linear
# interpolation between the closest ranks, as the roll-up's caps_statement), NaN when no value is left
# (cap_ignore_zeros, all zero): then no cap.
WINSORIZED_UNIT_SUMS_SQL = f"""
SELECT
    count() AS units,
    sum(y) AS y_sum,
    sum(y * y) AS y_sum_squares,
    sum(d) AS d_sum,
    sum(d * d) AS d_sum_squares,
    sum(y * d) AS yd_sum_products,
    any(y_cap) AS y_percentile_cap,
    any(d_cap) AS d_percentile_cap
FROM (
    SELECT
        if({{y_winsorized:UInt8}} = 1 AND NOT isNaN(y_cap), least(y_uncapped, y_cap), y_uncapped) AS y,
        if({{d_winsorized:UInt8}} = 1 AND NOT isNaN(d_cap), least(d_uncapped, d_cap), d_uncapped) AS d,
        y_cap,
        d_cap
    FROM (
        SELECT
            y AS y_uncapped,
            d AS d_uncapped,
            quantileExactInclusiveIf({{y_level:Float64}})(y, {{y_ignore_zeros:UInt8}} = 0 OR y != 0) OVER () AS y_cap,
            quantileExactInclusiveIf({{d_level:Float64}})(d, {{d_ignore_zeros:UInt8}} = 0 OR d != 0) OVER () AS d_cap
        FROM ({UNIT_VALUES_SQL})
    )
)
"""  # noqa: S608 - only the constant above is formatted in; values are bound parameters

# Every seed's split at once: each unit repeated once per seed, its arm from the seeded hash.
CALIBRATION_SQL = f"""
SELECT
    seed,
    arm,
    count() AS units,
    sum(y) AS y_sum,
    sum(y * y) AS y_sum_squares,
    sum(d) AS d_sum,
    sum(d * d) AS d_sum_squares,
    sum(y * d) AS yd_sum_products
FROM (
    SELECT y, d, arrayJoin(range({{seeds:UInt32}})) AS seed, {ARM_SQL} AS arm
    FROM ({UNIT_VALUES_SQL})
)
GROUP BY seed, arm
ORDER BY seed, arm
"""  # noqa: S608 - only the constants above are formatted in; values are bound parameters

# Each unit's values and arm in the given seeds' splits: for checking the one-pass sums unit by unit.
UNIT_ARMS_SQL = f"""
SELECT unit_id, y, d, seed, {ARM_SQL} AS arm
FROM ({UNIT_VALUES_SQL})
ARRAY JOIN {{seed_list:Array(UInt32)}} AS seed
"""  # noqa: S608 - only the constants above are formatted in; values are bound parameters

SUM_COLUMNS = ("y_sum", "y_sum_squares", "d_sum", "d_sum_squares", "yd_sum_products")


def measure_params(prefix: str, metric: Metric) -> dict[str, Any]:
    """A measure's parameters (docs/analysis.md: a ratio's numerator is the sum of its event's value)."""
    kind = "sum" if metric.type == MetricType.RATIO else metric.type
    return {
        f"{prefix}_event": metric.event,
        f"{prefix}_kind": kind,
        f"{prefix}_window_ms": (metric.window_hours or 0) * HOUR_MS,
        f"{prefix}_capped": int(metric.cap_value is not None and kind != "binomial"),
        f"{prefix}_cap": float(metric.cap_value or 0.0),
    }


def unit_values_params(
    *, metric: Metric, since: dt.datetime, until: dt.datetime, environments: Sequence[str]
) -> dict[str, Any]:
    """The bound parameters of ``UNIT_VALUES_SQL`` (and so of ``CALIBRATION_SQL``, with ``seeds``)."""
    denominator = metric.denominator if metric.type == MetricType.RATIO else metric
    if denominator is None:
        raise ValueError(f"The ratio metric {metric.key} has no denominator metric.")
    return {
        **measure_params("y", metric),
        **measure_params("d", denominator),
        "since": since,
        "until": until,
        "environments": list(environments),
    }


def calibration_sums(
    *, metric: Metric, since: dt.datetime, until: dt.datetime, environments: Sequence[str], seeds: int
) -> list[dict[str, Any]]:
    """Per seed and arm (0, 1): units and the sums of the metric's per-unit values; one query."""
    params = {**unit_values_params(metric=metric, since=since, until=until, environments=environments)}
    return clickhouse.query(CALIBRATION_SQL, {**params, "seeds": seeds})


def _stats(metric: Metric, row: dict[str, Any]) -> SampleStats | RatioStats:
    if metric.type == MetricType.RATIO:
        return RatioStats(n=int(row["units"]), m_sum=float(row["y_sum"]), m_sum_squares=float(row["y_sum_squares"]),
                          d_sum=float(row["d_sum"]), d_sum_squares=float(row["d_sum_squares"]),
                          md_sum_products=float(row["yd_sum_products"]))  # fmt: skip
    return SampleStats(n=int(row["units"]), sum=float(row["y_sum"]), sum_squares=float(row["y_sum_squares"]))


def false_positive_band(splits: int, alpha: float, level: float = BAND_LEVEL) -> tuple[int, int]:
    """The central binomial interval of the number of significant splits out of ``splits`` at ``alpha``."""
    low, high = scipy_stats.binom.interval(level, splits, alpha)
    return int(low), int(high)


def _baseline(metric: Metric, total: SampleStats | RatioStats) -> tuple[float, float | None]:
    """The metric's mean and per-unit variance over every unit (None for a conversion rate)."""
    if isinstance(total, RatioStats):
        if total.d_sum == 0:
            raise ValueError("its denominator is 0 for every unit")
        return total.m_sum / total.d_sum, ratio_variance(total)
    mean = total.sum / total.n
    if metric.type == MetricType.BINOMIAL:
        return mean, None
    return mean, sample_variance(total.n, total.sum, total.sum_squares)


def metric_calibrate(
    *,
    metric: Metric,
    until: dt.datetime,
    days: int = DEFAULT_DAYS,
    seeds: int = DEFAULT_SEEDS,
    alpha: float = 0.05,
    duration_days: int = DEFAULT_DURATION_DAYS,
    environments: Sequence[str] = ("production",),
) -> dict[str, Any]:
    """Run the placebo experiments for ``metric`` and return its report (a JSON-ready dict).

    Raises ``ValueError`` for impossible options and ``ClickHouseError`` when ClickHouse cannot be read;
    a metric the data cannot calibrate gets a report with ``error`` set instead.
    """
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days: between 1 and {MAX_DAYS}.")
    if not 10 <= seeds <= MAX_SEEDS:
        raise ValueError(f"seeds: between 10 and {MAX_SEEDS}.")
    if not 0.0 < alpha < 0.5:
        raise ValueError("alpha: between 0 and 0.5.")
    if duration_days < 1:
        raise ValueError("duration_days: at least 1.")
    environments = tuple(environments)
    report: dict[str, Any] = {
        "metric": metric.key,
        "name": metric.name,
        "type": metric.type,
        "until": until.isoformat(),
        "days": days,
        "seeds": seeds,
        "alpha": alpha,
        "environments": list(environments),
        "duration_days": duration_days,
        "error": None,
        "flagged": False,
    }
    if metric.type == MetricType.QUANTILE:
        return {**report, "error": "quantile metrics are not calibrated yet"}
    started = time.perf_counter()
    try:
        rows = calibration_sums(
            metric=metric, since=until - dt.timedelta(days=days), until=until,
            environments=environments, seeds=seeds,
        )  # fmt: skip
    except ValueError as exc:
        return {**report, "error": str(exc)}
    report["query_ms"] = round((time.perf_counter() - started) * 1000)
    arms: dict[int, dict[int, dict[str, Any]]] = {}
    for row in rows:
        arms.setdefault(int(row["seed"]), {})[int(row["arm"])] = row
    # Every seed splits the same units: seed 0's two arms together are all of them.
    first = arms.get(0, {})
    units = sum(int(row["units"]) for row in first.values())
    report["units"] = units
    report["daily_units"] = units / days
    if units < 4:
        return {**report, "error": f"only {units} unit(s) seen in the last {days} days"}
    total = _stats(
        metric, {"units": units, **{c: sum(float(r[c]) for r in first.values()) for c in SUM_COLUMNS}}
    )
    options = AnalysisOptions(engine="frequentist", alpha=alpha, binomial=metric.type == MetricType.BINOMIAL)
    analysed = significant = 0
    p_values: list[float] = []
    for seed in range(seeds):
        pair = arms.get(seed, {})
        if 0 not in pair or 1 not in pair:
            continue  # every unit on one side (only with a handful of units)
        comparison = compare(("a", _stats(metric, pair[0])), ("b", _stats(metric, pair[1])), options)
        if comparison["p_value"] is None:
            continue
        analysed += 1
        p_values.append(comparison["p_value"])
        significant += bool(comparison["significant"])
    report["splits"] = analysed
    report["false_positives"] = significant
    if not analysed:
        return {**report, "error": "no split could be analysed (no variance in the metric?)"}
    low, high = false_positive_band(analysed, alpha)
    rate = significant / analysed
    report.update(
        false_positive_rate=rate,
        band=[low / analysed, high / analysed],
        flagged=not low <= significant <= high,
        # The p-values of a calibrated test are uniform: their mean is about 0.5.
        mean_p_value=math.fsum(p_values) / len(p_values),
    )
    try:
        mean, variance = _baseline(metric, total)
        report.update(mean=mean, variance=variance)
        report["mde"] = minimum_detectable_effect(
            days=duration_days, mean=mean, variance=variance, daily_units=units / days,
            alpha=alpha, target_power=TARGET_POWER,
        )  # fmt: skip
    except ValueError as exc:  # a zero mean or variance: no relative lift to plan for
        report["mde"] = None
        report["mde_error"] = str(exc)
    return report


def calibration_verdict(report: dict[str, Any]) -> str:
    """One line in a product manager's words."""
    if report.get("error"):
        return f"not calibrated: {report['error']}"
    rate, (low, high) = report["false_positive_rate"], report["band"]
    text = (
        f"{rate:.1%} false positives in {report['splits']} placebo splits at alpha {report['alpha']:g} "
        f"(expected {low:.1%}–{high:.1%})"
    )
    if report["flagged"]:
        why = (
            "too few: heavy tails swamp the variance (consider a cap)"
            if rate < low
            else "too many: a few outsized units (consider a cap), or units that are not independent "
            "(duplicated or mismatched ids, broken logging)"
        )
        text += f" — CHECK THIS METRIC, {why}"
    mde = report.get("mde")
    text += (
        f"; MDE {mde:.1%} at 80% power in {report['duration_days']} days"
        if mde is not None
        else f"; no detectable effect in {report['duration_days']} days"
    )
    return text


def metric_calibration_run(*, metric: Metric, ran_by: str = "", **options: Any) -> MetricCalibration:
    """Calibrate ``metric`` now (``metric_calibrate``'s options) and keep the report as its last one."""
    now = timezone.now()
    report = metric_calibrate(metric=metric, until=options.pop("until", now), **options)
    calibration, _ = MetricCalibration.objects.update_or_create(
        metric=metric, defaults={"report": report, "ran_at": now, "ran_by": ran_by[:150]}
    )
    return calibration
