"""Dimension breakdowns: the roll-up of each level of a dimension, computed on demand in ClickHouse.

A dimension is an exposure attribute (``country``, ``browser``, ``plan``...: the ``attributes`` map
every exposure carries) or ``entry_day`` (the UTC day of the unit's first exposure). A unit's level is
the attribute's value on its first analysed exposure, ``__missing__`` when that exposure lacks the
attribute; a unit keeps that level whatever its later exposures say, so levels partition the units.

The breakdown keeps the 20 largest levels (by analysed units, ties by level name) and pools every other
level as ``__other__``. Each level is then rolled up exactly as the experiment is, by the roll-up's own
builder grouped by level (:class:`~analytics.rollup.query.RollupQuery` with a
:class:`~analytics.rollup.spec.Dimension`), so a level's sums are those of the roll-up of its units
alone, with one exception: a percentile cap (winsorizing) is the experiment-wide cap in every level,
computed over every analysed unit, as GrowthBook caps before it splits by dimension.

The statements, each over every level at once (never one query per level, never rows into Python):

1. ``levels``: the 20 largest levels and their units (the only statement whose rows are not per
   variant; a high-cardinality attribute is reduced inside ClickHouse);
2. ``units``: units per (level, variant, entry day), every level beyond the 20 as ``__other__``;
3. ``caps`` (only with percentile-capped measures): the experiment-wide caps, as in the roll-up;
4. ``metrics``: every non-quantile metric's sums per (level, variant) (no time series);
5. one per quantile metric: exact order statistics per (level, variant), ``__other__`` included.

Breakdowns are computed cold (every event of the experiment read) when asked for, then cached by the
caller until the next refresh of the experiment's results: they are not part of the incremental state.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from analytics import clickhouse
from analytics.rollup.quantile import QuantileQuery, quantile_stats_from_row, without_quantiles
from analytics.rollup.query import QUERY_SETTINGS, RollupQuery, Shards, Statement, select
from analytics.rollup.refresh import (
    Rollup,
    percentile_caps,
    read_metrics,
    read_units,
    record_caps,
    rollup_shards,
)
from analytics.rollup.spec import ENTRY_DAY, MAX_LEVELS, OTHER_LEVEL, Dimension, Measure, RollupSpec

ATTRIBUTE_NAMES_LIMIT = 200  # attribute names listed as dimensions, at most


@dataclass
class Breakdown:
    """A dimension's levels, largest first and ``__other__`` last, each with its own roll-up."""

    dimension: str
    levels: list[tuple[str, Rollup]]
    duration_ms: float = 0.0


class DimensionQuery(RollupQuery):
    """The breakdown's own statements, built from the roll-up builder's pieces (its per-unit relation,
    environment filter and parameter binding), so levels see exactly the units the roll-up sees."""

    def levels_statement(self) -> Statement:
        """The ``MAX_LEVELS`` largest levels of ``dimension``: (level, units), largest first.

        Units are the experiment's analysed units (one variant, one the experiment has). On a cluster
        each shard counts its own units per level and the initiator adds them up before ranking.
        """
        if self.dimension is None or self.dimension.levels is not None:
            raise ValueError("The levels statement ranks the raw levels of a dimension (levels=None).")
        self.params = {}
        sql = select(
            ["dimension_level AS level", "count() AS units"],
            f"({self._units_sql(summary=False)})",
            group_by="level",
        )
        if self.shards is not None:
            cluster = self._bind("cluster", "String", self.shards.cluster)
            sql = select(
                ["level", "sum(shard.units) AS units"],
                f"cluster({cluster}, view({sql})) AS shard",
                group_by="level",
            )
        sql = select(["level", "units"], f"({sql})", order_by="units DESC, level", limit=MAX_LEVELS)
        return Statement(sql, self.params)

    def attribute_names_statement(self) -> Statement:
        """The attribute names seen on the experiment's analysed exposures, in name order (at most
        ``ATTRIBUTE_NAMES_LIMIT``): the dimensions a breakdown may use, besides ``entry_day``."""
        self.params = {}
        experiment = self._bind("experiment", "String", self.spec.experiment)
        sql = select(
            ["DISTINCT arrayJoin(mapKeys(attributes)) AS name"],
            self._table("exposures"),
            where=f"experiment = {experiment}{self._environment_filter()}",
        )
        if self.shards is not None:
            cluster = self._bind("cluster", "String", self.shards.cluster)
            sql = select(["DISTINCT name"], f"cluster({cluster}, view({sql}))")
        sql = select(["name"], f"({sql})", order_by="name", limit=ATTRIBUTE_NAMES_LIMIT)
        return Statement(sql, self.params)

    def attribute_exists_statement(self, name: str) -> Statement:
        """One row when some exposure that :meth:`attribute_names_statement` reads carries the
        attribute ``name``, none otherwise: whether ``name`` is a dimension, also past the listed
        names' limit. Stops at the first such exposure (per shard on a cluster)."""
        self.params = {}
        experiment = self._bind("experiment", "String", self.spec.experiment)
        attribute = self._bind("attribute", "String", name)
        sql = select(
            ["1 AS found"],
            self._table("exposures"),
            where=f"experiment = {experiment}{self._environment_filter()} AND mapContains(attributes, {attribute})",
            limit=1,
        )
        if self.shards is not None:
            cluster = self._bind("cluster", "String", self.shards.cluster)
            sql = select(["found"], f"cluster({cluster}, view({sql}))", limit=1)
        return Statement(sql, self.params)


