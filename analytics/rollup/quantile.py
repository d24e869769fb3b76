"""Quantile metrics' SQL: exact order statistics per variant, computed in ClickHouse.

A quantile is not a sum over units, so it cannot ride in the roll-up's additive statement
(:mod:`analytics.rollup.query`); each quantile metric gets one statement of its own, over the same
units (first exposure, one variant only, analysed environments) and the same events (window, cap)
as every other metric, built by the same builder. Per variant it returns:

* ``n``: the observations: the variant's units (``unit`` scope: each unit's capped sum of the event's
  ``value`` in its window; units without such events count as 0), or the events in the units'
  windows (``event`` scope: each event's capped ``value``);
* ``estimate``: the order statistic at rank max(1, ⌈n·ν⌉) of the sorted observations, and ``grid``:
  those at the 40 bound levels of GrowthBook's n* grid (:func:`analytics.stats.quantile.grid_levels`,
  bound as one ``Array(Float64)``). Exact: ``arraySort`` of every observation of the variant, then
  ``arrayElement`` at the computed ranks (n·p in double precision, as Python computes it); the
  choice of n* among the grid is made in Python (:func:`analytics.stats.quantile.select_bounds`);
* ``event`` scope only, the clustering sums over the variant's units: Sᵢ, the unit's events at or
  below the variant's estimate, and Nᵢ, its events (Σ S, Σ S², Σ N, Σ N², Σ S·N), and K, the units.

Memory: one Float64 per observation of a variant (twice for ``event`` scope: the sorted copy and
each unit's own array, needed to count its events at or below the estimate after it is known); the
events are read once. On a ClickHouse cluster (:class:`~analytics.rollup.query.Shards`) each shard
reduces its own units and events to per-variant observations and the initiator concatenates them and
takes the order statistics: exact, and unavoidable for an exact quantile, the observations (one
number per unit or per event, never the event rows) cross the network once.

Every refresh recomputes a quantile whole: order statistics do not add up from increments. The
statement reads the experiment's exposures twice (units per variant, and the units the events join)
and its events once.

Built on :class:`~analytics.rollup.query.RollupQuery`'s own pieces (its units and events subqueries,
window conditions and parameter binding), so a quantile sees exactly the units and events every other
metric sees.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from analytics import clickhouse
from analytics.rollup.query import QUERY_SETTINGS, RollupQuery, Shards, Statement, select
from analytics.rollup.spec import MetricSpec, RollupSpec
from analytics.stats.quantile import (
    QuantileClusteredStats,
    QuantileStats,
    grid_levels,
    select_bounds,
)

if TYPE_CHECKING:
    from analytics.rollup.refresh import Rollup


def _rank(n: str, level: str) -> str:
    """The 1-based rank max(1, ⌈n·level⌉), at most n (analytics.stats.quantile.order_statistic_rank)."""
    return f"least({n}, greatest(toUInt64(1), toUInt64(ceil({n} * {level}))))"


class QuantileQuery(RollupQuery):
    """The statement of one quantile metric of the experiment (the roll-up's builder, one more output)."""

    def quantile_statement(self, metric: MetricSpec) -> Statement:
        if metric.type != "quantile" or metric.quantile is None:
            raise ValueError(f"{metric.key} is not a quantile metric.")
        self.params = {}
        index = self._measure_index(metric.measure)
        level = self._bind("level", "Float64", float(metric.quantile))
        levels = self._bind("grid_levels", "Array(Float64)", grid_levels(metric.quantile))
        cap = metric.measure.cap
        joined = (
            f"({self._events_sql()}) AS e INNER JOIN ({self._units_sql(summary=False)}) AS u "
            "ON e.unit_key = u.unit_key"
        )
        # A dimension breakdown groups by (level, variant) wherever this groups by variant.
        level_column = self._level_keys("dimension_level AS level")
        unit_level = self._level_keys("any(u.dimension_level) AS unit_level")
        by_unit_level = self._level_keys("unit_level")
        units = select(
            [*level_column, "variant_index", "count() AS units"],
            f"({self._units_sql(summary=False)})",
            group_by=", ".join([*self._level_keys("level"), "variant_index"]),
        )
        if metric.quantile_scope == "unit":
            raw = f"sumIf(e.value, {self._window(index)})"
            value = raw if cap is None else f"least({raw}, {self._bind('cap', 'Float64', float(cap))})"
            per_unit = select(
                ["any(u.variant_index) AS unit_variant", *unit_level, f"toFloat64({value}) AS y"],
                joined,
                group_by="e.unit_key",
            )
            observations = select(
                [*by_unit_level, "unit_variant", "groupArray(y) AS observed"],
                f"({per_unit})",
                group_by=", ".join([*by_unit_level, "unit_variant"]),
            )
            # Units without events in the window are 0s: as many as the variant's units not listed.
            sorted_values = (
                "arraySort(arrayConcat(arrayWithConstant(toUInt64(p.units - length(p.observed)), "
                "toFloat64(0)), p.observed))"
            )
            extra: list[str] = []
        else:
            value = (
                "e.value" if cap is None else f"least(e.value, {self._bind('cap', 'Float64', float(cap))})"
            )
            per_unit = select(
                [
                    "any(u.variant_index) AS unit_variant",
                    *unit_level,
                    f"groupArray(toFloat64({value})) AS unit_values",
                ],
                joined,
                where=self._window(index),
                group_by="e.unit_key",
            )
            observations = select(
                [*by_unit_level, "unit_variant", "groupArray(unit_values) AS observed"],
                f"({per_unit})",
                group_by=", ".join([*by_unit_level, "unit_variant"]),
            )
            sorted_values = "arraySort(arrayFlatten(p.observed))"
            below = "arrayMap(v -> toFloat64(arrayCount(x -> x <= estimate, v)), p.observed)"
            events = "arrayMap(v -> toFloat64(length(v)), p.observed)"
            extra = [
                f"{below} AS s",
                f"{events} AS m",
                "arraySum(s) AS main_sum",
                "arraySum(arrayMap(x -> x * x, s)) AS main_sum_squares",
                "arraySum(m) AS denominator_sum",
                "arraySum(arrayMap(x -> x * x, m)) AS denominator_sum_squares",
                "arraySum(arrayMap((a, b) -> a * b, s, m)) AS main_denominator_sum_product",
            ]
        # Per variant: its units and its observations (unit scope: the values of units with events;
        # event scope: each unit's event values). On a cluster every shard answers for its own units
        # and the initiator concatenates the shards' observations (groupArrayArray), exact because a
        # unit and its events live on one shard (analytics.rollup.query's docstring).
        on = "o.unit_variant = c.variant_index" + (" AND o.unit_level = c.level" if level_column else "")
        partial = select(
            [
                *self._level_keys("c.level AS level"),
                "c.variant_index AS variant_index",
                "c.units AS units",
                "o.observed AS observed",
            ],
            f"({units}) AS c LEFT JOIN ({observations}) AS o ON {on}",
        )
        if self.shards is not None:
            cluster = self._bind("cluster", "String", self.shards.cluster)
            partial = select(
                [
                    *self._level_keys("level"),
                    "variant_index",
                    "sum(shard.units) AS units",
                    "groupArrayArray(shard.observed) AS observed",
                ],
                f"cluster({cluster}, view({partial})) AS shard",
                group_by=", ".join([*self._level_keys("level"), "variant_index"]),
            )
        columns = [
            *self._level_keys("p.level AS level"),
            "p.variant_index AS variant_index",
            "p.units AS units",
            f"{sorted_values} AS sorted_values",
            "toUInt64(length(sorted_values)) AS n",
            f"if(n = 0, 0, arrayElement(sorted_values, {_rank('n', level)})) AS estimate",
            f"arrayMap(q -> if(n = 0, 0, arrayElement(sorted_values, {_rank('n', 'q')})), {levels}) AS grid",
            *extra,
        ]
        sql = select(columns, f"({partial}) AS p")
        outer = [*self._level_keys("level"), "variant_index", "units", "n", "estimate", "grid"]
        if metric.quantile_scope == "event":
            outer += [
                "main_sum",
                "main_sum_squares",
                "denominator_sum",
                "denominator_sum_squares",
                "main_denominator_sum_product",
            ]
        order = ", ".join([*self._level_keys("level"), "variant_index"])
        return Statement(select(outer, f"({sql})", order_by=order), self.params)


def quantile_stats_from_row(metric: MetricSpec, row: dict[str, Any] | None) -> QuantileStats:
    """One variant's summary from the statement's row (None: a variant without units)."""
    level = float(metric.quantile or 0.0)
    clustered = metric.quantile_scope == "event"
    n = int(row["n"]) if row else 0
    if n == 0:
        empty = QuantileStats(n=0, n_star=0, level=level, estimate=0.0, lower=0.0, upper=0.0)
        if clustered:
            units = int(row["units"]) if row else 0
            return QuantileClusteredStats(**vars(empty), units=units)
        return empty
    n_star, lower, upper = select_bounds(n, [float(x) for x in row["grid"]])
    common = dict(n=n, n_star=n_star, level=level, estimate=float(row["estimate"]), lower=lower, upper=upper)
    if not clustered:
        return QuantileStats(**common)
    return QuantileClusteredStats(
        **common,
        units=int(row["units"]),
        main_sum=float(row["main_sum"]),
        main_sum_squares=float(row["main_sum_squares"]),
        denominator_sum=float(row["denominator_sum"]),
        denominator_sum_squares=float(row["denominator_sum_squares"]),
        main_denominator_sum_product=float(row["main_denominator_sum_product"]),
    )


def quantile_totals(query: QuantileQuery, metric: MetricSpec) -> list[tuple[str, QuantileStats]]:
    """Run the metric's statement; (variant key, summary) in the experiment's order."""
    statement = query.quantile_statement(metric)
    rows = clickhouse.query(statement.sql, statement.params, settings=QUERY_SETTINGS)
    variants = query.spec.variants
    by_variant = {
        variants[int(r["variant_index"]) - 1]: r
        for r in rows
        if 1 <= int(r["variant_index"]) <= len(variants)
    }
    return [(v, quantile_stats_from_row(metric, by_variant.get(v))) for v in variants]


def without_quantiles(spec: RollupSpec) -> RollupSpec:
    """The spec of the additive roll-up: every metric but the quantile ones."""
    return replace(spec, metrics=tuple(m for m in spec.metrics if m.type != "quantile"))


def rollup_quantiles(rollup: Rollup, spec: RollupSpec, shards: Shards | None) -> None:
    """Add the quantile metrics of ``spec`` to a roll-up made from :func:`without_quantiles` (the
    hook in :func:`analytics.rollup.refresh.rollup_run`): their totals."""
    rollup.spec = spec
    metrics = [m for m in spec.metrics if m.type == "quantile"]
    if not metrics:
        return
    query = QuantileQuery(
        spec,
        exact_unit_keys=rollup.exact_unit_keys,
        first_exposure=rollup.first_exposure_at,
        shards=shards,
    )
    for metric in metrics:
        if rollup.first_exposure_at is None:  # no exposures yet
            rollup.totals[metric.key] = [(v, quantile_stats_from_row(metric, None)) for v in spec.variants]
            continue
        rollup.totals[metric.key] = quantile_totals(query, metric)
