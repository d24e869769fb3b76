"""The incremental roll-up's SQL: per-unit state in ClickHouse, recomputed for touched units only.

docs/analysis.md, "Incremental refresh", has the design; in short:

* ``rollup_units`` holds each unit's t0 and variant index, ``rollup_values`` each unit's *raw* value
  of every measure (count or sum in the window, before caps and 0/1 conversions), split by UTC day,
  and of every CUPED covariate (migrations_sql/0004). Both are keyed by hashes of what decides them
  (:func:`units_key`, :class:`ValueDef`), so a changed definition writes new rows beside the old ones.
* :meth:`StateQuery.touched_statement` finds the units whose exposures or events arrived after the
  previous watermark (``received_at``), or whose pending future-dated event the analysis time has now
  passed; :meth:`units_statement_insert` and :meth:`values_statement_insert` recompute those units
  from *all* their exposures and events, read by primary key (or every unit, for a full recompute).
* :meth:`StateQuery.metrics_statement` is the cold roll-up's own statement (``query.RollupQuery``)
  with its per-unit step reading the state instead of joining events to exposures: caps, conversions,
  running daily values and the ``GROUP BY (variant, day)`` are literally the same SQL, so an
  incremental refresh computes what a cold one does.

Every value is a bound ``{p_name:Type}`` parameter, as in :mod:`analytics.rollup.query`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from analytics.rollup.query import DAY_MS, HOUR_MS, RollupQuery, Statement, select
from analytics.rollup.spec import Measure, RollupSpec

NEVER_MS = 2**63 - 1
EPOCH = dt.datetime(
    1970, 1, 1, tzinfo=dt.UTC
)  # pending_ms of a unit with no event at or after the analysis time


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()[:24]


def units_key(spec: RollupSpec, generation: str) -> str:
    """What decides each unit's t0 and variant index: the experiment, its variants in order, its
    analysed environments; and the state's generation (new at every full recompute)."""
    environments = None if spec.environments is None else sorted(spec.environments)
    return digest("units", spec.experiment, list(spec.variants), environments, generation)


def raw_kind(measure: Measure) -> str:
    """The raw aggregate a measure needs: a sum of values, or a count (binomials are counts > 0)."""
    return "sum" if measure.kind == "sum" else "count"


@dataclass(frozen=True)
class ValueDef:
    """One row kind of ``rollup_values``: a measure's in-window raw value (with its events' days when
    a metric with a time series needs them), or a covariate's."""

    key: str
    measure: Measure
    lookback_days: int | None = None  # set for a CUPED covariate
    series: bool = False  # keep (day, increment) per event: a metric with a time series uses it

    @property
    def is_covariate(self) -> bool:
        return self.lookback_days is not None


def value_defs(query: RollupQuery, units: str) -> tuple[list[ValueDef], list[ValueDef]]:
    """The value rows the spec needs: one per distinct raw measure (aligned with ``query.measures``),
    and one per distinct covariate (aligned with ``query.covariates``). Caps and kinds that only
    differ after aggregation share a row's value."""

    def post(index: int, measure: Measure) -> ValueDef:
        series = index in query.series_measures
        key = digest("post", units, measure.event, raw_kind(measure), measure.window_hours, series)
        return ValueDef(key, measure, series=series)

    def pre(measure: Measure, days: int) -> ValueDef:
        return ValueDef(digest("pre", units, measure.event, raw_kind(measure), days), measure, days)

    return [post(i, m) for i, m in enumerate(query.measures)], [pre(m, days) for m, days in query.covariates]


