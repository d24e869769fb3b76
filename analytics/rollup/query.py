"""The roll-up's SQL: one statement per experiment, one block of columns per metric.

Two statements, both built here from a :class:`RollupSpec`:

``units`` (the exposure summary): each unit's first exposure t0 and variant, reduced to units per
(variant, entry day), plus the units seen in several variants (excluded, counted) or in a variant the
experiment does not have. Cheap: it reads the experiment's slice of ``exposures`` only.

Both statements read only the rows of the spec's ``environments`` (the experiment's analysed
environments, production by default): exposures and events sent with other SDK keys do not exist
for the analysis, so a test unit neither enters a variant nor lends its events to one.

``metrics`` (the roll-up proper), innermost first:

1. the experiment's units (as above, valid ones only), a hash table of ~24 bytes per unit;
2. one pass over ``events_dedup`` for every event name any metric uses (``name IN ...``), between the
   earliest CUPED look-back and the analysis time, each event tagged with a small integer code for its
   name, hash-joined to its unit (the units are the build side: events stream through);
3. ``GROUP BY`` unit: every measure's raw value (``countIf`` / ``sumIf`` of the event code and the
   unit's window, ``t0 <= ts < t0 + window``) and CUPED covariate (``t0 - lookback <= ts < t0``) as
   conditional aggregates, all in the same pass; for the metrics with a time series, the unit's
   in-window events as (day, increment per measure) pairs, sorted by day;
4. per unit: caps (a percentile cap, ``cap_percentile``, is a number computed beforehand by
   ``caps_statement`` over the same per-unit values of every analysed unit, then bound like a fixed
   one) and the binomial 0/1 applied to the sums, and for time-series measures the value
   after each of the unit's event days (``arrayCumSum``, capped after summing) and how much each
   statistics term (y, y², xy, m·d) changed on that day;
5. ``ARRAY JOIN`` over [entry day, event days...] and ``GROUP BY (variant, day)``: per-variant sums of
   y, y², x, x², xy and the ratio cross-products, as *increments* per day (a few hundred rows).

Why increments: a unit's contribution to Σy² on day d is f(v(d))², where v(d) is its running total,
and that is not additive over events. Its change on an event day, f(v_k)² − f(v_{k−1})², is; so the
cumulative sum of the per-day increments over days is exactly the statistic "over units exposed by
the end of day d, with their events up to the end of day d" (docs/api.md, Results ``timeseries``),
caps and binomials included, and the sum over all days is the final result. Metrics without a time
series put their whole per-unit value on the unit's entry day (k = 1), so the same output carries
both. Units without events never reach step 3: they only add to n, which comes from ``units``.

Why a 64-bit hash of unit_id as the join and grouping key: it halves the cost of the join and of the
grouping against String keys (measured on 10M events). Two units of the experiment sharing a hash
would be merged, so the ``units`` statement checks for that (``min(unit_id) != max(unit_id)`` per
hash) and the caller then rebuilds the query with ``exact_unit_keys=True`` (String keys). A unit
outside the experiment whose id collides with a unit inside it would lend it its events: with 1M
units and 100M other ids, a chance of about 5·10⁻⁶ per analysis, for one unit.

On a ClickHouse cluster (:class:`Shards`), both statements run whole on every shard, over the shard's
own tables (``exposures_local``, ``events_dedup_local``) inside ``cluster(<name>, view(...))``, and
the initiator only adds up the shards' rows per (variant, day): sums and counts add, first and last
times take their min and max. That is exact because the tables are sharded by
``cityHash64(unit_id)``: a unit's exposures and events, and every unit sharing its hash, are on one
shard, so its first exposure, its join, its caps and the collision check never need another shard.
Reading the ``Distributed`` tables instead would run everything above the innermost scan on the
initiator: every event of the experiment would cross the network (measured on a two-shard cluster
of one server with ``distributed_product_mode = 'local'``: n counted once, Σy twice, Σy² four times).

Every value (experiment key, variant and event names, windows, caps, look-backs, times) is a bound
``{p_name:Type}`` parameter; only identifiers the builder makes from indices (``m0_sum``, ``y_3``)
and integer event codes are part of the SQL text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from analytics.rollup.spec import MISSING_LEVEL, Dimension, Measure, MetricSpec, RollupSpec
from analytics.stats import CupedStats, RatioCupedStats, RatioStats, SampleStats

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

# ClickHouse settings for the roll-up. ``events_dedup`` is ``events FINAL``: with this setting FINAL
# merges replays within each partition only (a month; a replay keeps its timestamp, so its month),
# and skips the merge entirely for partitions already merged to one part, which is what makes FINAL
# cost next to nothing on settled data. See the events table's comment in migrations_sql/0001.
QUERY_SETTINGS = {"do_not_merge_across_partitions_select_final": 1}


# --- statistics fields --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Term:
    """One sum over units: of a measure's value (``post``), its covariate (``pre``) or a product."""

    kind: str  # "post" (Σy), "post2" (Σy_a·y_b), "pre" (Σx), "pre2" (Σx_a·x_b), "mixed" (Σy_a·x_b)
    a: str  # "m" (the metric's measure, a ratio's numerator) or "d" (a ratio's denominator)
    b: str | None = None


