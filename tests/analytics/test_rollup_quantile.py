"""Quantile metrics' statement (analytics.rollup.quantile) against numpy on the same generated data.

The roll-up's generated experiment (every exposure and window edge, replays, test traffic, a
retired variant) gets quantile metrics; the reference computes each variant's observations unit by
unit in Python and takes numpy's order statistics (``np.quantile(..., method="inverted_cdf")``, the
same rank definition), then GrowthBook's n* selection. Runs on both ClickHouse backends.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections import defaultdict

import numpy as np
import pytest

from analytics.rollup import Measure, MetricSpec, rollup_run
from analytics.rollup.quantile import QuantileQuery
from analytics.rollup.query import Shards
from analytics.stats.quantile import (
    QuantileClusteredStats,
    QuantileStats,
    grid_levels,
    select_bounds,
)
from tests.analytics.test_rollup import (
    HOUR,
    Event,
    Exposure,
    _analysed,
    _post,
    _units,
    generate,
    spec_of,
    write,
)

pytestmark = pytest.mark.django_db

QUANTILE_METRICS = (
    MetricSpec("p90_revenue", "quantile", Measure("purchase", "sum", 72), quantile=0.9, quantile_scope="unit"),
    MetricSpec("p50_revenue", "quantile", Measure("purchase", "sum", cap=60.0), quantile=0.5,
               quantile_scope="unit"),
    MetricSpec("p95_view", "quantile", Measure("view", "sum", 48), quantile=0.95, quantile_scope="event"),
    MetricSpec("p10_view", "quantile", Measure("view", "sum", cap=50.0), quantile=0.1, quantile_scope="event"),
)  # fmt: skip


def _order_statistics(values: list[float], level: float) -> tuple[int, float, list[float]]:
    array = np.asarray(values, dtype=float)
    estimate = float(np.quantile(array, level, method="inverted_cdf"))
    grid = [float(np.quantile(array, p, method="inverted_cdf")) for p in grid_levels(level)]
    return array.size, estimate, grid


def reference_quantiles(spec, exposures, events) -> dict[str, list[tuple[str, QuantileStats]]]:
    """Each quantile metric's per-variant summary, unit by unit in Python, order statistics by numpy."""
    units, _ = _units(spec, exposures)
    unique = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    by_unit = defaultdict(list)
    for event in unique.values():
        if _analysed(spec, event.environment) and event.timestamp < spec.until:
            by_unit[event.unit_id].append(event)
    result = {}
    for metric in spec.metrics:
        if metric.type != "quantile":
            continue
        measure, level = metric.measure, metric.quantile
        per_variant = []
        for variant in spec.variants:
            members = [(u, t0) for u, (t0, v) in units.items() if v == variant]
            if metric.quantile_scope == "unit":
                values = [_post(measure, by_unit[u], t0) for u, t0 in members]
                n, estimate, grid = _order_statistics(values, level)
                n_star, lower, upper = select_bounds(n, grid)
                per_variant.append((variant, QuantileStats(n, n_star, level, estimate, lower, upper)))
                continue
            per_unit = []
            for u, t0 in members:
                end = None if measure.window_hours is None else t0 + measure.window_hours * HOUR
                in_window = [
                    e.value
                    for e in by_unit[u]
                    if e.name == measure.event and t0 <= e.timestamp and (end is None or e.timestamp < end)
                ]
                per_unit.append([v if measure.cap is None else min(v, measure.cap) for v in in_window])
            n, estimate, grid = _order_statistics([v for vs in per_unit for v in vs], level)
            n_star, lower, upper = select_bounds(n, grid)
            s = np.array([sum(1 for v in vs if v <= estimate) for vs in per_unit], dtype=float)
            m = np.array([len(vs) for vs in per_unit], dtype=float)
            per_variant.append(
                (
                    variant,
                    QuantileClusteredStats(
                        n, n_star, level, estimate, lower, upper, units=len(members),
                        main_sum=s.sum(), main_sum_squares=(s * s).sum(), denominator_sum=m.sum(),
                        denominator_sum_squares=(m * m).sum(), main_denominator_sum_product=(s * m).sum(),
                    ),
                )
            )  # fmt: skip
        result[metric.key] = per_variant
    return result