class StateQuery(RollupQuery):
    """The statements of an incremental refresh of ``spec`` over the state of ``units_key``.

    ``version``: the refresh's read time in milliseconds, written with every state row (the newest
    row of a unit wins) and naming the refresh's touched units.
    """

    def __init__(self, spec: RollupSpec, *, units_key: str, version: int, touched_only: bool = False) -> None:
        super().__init__(spec, exact_unit_keys=True)
        self.units_key = units_key
        self.version = version
        # units_statement and metrics_statement over the touched units only: their contributions,
        # which an incremental refresh subtracts (before) and adds (after recomputing them)
        self.touched_only = touched_only
        self.post_defs, self.pre_defs = value_defs(self, units_key)

    @property
    def value_keys(self) -> list[str]:
        return sorted({d.key for d in self.post_defs + self.pre_defs})

    # --- shared pieces ----------------------------------------------------------------------------------
    def _experiment(self) -> str:
        return self._bind("experiment", "String", self.spec.experiment)

    def _units_key(self) -> str:
        return self._bind("units_key", "String", self.units_key)

    def _touched(self) -> str:
        """``unit_id IN (this refresh's touched units)``."""
        refresh = self._bind("refresh_id", "UInt64", self.version)
        touched = select(
            ["unit_id"],
            "rollup_touched",
            where=f"experiment = {self._experiment()} AND refresh_id = {refresh}",
        )
        return f"unit_id IN ({touched})"

    # --- 1. touched units --------------------------------------------------------------------------------
    def touched_statement(
        self, *, watermark: dt.datetime, value_keys: list[str], previous_until: dt.datetime
    ) -> Statement:
        """Write the units this refresh recomputes: exposures or events received after ``watermark``,
        units with a pending event the analysis time has now passed (``value_keys``: the state's), and
        units whose t0 was at or after the previous analysis time (their entry day was that time's)."""
        self.params = {}
        experiment = self._experiment()
        after = self._bind("watermark", "DateTime64(3, 'UTC')", watermark)
        environments = self._environment_filter()
        arrivals = [
            select(
                ["unit_id"],
                "exposures",
                where=f"experiment = {experiment} AND received_at > {after}{environments}",
            ),
            select(
                ["unit_id"],
                "events",
                where=(
                    f"name IN {self._bind('events', 'Array(String)', self.events)} "
                    f"AND received_at > {after}{environments}"
                ),
            ),
        ]
        if value_keys:
            keys = self._bind("value_keys", "Array(String)", value_keys)
            until = self._bind("until_ms", "Int64", self.spec.until_ms)
            arrivals.append(
                select(
                    ["unit_id"],
                    "rollup_values",
                    where=f"experiment = {experiment} AND value_key IN {keys} AND pending_ms < {until}",
                )
            )
        previous = self._bind(
            "previous_until_ms", "Int64", (previous_until - EPOCH) // dt.timedelta(milliseconds=1)
        )
        arrivals.append(
            select(
                ["unit_id"],
                "rollup_units",
                where=f"experiment = {experiment} AND units_key = {self._units_key()} AND t0_ms >= {previous}",
            )
        )
        refresh = self._bind("refresh_id", "UInt64", self.version)
        units = select(
            [experiment, refresh, "unit_id"], f"({' UNION ALL '.join(arrivals)})", group_by="unit_id"
        )
        return Statement(f"INSERT INTO rollup_touched (experiment, refresh_id, unit_id) {units}", self.params)

    # --- 2. units ----------------------------------------------------------------------------------------
    def units_insert_statement(self, *, touched_only: bool) -> Statement:
        """Recompute ``rollup_units`` from every exposure of the touched units (or of every unit)."""
        self.params = {}
        experiment = self._experiment()
        variants = self._bind("variants", "Array(String)", list(self.spec.variants))
        indexes = self._bind("variant_indexes", "Array(Int16)", list(range(1, len(self.spec.variants) + 1)))
        where = f"experiment = {experiment}{self._environment_filter()}"
        if touched_only:
            where += f" AND {self._touched()}"
        rows = select(
            ["unit_id", "timestamp", f"transform(variant, {variants}, {indexes}, 0) AS exposed_variant"],
            "exposures",
            where=where,
        )
        columns = [
            experiment,
            self._units_key(),
            "unit_id",
            "toUnixTimestamp64Milli(min(timestamp))",
            "if(min(exposed_variant) = max(exposed_variant), min(exposed_variant), -1)",
            "toUnixTimestamp64Milli(max(timestamp))",
            self._bind("version", "UInt64", self.version),
        ]
        sql = select(columns, f"({rows})", group_by="unit_id")
        return Statement(
            "INSERT INTO rollup_units (experiment, units_key, unit_id, t0_ms, variant_index, "
            f"last_exposure_ms, version) {sql}",
            self.params,
        )

    def _state_units(self, *, valid_only: bool, touched_only: bool = False) -> str:
        """The current row of each unit (of the touched ones only: then by ``argMax`` of the version
        over just their rows, which costs far less than ``FINAL``'s merge of every row)."""
        where = f"experiment = {self._experiment()} AND units_key = {self._units_key()}"
        columns = ["unit_id", "t0_ms", "variant_index", "last_exposure_ms"]
        if not touched_only:
            return select(
                columns, "rollup_units FINAL", where=where + (" AND variant_index > 0" if valid_only else "")
            )
        latest = ["unit_id", *(f"argMax({c}, version) AS {c}" for c in columns[1:])]
        return select(
            latest,
            "rollup_units",
            where=f"{where} AND {self._touched()}",
            group_by="unit_id",
            having="variant_index > 0" if valid_only else None,
        )

    def _state_values(self, where: str) -> str:
        """The current row of each (unit, value key) of the touched units (see ``_state_units``)."""
        columns = ["total", "days", "increments", "last_ms"]
        latest = ["unit_id", "value_key", *(f"argMax({c}, version) AS {c}" for c in columns)]
        return select(
            latest, "rollup_values", where=f"{where} AND {self._touched()}", group_by="unit_id, value_key"
        )

    def count_statement(self) -> Statement:
        """How many unit rows the state holds, every version (at least the units the last refresh
        recorded, unless rows were lost); counted from the primary index, without reading rows."""
        self.params = {}
        where = f"experiment = {self._experiment()} AND units_key = {self._units_key()}"
        return Statement(select(["count() AS units"], "rollup_units", where=where), self.params)

    def units_statement(self) -> Statement:
        """The cold ``units`` statement's answer (units per variant and entry day...), from the state."""
        self.params = {}
        until = self._bind("until_ms", "Int64", self.spec.until_ms)
        columns = [
            "variant_index",
            f"intDiv(least(t0_ms, {until}), {DAY_MS}) AS entry_day",
            "count() AS units",
            "min(t0_ms) AS first_exposure_ms",
            "max(last_exposure_ms) AS last_exposure_ms",
            "0 AS key_collisions",  # the state is keyed by unit_id itself
        ]
        sql = select(
            columns,
            f"({self._state_units(valid_only=False, touched_only=self.touched_only)})",
            group_by="variant_index, entry_day",
            order_by="variant_index, entry_day",
        )
        return Statement(sql, self.params)

    # --- 3. values ---------------------------------------------------------------------------------------
    def _value_tuple(self, definition: ValueDef, code: int) -> str:
        """``(key, total, days, increments, last_ms, pending_ms)`` of one value row, per unit."""
        measure = definition.measure
        until = self._bind("until_ms", "Int64", self.spec.until_ms)
        never = self._bind("never_ms", "Int64", NEVER_MS)
        key = self._bind(f"key_{definition.key}", "String", definition.key)
        condition = f"e.code = {code} AND e.ts < {until}"
        if definition.is_covariate:
            lookback = self._bind(
                f"lookback_{definition.lookback_days}", "Int64", definition.lookback_days * DAY_MS
            )
            condition += f" AND e.ts >= u.t0_ms - {lookback} AND e.ts < u.t0_ms"
        else:
            condition += " AND e.ts >= u.t0_ms"
            if measure.window_hours is not None:
                window = self._bind(f"window_{measure.window_hours}", "Int64", measure.window_hours * HOUR_MS)
                condition += f" AND e.ts < u.t0_ms + {window}"
        increment = "e.value" if raw_kind(measure) == "sum" else "1"
        total = f"toFloat64(sumIf(toFloat64({increment}), {condition}))"
        if definition.series:  # one element per event (days repeat): the aggregation sorts them
            by_event = f"groupArrayIf((toInt32(intDiv(e.ts, {DAY_MS})), toFloat64({increment})), {condition})"
            days, increments = f"arrayMap(t -> t.1, {by_event})", f"arrayMap(t -> t.2, {by_event})"
        else:
            days, increments = "CAST([], 'Array(Int32)')", "CAST([], 'Array(Float64)')"
        last = f"maxIf(e.ts, e.code = {code} AND e.ts < {until})"
        pending = f"min(if(e.code = {code} AND e.ts >= {until}, e.ts, {never}))"
        return f"({key}, {total}, {days}, {increments}, {last}, {pending})"

    def values_insert_statement(
        self, definitions: list[ValueDef], *, touched_only: bool, since: dt.datetime | None = None
    ) -> Statement:
        """Recompute ``definitions``' rows of ``rollup_values`` for the touched units (or every unit).

        Touched units get a row for every definition, zeros included, so a row that no longer applies
        is replaced; a full pass writes rows for units with events only (the others have none to
        replace) and reads events from ``since`` on (the earliest look-back of any unit).
        """
        self.params = {}
        names = sorted({d.measure.event for d in definitions})
        codes = {name: position for position, name in enumerate(names, start=1)}
        events = self._bind("value_events", "Array(String)", names)
        where = f"name IN {events}{self._environment_filter()}"
        if touched_only:
            where += f" AND {self._touched()}"
        if since is not None:
            since_value = self._bind("since", "DateTime64(3, 'UTC')", since)
            where += f" AND timestamp >= {since_value}"
        code_values = self._bind("value_codes", "Array(UInt8)", list(codes.values()))
        rows = select(
            [
                "unit_id",
                "toUnixTimestamp64Milli(timestamp) AS ts",
                f"transform(name, {events}, {code_values}, 0) AS code",
                "value",
            ],
            "events_dedup",
            where=where,
        )
        unique = list({d.key: d for d in definitions}.values())
        tuples = ", ".join(self._value_tuple(d, codes[d.measure.event]) for d in unique)
        # The units are the hash join's build side (the right one), events stream through; touched
        # units without any event still get their (zero) rows, hence RIGHT JOIN.
        join = "RIGHT JOIN" if touched_only else "INNER JOIN"
        per_unit = select(
            ["u.unit_id AS unit_id", f"[{tuples}] AS unit_values"],
            f"({rows}) AS e {join} ({self._state_units(valid_only=True, touched_only=touched_only)}) AS u "
            "ON e.unit_id = u.unit_id",
            group_by="u.unit_id",
        )
        columns = [
            self._experiment(),
            "v.1",
            "unit_id",
            "v.2",
            "v.3",
            "v.4",
            "v.5",
            "v.6",
            self._bind("version", "UInt64", self.version),
        ]
        sql = select(columns, f"({per_unit})", array_join=["unit_values AS v"])
        return Statement(
            "INSERT INTO rollup_values (experiment, value_key, unit_id, total, days, increments, last_ms, "
            f"pending_ms, version) {sql}",
            self.params,
        )

    # --- 4. aggregation ----------------------------------------------------------------------------------
    def _per_unit_sql(self) -> str:
        """The cold roll-up's per-unit relation (variant, t0, raw values, covariates, daily series),
        read from the state: the rest of ``metrics_statement`` is unchanged."""
        experiment = self._experiment()
        keys = self._bind("value_keys", "Array(String)", self.value_keys)

        def key(definition: ValueDef) -> str:
            return self._bind(f"key_{definition.key}", "String", definition.key)

        columns = ["unit_id", "nullIf(max(last_ms), 0) AS last_ms"]
        columns += [f"sumIf(total, value_key = {key(d)}) AS r_{i}" for i, d in enumerate(self.post_defs)]
        columns += [f"sumIf(total, value_key = {key(d)}) AS q_{i}" for i, d in enumerate(self.pre_defs)]
        if self.series_measures:
            parts = []
            for position, index in enumerate(self.series_measures):
                definition = self.post_defs[index]
                increments = ", ".join(
                    "x" if other == position else "toFloat64(0)" for other in range(len(self.series_measures))
                )
                parts.append(
                    f"arrayMap((d, x) -> (toInt64(d), {increments}), anyIf(days, value_key = {key(definition)}), "
                    f"anyIf(increments, value_key = {key(definition)}))"
                )
            columns.append(f"arraySort(arrayConcat({', '.join(parts)})) AS series")
        where = f"experiment = {experiment} AND value_key IN {keys}"
        source = f"({self._state_values(where)})" if self.touched_only else "rollup_values FINAL"
        values = select(columns, source, where=None if self.touched_only else where, group_by="unit_id")
        unit_columns = [
            "u.variant_index AS unit_variant",
            "u.t0_ms AS unit_t0",
            "v.last_ms AS unit_last_event_ms",
            *(f"v.r_{i} AS r_{i}" for i in range(len(self.post_defs))),
            *(f"v.q_{i} AS q_{i}" for i in range(len(self.pre_defs))),
        ]
        if self.series_measures:
            unit_columns.append("v.series AS series")
        return select(
            unit_columns,
            f"({self._state_units(valid_only=True, touched_only=self.touched_only)}) AS u "
            f"INNER JOIN ({values}) AS v ON u.unit_id = v.unit_id",
        )

    def delete_statements(self) -> list[Statement]:
        """Drop the experiment's rows of other generations and definitions (after a full recompute)."""
        self.params = {}
        experiment, units = self._experiment(), self._units_key()
        units_sql = f"DELETE FROM rollup_units WHERE experiment = {experiment} AND units_key != {units}"  # noqa: S608 - placeholders only
        units_params, self.params = self.params, {}
        experiment, keys = self._experiment(), self._bind("value_keys", "Array(String)", self.value_keys)
        values_sql = f"DELETE FROM rollup_values WHERE experiment = {experiment} AND value_key NOT IN {keys}"  # noqa: S608 - placeholders only
        return [Statement(units_sql, units_params), Statement(values_sql, self.params)]