def levels_statement(spec: RollupSpec, dimension: Dimension, *, shards: Shards | None = None) -> Statement:
    """:meth:`DimensionQuery.levels_statement` of ``dimension`` (its raw levels ranked)."""
    raw = dataclasses.replace(dimension, levels=None)
    return DimensionQuery(spec, dimension=raw, shards=shards).levels_statement()


def attribute_names(spec: RollupSpec) -> list[str]:
    """The attribute names of :meth:`DimensionQuery.attribute_names_statement`."""
    statement = DimensionQuery(spec, shards=rollup_shards()).attribute_names_statement()
    return [str(row["name"]) for row in clickhouse.query(statement.sql, statement.params)]


def attribute_exists(spec: RollupSpec, name: str) -> bool:
    """Whether the experiment's analysed exposures carry the attribute ``name``
    (:meth:`DimensionQuery.attribute_exists_statement`)."""
    statement = DimensionQuery(spec, shards=rollup_shards()).attribute_exists_statement(name)
    return bool(clickhouse.query(statement.sql, statement.params))


def level_name(dimension: Dimension, code: int) -> str:
    """The level a statement's ``level`` column stands for: its position in ``dimension.levels``
    (1-based), 0 for ``__other__``."""
    assert dimension.levels is not None
    return dimension.levels[code - 1] if 1 <= code <= len(dimension.levels) else OTHER_LEVEL


def _by_level(dimension: Dimension, rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[level_name(dimension, int(row["level"]))].append(row)
    return grouped


def rollup_breakdown(spec: RollupSpec, dimension_name: str) -> Breakdown:
    """Roll the experiment up per level of ``dimension_name`` (``entry_day`` or an attribute name).

    Levels with no analysed unit do not appear. Raises ``ClickHouseError`` like the roll-up.
    """
    started = time.perf_counter()
    shards = rollup_shards()
    # Totals only: no time series per level; quantile metrics get their own statements.
    full_spec = dataclasses.replace(
        spec, metrics=tuple(dataclasses.replace(m, timeseries=False) for m in spec.metrics)
    )
    additive = without_quantiles(full_spec)

    statement = levels_statement(additive, Dimension(dimension_name), shards=shards)
    ranked = clickhouse.query(statement.sql, statement.params, settings=QUERY_SETTINGS)
    dimension = Dimension(dimension_name, levels=tuple(str(row["level"]) for row in ranked))
    if not ranked:
        return Breakdown(dimension=dimension_name, levels=[])

    statement = RollupQuery(additive, shards=shards, dimension=dimension).units_statement()
    unit_rows = _by_level(
        dimension, clickhouse.query(statement.sql, statement.params, settings=QUERY_SETTINGS)
    )
    levels: dict[str, tuple[Rollup, dict[int, dict[str, int]]]] = {}
    collisions = 0
    for level, rows in unit_rows.items():
        rollup, units_by_day, level_collisions = read_units(additive, rows)
        collisions += level_collisions
        if sum(rollup.units.values()):  # a level of excluded units only is no level
            levels[level] = (rollup, units_by_day)
    first_exposures = [r.first_exposure_at for r, _ in levels.values() if r.first_exposure_at is not None]
    options: dict[str, Any] = {
        "exact_unit_keys": collisions > 0,
        "first_exposure": min(first_exposures, default=None),
        "shards": shards,
    }

    # Winsorizing: the experiment-wide caps, over every analysed unit of every level.
    caps: dict[Measure, float | None] = {}
    if additive.percentile_capped:
        every_unit = Rollup(additive, units={"all": sum(sum(r.units.values()) for r, _ in levels.values())},
                            multiple_exposures=0, unknown_variant_units=0, first_exposure_at=None,
                            last_exposure_at=None, last_event_at=None)  # fmt: skip
        caps = percentile_caps(RollupQuery(additive, **options), every_unit)

    metric_rows: dict[str, list[dict[str, Any]]] = {}
    if additive.metrics:
        statement = RollupQuery(additive, caps=caps, dimension=dimension, **options).metrics_statement()
        metric_rows = _by_level(
            dimension, clickhouse.query(statement.sql, statement.params, settings=QUERY_SETTINGS)
        )

    quantile_rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    quantile_query = QuantileQuery(full_spec, dimension=dimension, **options)
    for metric in full_spec.metrics:
        if metric.type == "quantile":
            statement = quantile_query.quantile_statement(metric)
            rows = clickhouse.query(statement.sql, statement.params, settings=QUERY_SETTINGS)
            quantile_rows[metric.key] = _by_level(dimension, rows)

    result: list[tuple[str, Rollup]] = []
    variants = full_spec.variants
    for level, (rollup, units_by_day) in levels.items():
        read_metrics(rollup, metric_rows.get(level, []), units_by_day)
        record_caps(rollup, full_spec, caps)
        rollup.spec = full_spec
        for key, by_level in quantile_rows.items():
            metric = next(m for m in full_spec.metrics if m.key == key)
            rows_of_variant = {
                variants[int(r["variant_index"]) - 1]: r
                for r in by_level.get(level, [])
                if 1 <= int(r["variant_index"]) <= len(variants)
            }
            rollup.totals[key] = [
                (v, quantile_stats_from_row(metric, rows_of_variant.get(v))) for v in variants
            ]
        result.append((level, rollup))
    # Largest first, ties by name; the pooled rest last.
    result.sort(key=lambda item: (item[0] == OTHER_LEVEL, -sum(item[1].units.values()), item[0]))
    return Breakdown(
        dimension=dimension_name, levels=result, duration_ms=(time.perf_counter() - started) * 1000
    )


__all__ = [
    "ENTRY_DAY",
    "Breakdown",
    "DimensionQuery",
    "attribute_exists",
    "attribute_names",
    "levels_statement",
    "rollup_breakdown",
]