# The sums each statistics class needs, by field name (n comes from the units statement).
STATS_TERMS: dict[type, dict[str, Term]] = {
    SampleStats: {"sum": Term("post", "m"), "sum_squares": Term("post2", "m", "m")},
    CupedStats: {
        "sum": Term("post", "m"),
        "sum_squares": Term("post2", "m", "m"),
        "pre_sum": Term("pre", "m"),
        "pre_sum_squares": Term("pre2", "m", "m"),
        "sum_products": Term("mixed", "m", "m"),
    },
    RatioStats: {
        "m_sum": Term("post", "m"),
        "m_sum_squares": Term("post2", "m", "m"),
        "d_sum": Term("post", "d"),
        "d_sum_squares": Term("post2", "d", "d"),
        "md_sum_products": Term("post2", "m", "d"),
    },
}
STATS_TERMS[RatioCupedStats] = {
    **STATS_TERMS[RatioStats],
    "m_pre_sum": Term("pre", "m"),
    "m_pre_sum_squares": Term("pre2", "m", "m"),
    "d_pre_sum": Term("pre", "d"),
    "d_pre_sum_squares": Term("pre2", "d", "d"),
    "m_post_m_pre_sum_products": Term("mixed", "m", "m"),
    "d_post_d_pre_sum_products": Term("mixed", "d", "d"),
    "m_pre_d_pre_sum_products": Term("pre2", "m", "d"),
    "m_post_d_pre_sum_products": Term("mixed", "m", "d"),
    "m_pre_d_post_sum_products": Term("mixed", "d", "m"),
}
assert all(set(terms) == {f.name for f in fields(cls)} - {"n"} for cls, terms in STATS_TERMS.items()), (
    "every statistics field has a term"
)


def stats_class(metric: MetricSpec) -> type:
    """The statistics dataclass the engine expects for ``metric``."""
    if metric.is_ratio:
        return RatioCupedStats if metric.cuped else RatioStats
    return CupedStats if metric.cuped else SampleStats


def metric_columns(index: int, metric: MetricSpec) -> dict[str, str]:
    """Statistics field → output column of the ``metrics`` statement, for the metric at ``index``."""
    return {name: f"m{index}_{name}" for name in STATS_TERMS[stats_class(metric)]}


# --- the builder --------------------------------------------------------------------------------------
def select(
    columns: Sequence[str],
    source: str,
    *,
    where: str | None = None,
    array_join: Sequence[str] = (),
    group_by: str | None = None,
    having: str | None = None,
    order_by: str | None = None,
    limit: int | None = None,
) -> str:
    """One ``SELECT``, assembled from its clauses: the only place the roll-up joins SQL text.

    Every part comes from the builder: column expressions over identifiers it names from indices,
    table names, subqueries it built, and ``{p_name:Type}`` placeholders. No value is ever one of
    them (values travel as bound parameters), hence the S608 waiver.
    """
    clauses = [f"SELECT {', '.join(columns)}", f"FROM {source}"]  # noqa: S608 - see the docstring
    if array_join:
        clauses.append(f"ARRAY JOIN {', '.join(array_join)}")
    if where:
        clauses.append(f"WHERE {where}")
    for keyword, clause in (("GROUP BY", group_by), ("HAVING", having), ("ORDER BY", order_by)):
        if clause:
            clauses.append(f"{keyword} {clause}")
    if limit is not None:
        clauses.append(f"LIMIT {int(limit)}")
    return " ".join(clauses)