def test_quantile_rollup__generated_data__order_statistics_match_numpy(clickhouse):
    # Given the generated experiment, with quantile metrics beside the additive ones
    spec, exposures, events, replays = generate(seed=7, units=400)
    spec = dataclasses.replace(spec, metrics=spec.metrics + QUANTILE_METRICS)
    write(exposures, events)
    write(events=replays)

    # When it is rolled up
    rollup = rollup_run(spec)

    # Then every quantile metric's summary is numpy's on the same observations, exactly
    expected = reference_quantiles(spec, exposures, events)
    for metric in QUANTILE_METRICS:
        got, want = rollup.totals[metric.key], expected[metric.key]
        assert [v for v, _ in got] == [v for v, _ in want]
        for (variant, g), (_, w) in zip(got, want, strict=True):
            assert type(g) is type(w), (metric.key, variant)
            for f in dataclasses.fields(w):
                assert getattr(g, f.name) == pytest.approx(getattr(w, f.name), rel=1e-12), (
                    metric.key, variant, f.name,
                )  # fmt: skip
        assert sum(s.n for _, s in got) > 0
    # and the additive metrics are untouched by them
    assert set(rollup.totals) == {m.key for m in spec.metrics}
    assert rollup.spec == spec


def test_quantile_rollup__units_without_events__count_as_zero_in_unit_scope(clickhouse):
    t0 = dt.datetime(2024, 5, 10, 12, tzinfo=dt.UTC)

    metric = MetricSpec("p50", "quantile", Measure("purchase", "sum"), quantile=0.5, quantile_scope="unit")
    exposures = [Exposure(f"u{i}", "control", t0) for i in range(5)]
    events = [
        Event(f"u{i}", "purchase", t0 + dt.timedelta(hours=1), 10.0 * (i + 1), uuid.uuid4()) for i in range(2)
    ]
    write(exposures, events)

    stats = dict(rollup_run(spec_of(metric)).totals["p50"])
    assert stats["control"].n == 5
    assert stats["control"].estimate == 0.0  # three of five units bought nothing
    assert stats["treatment"].n == 0


def test_quantile_query__values__bound_never_in_the_sql(clickhouse):
    spec, _, _, _ = generate(seed=3)
    spec = dataclasses.replace(spec, metrics=QUANTILE_METRICS)
    for metric in QUANTILE_METRICS:
        statement = QuantileQuery(spec).quantile_statement(metric)
        assert str(metric.quantile) not in statement.sql
        assert "purchase" not in statement.sql and "view" not in statement.sql.replace("view(", "")
        assert statement.params["p_level"] == metric.quantile


def test_quantile_query__cluster__each_shard_reduces_the_initiator_merges():
    spec, _, _, _ = generate(seed=3)
    for metric in QUANTILE_METRICS:
        statement = QuantileQuery(spec, shards=Shards(cluster="c", database="d")).quantile_statement(metric)
        assert "cluster({p_cluster:String}, view(" in statement.sql
        assert "groupArrayArray(shard.observed)" in statement.sql
        assert "d.events_dedup_local" in statement.sql and "d.exposures_local" in statement.sql
        assert statement.params["p_cluster"] == "c"


def test_quantile_rollup__incremental_refresh__quantiles_recomputed_whole_and_equal_cold(clickhouse):
    # Given the generated experiment with quantile metrics, refreshed incrementally from a full refresh
    from analytics.rollup.incremental import rollup_refresh

    spec, exposures, events, replays = generate(seed=11, units=200)
    spec = dataclasses.replace(spec, metrics=spec.metrics + QUANTILE_METRICS)
    write(exposures, events)
    read_at = spec.until + HOUR
    first = rollup_refresh(spec, previous=None, read_at=read_at, watermark=read_at - HOUR)
    write(events=replays)
    second = rollup_refresh(
        spec, previous=first.state, read_at=read_at + HOUR, watermark=read_at + HOUR - HOUR
    )

    # Then both refreshes carry every quantile metric, equal to the cold roll-up's, and the
    # incremental one really was incremental
    cold = rollup_run(spec)
    assert (first.kind, second.kind) == ("full", "incremental")
    for rollup in (first, second):
        assert rollup.spec == spec
        for metric in QUANTILE_METRICS:
            assert rollup.totals[metric.key] == cold.totals[metric.key], metric.key
