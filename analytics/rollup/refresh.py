"""Run an experiment's roll-up in ClickHouse and read the answer as the engine's statistics.

``rollup_run(spec)`` sends the two statements of :mod:`analytics.rollup.query` and returns a
:class:`Rollup`: units per variant, the excluded units, and every metric's per-variant sufficient
statistics, in total and cumulatively per day for the metrics with a time series.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from analytics import clickhouse
from analytics.clickhouse import ClickHouseError
from analytics.rollup.quantile import rollup_quantiles, without_quantiles
from analytics.rollup.query import (
    QUERY_SETTINGS,
    STATS_TERMS,
    RollupQuery,
    Shards,
    day_date,
    metric_columns,
    ms_datetime,
    stats_class,
)
from analytics.rollup.spec import Measure, MetricSpec, RollupSpec
from analytics.stats import MetricStats

logger = logging.getLogger(__name__)

VariantStats = list[tuple[str, MetricStats]]  # (variant key, statistics) in the experiment's order


@dataclass(frozen=True)
class DailyStats:
    """One metric's statistics over the units exposed by the end of ``date``, events up to then."""

    date: dt.date
    variants: VariantStats


@dataclass
class Rollup:
    """An experiment's roll-up: what the statistics engine needs, and what the results report about data."""

    spec: RollupSpec
    units: dict[str, int]  # analysed units per variant, in the experiment's order
    multiple_exposures: int  # units seen in two or more variants: excluded
    unknown_variant_units: int  # units exposed to a variant the experiment does not have: excluded
    first_exposure_at: dt.datetime | None
    last_exposure_at: dt.datetime | None
    last_event_at: dt.datetime | None
    totals: dict[str, VariantStats] = field(default_factory=dict)  # by metric key
    daily: dict[str, list[DailyStats]] = field(default_factory=dict)  # by metric key (time series only)
    exact_unit_keys: bool = False
    duration_ms: float = 0.0
    # How it was computed: "cold" (rollup_run, every event read), "full" or "incremental" (from
    # per-unit state, analytics.rollup.incremental), with the state it left for the next refresh.
    kind: str = "cold"
    state: Any = None  # analytics.rollup.incremental.RollupState
    recomputed_metrics: tuple[str, ...] = ()  # metrics whose state was rebuilt for every unit
    # The cap each metric's value (a ratio's numerator) was capped at, by metric key: its fixed
    # cap_value, the percentile cap computed for this roll-up, or None (no cap).
    caps_used: dict[str, float | None] = field(default_factory=dict)


def _build_stats(metric: MetricSpec, n: int, sums: dict[str, float]) -> MetricStats:
    cls = stats_class(metric)
    return cls(n=int(n), **{name: float(sums.get(name, 0.0)) for name in STATS_TERMS[cls]})


def _variant_of(index: int, variants: Sequence[str]) -> str | None:
    return variants[index - 1] if 1 <= index <= len(variants) else None


def rollup_shards() -> Shards | None:
    """Where the roll-up runs: per shard of ``CLICKHOUSE_CLUSTER``, else None (one server)."""
    if not settings.CLICKHOUSE_CLUSTER:
        return None
    return Shards(
        cluster=settings.CLICKHOUSE_CLUSTER,
        database=clickhouse.database_name(),
        replicated=settings.CLICKHOUSE_CLUSTER_REPLICATED,
    )


def shard_slots(cluster: str) -> tuple[int, ...]:
    """How ``Distributed`` tables over ``cluster`` route a row: slot ``k`` (``sharding key % slots``)
    goes to the shard numbered ``slots[k]``; every shard has as many slots as its weight, in order
    (ClickHouse's ``slot_to_shard``)."""
    rows = clickhouse.query(
        "SELECT shard_num, any(shard_weight) AS weight FROM system.clusters "
        "WHERE cluster = {cluster:String} GROUP BY shard_num ORDER BY shard_num",
        {"cluster": cluster},
        use_database=False,
    )
    slots = tuple(int(row["shard_num"]) for row in rows for _ in range(int(row["weight"])))
    if not slots:
        raise ClickHouseError(
            f"ClickHouse knows no cluster {cluster!r} (system.clusters), or it has no shard."
        )
    return slots


def rollup_run(spec: RollupSpec) -> Rollup:
    """Roll the experiment's exposures and events up to per-variant sums (two ClickHouse queries).

    This is the cold refresh: it reads every event. ``analytics.rollup.incremental`` computes the
    same from per-unit state. Raises ``ClickHouseError`` (``ClickHouseUnavailable`` when ClickHouse
    cannot be reached).
    """
    started = time.perf_counter()
    full_spec, spec = spec, without_quantiles(spec)  # quantile metrics: their own statements
    shards = rollup_shards()
    query = RollupQuery(spec, shards=shards)
    statement = query.units_statement()
    unit_rows = clickhouse.query(statement.sql, statement.params, settings=QUERY_SETTINGS)
    rollup, units_by_day, collisions = read_units(spec, unit_rows)
    if collisions:
        logger.warning(
            "Experiment %s: %d unit id hash collisions; rolling up on exact unit ids.",
            spec.experiment,
            collisions,
        )
    caps: dict[Measure, float | None] = {}
    if spec.metrics and rollup.first_exposure_at is not None:
        options = {
            "exact_unit_keys": collisions > 0,
            "first_exposure": rollup.first_exposure_at,
            "shards": shards,
        }
        if spec.percentile_capped:
            caps = percentile_caps(RollupQuery(spec, **options), rollup)
        query = RollupQuery(spec, caps=caps, **options)
        statement = query.metrics_statement()
        metric_rows = clickhouse.query(statement.sql, statement.params, settings=QUERY_SETTINGS)
        read_metrics(rollup, metric_rows, units_by_day)
    else:
        empty_metrics(rollup)
    record_caps(rollup, full_spec, caps)
    rollup_quantiles(rollup, full_spec, shards)
    rollup.duration_ms = (time.perf_counter() - started) * 1000
    return rollup