# How the shards' rows of a units statement combine on a cluster (by variant and entry day)
UNITS_MERGES = {
    "units": "sum",
    "first_exposure_ms": "min",
    "last_exposure_ms": "max",
    "key_collisions": "sum",
}


@dataclass(frozen=True)
class Shards:
    """The roll-up runs per shard of ``cluster``, over the shard-local tables of ``database``."""

    cluster: str
    database: str
    # The Distributed tables' routing, slot by slot (cityHash64(unit_id) % len(slots) picks one): the
    # shard number owning it. Needed by statements that write per-unit rows (the incremental state).
    slots: tuple[int, ...] = ()
    replicated: bool = False  # the shard-local tables are Replicated* (statements on them: ON CLUSTER)

    def table(self, name: str) -> str:
        """The shard's own part of a table or view (``<name>_local``, see analytics.clickhouse.cluster)."""
        return f"{self.database}.{name}_local"


@dataclass(frozen=True)
class Statement:
    """SQL with ``{p_name:Type}`` placeholders and the values to bind to them."""

    sql: str
    params: dict[str, Any]


class RollupQuery:
    """Builds the ``units`` and ``metrics`` statements of one experiment's roll-up.

    ``exact_unit_keys``: join and group on unit_id itself instead of its 64-bit hash (slower; used
    when two of the experiment's units share a hash, see the module docstring). ``first_exposure``:
    the experiment's earliest exposure (from the units statement), so the event scan can skip what
    no unit can count (older than the longest CUPED look-back before it). ``dimension``: also group
    every statement by each unit's level of that dimension (a dimension breakdown,
    :mod:`analytics.rollup.dimensions`): the output gains a ``level`` key column.
    """

    def __init__(
        self,
        spec: RollupSpec,
        *,
        exact_unit_keys: bool = False,
        first_exposure: dt.datetime | None = None,
        shards: Shards | None = None,
        caps: dict[Measure, float | None] | None = None,
        dimension: Dimension | None = None,
    ) -> None:
        self.spec = spec
        self.dimension = dimension
        # The percentile-capped measures' caps, from caps_statement (None: no cap, no nonzero value)
        self.caps = caps or {}
        self.shards = shards
        self.exact_unit_keys = exact_unit_keys
        self.first_exposure = first_exposure
        self.events: list[str] = sorted({m.event for metric in spec.metrics for m in metric.measures})
        self.measures: list[Measure] = []  # distinct measures, each computed once
        self.covariates: list[tuple[Measure, int]] = []  # distinct (measure, look-back days)
        self.series_measures: list[int] = []  # indexes into measures that need daily values
        for metric in spec.metrics:
            for measure in metric.measures:
                index = self._measure_index(measure)
                if metric.timeseries and index not in self.series_measures:
                    self.series_measures.append(index)
                if metric.cuped and (measure, metric.cuped_lookback_days) not in self.covariates:
                    self.covariates.append((measure, metric.cuped_lookback_days))
        self.params: dict[str, Any] = {}  # the parameters of the statement being built

    def _measure_index(self, measure: Measure) -> int:
        if measure not in self.measures:
            self.measures.append(measure)
        return self.measures.index(measure)

    # --- parameters ------------------------------------------------------------------------------------
    def _bind(self, name: str, type_name: str, value: Any) -> str:
        """A ``{p_name:Type}`` placeholder for ``value`` (recorded in ``params``)."""
        self.params[f"p_{name}"] = value
        return f"{{p_{name}:{type_name}}}"

    def _table(self, name: str) -> str:
        """The table or view to read: itself on one server, the shard's own part on a cluster."""
        return name if self.shards is None else self.shards.table(name)

    def _statement(self, sql: str, keys: Sequence[str], merges: dict[str, str]) -> Statement:
        """The statement with its parameters; on a cluster, run on every shard and merged by ``keys``
        (each other column through its ``merges`` function), see the module docstring."""
        if self.shards is None:
            return Statement(sql, self.params)
        cluster = self._bind("cluster", "String", self.shards.cluster)
        columns = [*keys, *(f"{merge}(shard.{column}) AS {column}" for column, merge in merges.items())]
        key_list = ", ".join(keys)
        sql = select(
            columns, f"cluster({cluster}, view({sql})) AS shard", group_by=key_list, order_by=key_list
        )
        return Statement(sql, self.params)

    def _code(self, measure: Measure) -> int:
        """The small integer standing for the measure's event name in the SQL (1-based)."""
        return self.events.index(measure.event) + 1

    # --- units ----------------------------------------------------------------------------------------
    def _unit_key(self) -> str:
        return "unit_id" if self.exact_unit_keys else "cityHash64(unit_id)"

    def _units_sql(self, *, summary: bool) -> str:
        """Each unit's first exposure (ms) and variant index: 1.. for the experiment's variants, 0 for
        a variant it does not have, −1 for a unit seen in several variants.

        Reads the ``exposures`` table rather than ``exposures_dedup``: min(timestamp) and the set of
        variants are the same with or without duplicate rows, so FINAL's merge would buy nothing. The
        variant becomes its index row by row (``transform`` works on the LowCardinality dictionary), so
        the per-unit minimum and maximum compare small integers, not strings.
        """
        experiment = self._bind("experiment", "String", self.spec.experiment)
        variants = self._bind("variants", "Array(String)", list(self.spec.variants))
        indexes = self._bind("variant_indexes", "Array(Int16)", list(range(1, len(self.spec.variants) + 1)))
        row_columns = [
            "unit_id",
            "timestamp",
            f"transform(variant, {variants}, {indexes}, 0) AS exposed_variant",
        ]
        if self.dimension is not None and self.dimension.attribute is not None:
            name = self._bind("dimension", "String", self.dimension.attribute)
            row_columns += [
                f"mapContains(attributes, {name}) AS has_level",
                f"attributes[{name}] AS row_level",
            ]
        rows = select(
            row_columns,
            self._table("exposures"),
            where=f"experiment = {experiment}{self._environment_filter()}",
        )
        columns = [
            f"{self._unit_key()} AS unit_key",
            "toUnixTimestamp64Milli(min(timestamp)) AS t0",
            "if(min(exposed_variant) = max(exposed_variant), min(exposed_variant), -1) AS variant_index",
        ]
        if self.dimension is not None:
            columns.append(f"{self._level_sql()} AS dimension_level")
        if summary:
            columns.append("toUnixTimestamp64Milli(max(timestamp)) AS unit_last_exposure_ms")
            columns.append(
                "0 AS key_collision"
                if self.exact_unit_keys
                else "min(unit_id) != max(unit_id) AS key_collision"
            )
        return select(
            columns, f"({rows})", group_by="unit_key", having=None if summary else "variant_index > 0"
        )

    def units_statement(self) -> Statement:
        """The exposure summary: units per (variant index, entry day), first/last exposure, collisions."""
        self.params = {}
        until = self._bind("until_ms", "Int64", self.spec.until_ms)
        columns = [
            *self._level_keys("dimension_level AS level"),
            "variant_index",
            f"intDiv(least(t0, {until}), {DAY_MS}) AS entry_day",
            "count() AS units",
            "min(t0) AS first_exposure_ms",
            "max(unit_last_exposure_ms) AS last_exposure_ms",
            "sum(key_collision) AS key_collisions",
        ]
        keys = ", ".join([*self._level_keys("level"), "variant_index", "entry_day"])
        sql = select(columns, f"({self._units_sql(summary=True)})", group_by=keys, order_by=keys)
        return self._statement(sql, (*self._level_keys("level"), "variant_index", "entry_day"), UNITS_MERGES)

    def _level_sql(self) -> str:
        """The unit's level (on the per-unit grouping of ``_units_sql``): its attribute on its first
        exposure (``__missing__`` when that exposure lacks it; of several first exposures at the same
        millisecond, one that has it, then the least value), or its entry day (UTC, as in
        ``units_statement``), as text. With ``dimension.levels`` given, the level's 1-based position
        in them instead, 0 for every other level (``__other__``): a small integer is cheaper to carry
        through the join and the groupings than the text (read back by ``dimensions.level_name``)."""
        dimension = self.dimension
        assert dimension is not None
        kept = (
            None
            if dimension.levels is None
            else self._bind("levels", "Array(String)", list(dimension.levels))
        )
        if dimension.attribute is None:
            until = self._bind("until_ms", "Int64", self.spec.until_ms)
            level = f"toString(toDate(fromUnixTimestamp64Milli(least(t0, {until}), 'UTC'), 'UTC'))"
            return level if kept is None else f"toUInt16(indexOf({kept}, {level}))"
        missing = self._bind("missing_level", "String", MISSING_LEVEL)
        order = "(timestamp, NOT has_level, row_level)"  # the first exposure, preferring one with it
        if kept is None:
            first = f"argMin((has_level, row_level), {order})"
            return f"if(tupleElement({first}, 1), tupleElement({first}, 2), {missing})"
        return f"argMin(toUInt16(indexOf({kept}, if(has_level, row_level, {missing}))), {order})"

    def _level_keys(self, column: str) -> list[str]:
        """``[column]`` when the statement is grouped by level too, else nothing."""
        return [column] if self.dimension is not None else []

    # --- per-unit conditions and values -------------------------------------------------------------------
    def _window(self, index: int) -> str:
        """The measure's conversion window on the joined row: t0 <= ts < t0 + window."""
        measure = self.measures[index]
        condition = f"e.code = {self._code(measure)} AND e.ts >= u.t0"
        if measure.window_hours is not None:
            window = self._bind(f"window_ms_{index}", "Int64", measure.window_hours * HOUR_MS)
            condition += f" AND e.ts < u.t0 + {window}"
        return condition

    def _lookback(self, index: int) -> str:
        """The covariate's window: t0 - lookback <= ts < t0."""
        measure, days = self.covariates[index]
        lookback = self._bind(f"lookback_ms_{index}", "Int64", days * DAY_MS)
        return f"e.code = {self._code(measure)} AND e.ts >= u.t0 - {lookback} AND e.ts < u.t0"

    @staticmethod
    def _raw(measure: Measure, condition: str) -> str:
        return f"sumIf(e.value, {condition})" if measure.kind == "sum" else f"countIf({condition})"

    def _value(self, measure: Measure, raw: str, cap_name: str) -> str:
        """A unit's value from its raw count or sum: 0/1 for binomial, else capped (docs/analysis.md)."""
        if measure.kind == "binomial":  # 0/1 already; a cap below 1 would make no sense
            return f"toFloat64({raw} > 0)"
        if measure.cap_percentile is not None and measure not in self.caps:
            raise ValueError(f"The percentile cap of {measure} must be computed first (caps_statement).")
        cap = measure.cap if measure.cap_percentile is None else self.caps[measure]
        if cap is None:
            return f"toFloat64({raw})"
        return f"least(toFloat64({raw}), {self._bind(cap_name, 'Float64', float(cap))})"

    def _increment(self, index: int) -> str:
        measure = self.measures[index]
        condition = self._window(index)
        return f"if({condition}, e.value, 0)" if measure.kind == "sum" else f"toFloat64({condition})"

    # --- metrics ----------------------------------------------------------------------------------------
    def _events_sql(self) -> str:
        events = self._bind("events", "Array(String)", self.events)
        codes = self._bind("event_codes", "Array(UInt8)", list(range(1, len(self.events) + 1)))
        until = self._bind("until", "DateTime64(3, 'UTC')", self.spec.until)
        since = self._bind("since", "DateTime64(3, 'UTC')", self._since())
        columns = [
            f"{self._unit_key()} AS unit_key",
            "toUnixTimestamp64Milli(timestamp) AS ts",
            f"transform(name, {events}, {codes}, 0) AS code",
            "value",
        ]
        environments = self._environment_filter()
        return select(
            columns,
            self._table("events_dedup"),
            where=f"name IN {events} AND timestamp >= {since} AND timestamp < {until}{environments}",
        )

    def _environment_filter(self) -> str:
        """`` AND environment IN (...)`` for the spec's environments; nothing when every one counts."""
        if self.spec.environments is None:
            return ""
        return (
            f" AND environment IN {self._bind('environments', 'Array(String)', list(self.spec.environments))}"
        )

    def _since(self) -> dt.datetime:
        """No unit can count an event older than this (the epoch when the first exposure is unknown)."""
        if self.first_exposure is None:
            return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        lookback = max((days for _, days in self.covariates), default=0)
        return max(self.first_exposure - dt.timedelta(days=lookback), dt.datetime(1970, 1, 1, tzinfo=dt.UTC))

    def _per_unit_sql(self) -> str:
        columns = [
            "any(u.variant_index) AS unit_variant",
            "any(u.t0) AS unit_t0",
            "max(e.ts) AS unit_last_event_ms",
            *self._level_keys("any(u.dimension_level) AS unit_level"),
        ]
        columns += [f"{self._raw(m, self._window(i))} AS r_{i}" for i, m in enumerate(self.measures)]
        columns += [f"{self._raw(m, self._lookback(i))} AS q_{i}" for i, (m, _) in enumerate(self.covariates)]
        if self.series_measures:
            element = ", ".join(
                [f"intDiv(e.ts, {DAY_MS})", *(self._increment(i) for i in self.series_measures)]
            )
            any_window = " OR ".join(f"({self._window(i)})" for i in self.series_measures)
            columns.append(f"arraySort(groupArrayIf(({element}), {any_window})) AS series")
        source = (
            f"({self._events_sql()}) AS e INNER JOIN ({self._units_sql(summary=False)}) AS u "
            "ON e.unit_key = u.unit_key"
        )
        return select(columns, source, group_by="e.unit_key")

    def _per_unit_values_sql(self) -> str:
        until = self._bind("until_ms", "Int64", self.spec.until_ms)
        columns = [
            "unit_variant",
            "unit_last_event_ms",
            f"intDiv(least(unit_t0, {until}), {DAY_MS}) AS entry_day",
            *self._level_keys("unit_level"),
        ]
        columns += [f"{self._value(m, f'r_{i}', f'cap_{i}')} AS y_{i}" for i, m in enumerate(self.measures)]
        columns += [
            f"{self._value(m, f'q_{i}', f'cap_{self.measures.index(m)}')} AS x_{i}"
            for i, (m, _) in enumerate(self.covariates)
        ]
        if self.series_measures:
            columns.append("arrayMap(s -> s.1, series) AS days")
            for position, i in enumerate(self.series_measures, start=2):
                running = f"arrayCumSum(arrayMap(s -> s.{position}, series))"
                value = self._value(self.measures[i], "c", f"cap_{i}")
                columns.append(f"arrayMap(c -> {value}, {running}) AS Y_{i}")  # value after each event day
                columns.append(f"arrayPopBack(arrayPushFront(Y_{i}, 0)) AS P_{i}")  # ... and before it
        return select(columns, f"({self._per_unit_sql()})")

    def caps_statement(self, units: int) -> Statement:
        """One row: ``cap_<k>``, the cap of the k-th measure of ``spec.percentile_capped``.

        The cap is ``quantileExactInclusive(p)`` (linear interpolation between the closest ranks:
        PostgreSQL's ``PERCENTILE_CONT``, numpy's default ``linear``, the exact form of GrowthBook's
        percentile cap) of the raw values of all ``units`` analysed units, every variant pooled. The
        per-unit relation only lists units with events (step 3), so the others are added as zeros:
        ``units`` minus the units listed. ``cap_ignore_zeros`` leaves every 0 out (GrowthBook nulls
        them). NaN when nothing is left: no cap. On a cluster the shards send their units' raw values
        (one number per unit and measure) and the initiator takes the quantile: a percentile is not a
        sum of the shards' answers.
        """
        self.params = {}
        capped = [(k, self.measures.index(m), m) for k, m in enumerate(self.spec.percentile_capped)]
        if not capped:
            raise ValueError("The spec has no percentile-capped measure.")
        per_unit = select([f"toFloat64(r_{i}) AS v_{i}" for _, i, _ in capped], f"({self._per_unit_sql()})")
        if self.shards is not None:
            cluster = self._bind("cluster", "String", self.shards.cluster)
            per_unit = select(["*"], f"cluster({cluster}, view({per_unit}))")
        total = self._bind("analysed_units", "UInt64", units)
        zeros = f"arrayWithConstant(toUInt64(greatest(toInt64({total}) - toInt64(count()), 0)), toFloat64(0))"
        arrays = select(
            [f"arrayConcat(groupArray(v_{i}), {zeros}) AS a_{i}" for _, i, _ in capped], f"({per_unit})"
        )
        columns = []
        for k, i, measure in capped:
            level = self._bind(f"cap_level_{k}", "Float64", float(measure.cap_percentile))
            if measure.cap_ignore_zeros:
                columns.append(f"quantileExactInclusiveIf({level})(w_{i}, w_{i} != 0) AS cap_{k}")
            else:
                columns.append(f"quantileExactInclusive({level})(w_{i}) AS cap_{k}")
        sql = select(columns, f"({arrays})", array_join=[f"a_{i} AS w_{i}" for _, i, _ in capped])
        return Statement(sql, self.params)

    def _roles(self, metric: MetricSpec) -> tuple[dict[str, int], dict[str, int]]:
        """Measure and covariate indexes of the metric's "m" (value, numerator) and "d" (denominator)."""
        post = {"m": self._measure_index(metric.measure)}
        if metric.denominator is not None:
            post["d"] = self._measure_index(metric.denominator)
        pre = {}
        if metric.cuped:
            pre = {
                r: self.covariates.index((self.measures[i], metric.cuped_lookback_days))
                for r, i in post.items()
            }
        return post, pre

    @staticmethod
    def _unit_term_inputs(term: Term, post: dict[str, int], pre: dict[str, int]) -> tuple[str, str]:
        """The two per-unit columns whose product is the term (the same twice for a square; a single
        value is its product with the constant 1)."""
        first = f"x_{pre[term.a]}" if term.kind in ("pre", "pre2") else f"y_{post[term.a]}"
        if term.kind in ("post", "pre"):
            return first, "1"
        second = f"y_{post[term.b]}" if term.kind == "post2" else f"x_{pre[term.b]}"
        return first, second

    @staticmethod
    def _increments_sql(term: Term, post: dict[str, int], pre: dict[str, int]) -> str:
        """A post-exposure term's change on each of a unit's event days (see the module docstring)."""
        a = post[term.a]
        if term.kind == "post":
            return f"arrayMap((y, p) -> y - p, Y_{a}, P_{a})"
        if term.kind == "post2":
            b = post[term.b]
            return f"arrayMap((ya, yb, pa, pb) -> ya * yb - pa * pb, Y_{a}, Y_{b}, P_{a}, P_{b})"
        return f"arrayMap((y, p) -> x_{pre[term.b]} * (y - p), Y_{a}, P_{a})"  # mixed: x is fixed at t0

    def metrics_statement(self) -> Statement:
        """Per (variant index, day): every metric's statistics fields, as increments on that day.

        Each unit contributes an entry element (its entry day: the whole value of metrics without a
        time series, and every covariate term) and one element per event day of its time-series
        measures (their increments); ``ARRAY JOIN`` spreads them over days.
        """
        self.params = {}
        prepared = ["unit_variant", "arrayPushFront(days, entry_day) AS element_days"]
        columns = ["unit_variant AS variant_index", "day", "max(unit_last_event_ms) AS last_event_ms"]
        if self.dimension is not None:  # grouped by level too
            prepared.append("unit_level")
            columns.insert(0, "unit_level AS level")
        array_join = ["element_days AS day", "arrayEnumerate(element_days) AS k"]
        scalars: set[str] = set()
        merges = {"last_event_ms": "max"}
        for index, metric in enumerate(self.spec.metrics):
            post, pre = self._roles(metric)
            terms = STATS_TERMS[stats_class(metric)]
            for name, column in metric_columns(index, metric).items():
                merges[column] = "sum"
                term = terms[name]
                if metric.timeseries and term.kind not in ("pre", "pre2"):
                    prepared.append(
                        f"arrayPushFront({self._increments_sql(term, post, pre)}, 0) AS i_{column}"
                    )
                    array_join.append(f"i_{column} AS e_{column}")
                    columns.append(f"sum(e_{column}) AS {column}")
                else:  # the whole per-unit value, on the entry element only
                    first, second = self._unit_term_inputs(term, post, pre)
                    scalars.update(name for name in (first, second) if name != "1")
                    expression = first if second == "1" else f"{first} * {second}"
                    columns.append(f"sumIf({expression}, k = 1) AS {column}")
        prepared += sorted(scalars) + ["unit_last_event_ms"]
        if not self.series_measures:
            prepared[1] = "[entry_day] AS element_days"
        keys = ", ".join([*self._level_keys("unit_level"), "unit_variant", "day"])
        sql = select(
            columns,
            f"({select(prepared, f'({self._per_unit_values_sql()})')})",
            array_join=array_join,
            group_by=keys,
            order_by=keys,
        )
        return self._statement(sql, (*self._level_keys("level"), "variant_index", "day"), merges)


def day_date(day: int) -> dt.date:
    """The calendar date (UTC) of a day number (days since 1970-01-01)."""
    return dt.date(1970, 1, 1) + dt.timedelta(days=int(day))


def ms_datetime(ms: int | None) -> dt.datetime | None:
    """A UTC datetime from milliseconds since the epoch."""
    if ms is None:
        return None
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=int(ms))