def percentile_caps(
    query: RollupQuery, rollup: Rollup, query_settings: dict[str, Any] | None = None
) -> dict[Measure, float | None]:
    """The caps of the spec's percentile-capped measures, over the roll-up's analysed units (one
    query, before the metrics statement; NaN, when every value was a left-out zero, is no cap)."""
    statement = query.caps_statement(sum(rollup.units.values()))
    row = clickhouse.query(statement.sql, statement.params, settings=query_settings or QUERY_SETTINGS)[0]
    caps: dict[Measure, float | None] = {}
    for k, measure in enumerate(query.spec.percentile_capped):
        value = row[f"cap_{k}"]
        caps[measure] = None if value is None or math.isnan(value) else float(value)
    return caps


def record_caps(rollup: Rollup, spec: RollupSpec, caps: dict[Measure, float | None]) -> None:
    """Each metric's ``caps_used``: its value's fixed cap, its computed percentile cap, or None."""
    for metric in spec.metrics:
        measure = metric.measure
        rollup.caps_used[metric.key] = measure.cap if measure.cap_percentile is None else caps.get(measure)


def empty_metrics(rollup: Rollup) -> None:
    """No exposures yet: every metric has empty variants."""
    for metric in rollup.spec.metrics:
        rollup.totals[metric.key] = [(v, _build_stats(metric, 0, {})) for v in rollup.spec.variants]


def read_units(
    spec: RollupSpec, unit_rows: list[dict[str, Any]]
) -> tuple[Rollup, dict[int, dict[str, int]], int]:
    """The ``units`` statement's answer: the roll-up's unit counts, units per entry day, collisions."""
    variants = spec.variants
    units_by_day: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(variants, 0))
    units = dict.fromkeys(variants, 0)
    multiple = unknown = collisions = 0
    first_ms: int | None = None
    last_ms: int | None = None
    for row in unit_rows:
        collisions += int(row["key_collisions"])
        last_ms = max(last_ms or row["last_exposure_ms"], row["last_exposure_ms"])
        variant = _variant_of(int(row["variant_index"]), variants)
        if variant is None:
            if int(row["variant_index"]) < 0:
                multiple += int(row["units"])
            else:
                unknown += int(row["units"])
            continue
        first_ms = min(first_ms or row["first_exposure_ms"], row["first_exposure_ms"])
        units[variant] += int(row["units"])
        units_by_day[int(row["entry_day"])][variant] += int(row["units"])

    rollup = Rollup(
        spec=spec,
        units=units,
        multiple_exposures=multiple,
        unknown_variant_units=unknown,
        first_exposure_at=ms_datetime(first_ms),
        last_exposure_at=ms_datetime(last_ms),
        last_event_at=None,
        exact_unit_keys=collisions > 0,
    )
    return rollup, units_by_day, collisions


def read_metrics(rollup: Rollup, rows: list[dict[str, Any]], units_by_day: dict[int, dict[str, int]]) -> None:
    """Totals, and for time-series metrics the cumulative sums at the end of every day."""
    spec, variants = rollup.spec, rollup.spec.variants
    columns = {metric.key: metric_columns(index, metric) for index, metric in enumerate(spec.metrics)}
    # daily[metric][variant][field][day]: the field's increment on that day
    daily: dict[str, dict[str, dict[str, dict[int, float]]]] = {
        metric.key: {v: {name: {} for name in columns[metric.key]} for v in variants}
        for metric in spec.metrics
    }
    last_event_ms: int | None = None
    for row in rows:
        variant = _variant_of(int(row["variant_index"]), variants)
        if variant is None:
            continue
        if row["last_event_ms"] is not None:
            last_event_ms = max(last_event_ms or row["last_event_ms"], row["last_event_ms"])
        day = int(row["day"])
        for metric in spec.metrics:
            for name, column in columns[metric.key].items():
                daily[metric.key][variant][name][day] = float(row[column])
    rollup.last_event_at = ms_datetime(last_event_ms)

    first_day = min(units_by_day, default=None)
    last_day = spec.until_ms // 86_400_000
    for metric in spec.metrics:
        per_variant = daily[metric.key]
        totals = {
            v: {name: sum(by_day.values()) for name, by_day in per_variant[v].items()} for v in variants
        }
        if metric.timeseries and first_day is not None:
            days = range(first_day, last_day + 1)
            rollup.daily[metric.key], totals = _cumulate(
                metric, rollup.units, units_by_day, per_variant, days
            )
        rollup.totals[metric.key] = [(v, _build_stats(metric, rollup.units[v], totals[v])) for v in variants]


def _cumulate(
    metric: MetricSpec,
    units: dict[str, int],
    units_by_day: dict[int, dict[str, int]],
    daily: dict[str, dict[str, dict[int, float]]],
    days: range,
) -> tuple[list[DailyStats], dict[str, dict[str, float]]]:
    """Running sums day by day; the last day's are the totals (so the last point equals them exactly)."""
    variants = list(units)
    running = {v: dict.fromkeys(daily[v], 0.0) for v in variants}
    running_units = dict.fromkeys(variants, 0)
    series: list[DailyStats] = []
    for day in days:
        for variant in variants:
            running_units[variant] += units_by_day.get(day, {}).get(variant, 0)
            for name, increments in daily[variant].items():
                running[variant][name] += increments.get(day, 0.0)
        series.append(
            DailyStats(
                date=day_date(day),
                variants=[(v, _build_stats(metric, running_units[v], running[v])) for v in variants],
            )
        )
    return series, running
