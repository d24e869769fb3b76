"""The incremental roll-up's SQL: per-unit state in ClickHouse, recomputed for touched units only.

docs/analysis.md, "Incremental refresh", has the design; in short:

* ``rollup_units`` holds each unit's t0 and variant index (migrations_sql/0004),
  ``rollup_unit_values`` one row per unit (migrations_sql/0007): an array with the unit's *raw* value
  of every measure (count or sum in the window, before caps and 0/1 conversions), split by UTC day
  where a series needs it, and of every CUPED covariate, each element keyed by a hash of what decides
  it (:class:`ValueDef`), so a changed metric recomputes only its own elements; and a 128-bit filter
  of the events the values counted (:func:`bloom_bits`), so a possible replay is recognised without
  reading events. Rows are sorted by the unit's entry day, so the recently exposed (and most active)
  units sit together. Both tables are keyed by :func:`units_key`, new at every full recompute.
* An incremental refresh records the event rows received after the previous watermark
  (:meth:`StateQuery.arrivals_statement`, ``rollup_arrivals``), finds the units they and new
  exposures touch (:meth:`~StateQuery.touched_statement`), copies those units' rows out of the state
  once (:meth:`~StateQuery.snapshot_statements`, scratch phase 0), recomputes their t0 and variant
  where exposures arrived, recomputes from their events only the few units whose t0 or variant
  changed, whose pending event now counts or which received a possible replay
  (:meth:`~StateQuery.recompute_statement`, :meth:`~StateQuery.values_insert_statement`), adds the
  arrivals to every other touched unit's values (:meth:`~StateQuery.delta_statement`), and writes the
  changed rows back (:meth:`~StateQuery.commit_statements`).
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

from analytics.rollup.query import DAY_MS, HOUR_MS, UNITS_MERGES, RollupQuery, Shards, Statement, select
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
    """One row kind of ``rollup_unit_values``: a measure's in-window raw value (with its events' days when
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


def bloom_bits(h: str) -> tuple[str, str]:
    """The bits an event with key hash ``h`` sets in its unit's 128-bit filter of counted events
    (the low and the high 64 bits): three bits, from three 7-bit slices of the hash."""
    slices = [f"({h} % 128)", f"(intDiv({h}, 128) % 128)", f"(intDiv({h}, 16384) % 128)"]

    def half(high: bool) -> str:
        test = ">= 64" if high else "< 64"
        bits = [f"if({b} {test}, bitShiftLeft(toUInt64(1), {b} % 64), toUInt64(0))" for b in slices]
        return f"bitOr(bitOr({bits[0]}, {bits[1]}), {bits[2]})"

    return half(False), half(True)


class StateQuery(RollupQuery):
    """The statements of an incremental refresh of ``spec`` over the state of ``units_key``.

    ``version``: the refresh's read time in milliseconds, written with every state row (the newest
    row of a unit wins) and naming the refresh's touched units.
    """

    def __init__(
        self,
        spec: RollupSpec,
        *,
        units_key: str,
        version: int,
        touched_only: bool = False,
        refresh_id: int | None = None,
        shards: Shards | None = None,
    ) -> None:
        super().__init__(spec, exact_unit_keys=True, shards=shards)
        self.units_key = units_key
        self.version = version
        # names this refresh's rows of rollup_touched, rollup_arrivals and the scratch tables: random,
        # so that a refresh run again at the same read time never meets another one's rows
        self.refresh_id = version if refresh_id is None else refresh_id
        # units_statement and metrics_statement over the touched units only: their contributions,
        # which an incremental refresh subtracts (before) and adds (after recomputing them)
        self.touched_only = touched_only
        self.post_defs, self.pre_defs = value_defs(self, units_key)
        # Read the touched units' rows of this refresh's scratch tables (0: before it, 1: after it)
        # instead of the state tables, in units_statement and metrics_statement.
        self.phase: int | None = None

    @property
    def value_keys(self) -> list[str]:
        return sorted({d.key for d in self.post_defs + self.pre_defs})

    # --- shared pieces ----------------------------------------------------------------------------------
    def _experiment(self) -> str:
        return self._bind("experiment", "String", self.spec.experiment)

    def _units_key(self) -> str:
        return self._bind("units_key", "String", self.units_key)

    def _refresh(self) -> str:
        return self._bind("refresh_id", "UInt64", self.refresh_id)

    def _insert(self, table: str, columns: list[str], sql: str) -> Statement:
        """``INSERT INTO table (columns) <sql>``: fixed table and column names, the builder's SELECT.

        On a cluster ``sql`` runs on every shard over the shard's own tables, each shard keeping the
        rows of the units it owns (:meth:`_owned`), and the ``Distributed`` table sends every row back
        to its unit's shard: a unit's state is written where its events and exposures are."""
        if self.shards is not None:
            cluster = self._bind("cluster", "String", self.shards.cluster)
            # the columns named by position: a computed column's own name does not survive the trip
            owned = select(["*"], f"({sql}) AS r ({', '.join(columns)})", where=self._owned())
            sql = select(["*"], f"cluster({cluster}, view({owned}))")
        return Statement(f"INSERT INTO {table} ({', '.join(columns)}) {sql}", self.params)

    def _owned(self) -> str:
        """The row's unit belongs to the shard running the statement, by the ``Distributed`` tables'
        routing: ``cityHash64(unit_id)`` modulo the shards' total weight picks a slot, and the slots
        go to the shards in order, ``weight`` each (``Shards.slots``). Every row of a shard's own
        tables passes, as they were written through that routing; where two shards read the same
        tables (the test suite's two shards of one server), each unit is written once."""
        assert self.shards is not None and self.shards.slots, "the cluster's shard slots are needed"
        slots = self._bind("shard_slots", "Array(UInt32)", list(self.shards.slots))
        return f"{slots}[cityHash64(unit_id) % length({slots}) + 1] = shardNum()"

    def _merged(self, sql: str, merges: dict[str, str]) -> Statement:
        """A one-row answer: on a cluster, every shard's row merged by ``merges``."""
        return self._statement(sql, (), merges)

    def _touched(self, reasons: int | None = None) -> str:
        """``unit_id IN (this refresh's touched units)`` (those touched for one of ``reasons`` only)."""
        where = f"experiment = {self._experiment()} AND refresh_id = {self._refresh()}"
        if reasons is not None:
            where += f" AND bitAnd(reasons, {self._bind(f'reasons_{reasons}', 'UInt8', reasons)}) != 0"
        return f"unit_id IN ({select(['unit_id'], self._table('rollup_touched'), where=where)})"

    def _recomputed(self) -> str:
        """``unit_id IN (the units this refresh recomputes from their events)``."""
        return f"unit_id IN ({self._scratch_rows(['unit_id'], 'rollup_scratch_units', 2)})"

    def _scratch_rows(self, columns: list[str], table: str, phase: int, *, where: str | None = None) -> str:
        """``columns`` of this refresh's rows of a scratch table at ``phase`` (and ``where``)."""
        phase_value = self._bind(f"phase_{phase}", "UInt8", phase)
        condition = (
            f"experiment = {self._experiment()} AND refresh_id = {self._refresh()} AND phase = {phase_value}"
        )
        return select(columns, self._table(table), where=condition + (f" AND {where}" if where else ""))

    def _arrival_rows(self, refresh: str, *, new_only: bool) -> str:
        """A refresh's arrivals with the columns the value tuples read (``code`` over ``self.events``)."""
        events = self._bind("events", "Array(String)", self.events)
        codes = self._bind("event_codes", "Array(UInt8)", list(range(1, len(self.events) + 1)))
        where = f"experiment = {self._experiment()} AND refresh_id = {refresh} AND name IN {events}"
        if new_only:
            where += " AND new = 1"
        return select(
            [
                "unit_id",
                "ts",
                f"transform(name, {events}, {codes}, 0) AS code",
                "value",
                "environment",
                "cityHash64(name, event_id, month) AS h",
                "cityHash64(ts, value, environment) AS c",
            ],
            self._table("rollup_arrivals"),
            where=where,
        )

    def _seen(self, phase: int) -> str:
        """(unit_id, seen_low, seen_high): the touched units' filters of counted events at ``phase``."""
        return self._scratch_rows(["unit_id", "seen_low", "seen_high"], "rollup_scratch_unit_values", phase)

    # --- 1. arrivals and touched units ----------------------------------------------------------------
    def arrivals_statement(
        self, *, after: dt.datetime, new_after: dt.datetime | None, previous_refresh: int | None
    ) -> Statement:
        """Record the event rows received after ``after`` (of every environment: a replay from another
        one replaces a counted event); ``new`` marks those received after ``new_after`` and not
        listed by the previous refresh (already counted there). A full refresh passes no
        ``new_after``: it records, for the next refresh, what it counted beyond its watermark."""
        self.params = {}
        experiment, refresh = self._experiment(), self._refresh()
        events = self._bind("events", "Array(String)", self.events)
        lower = self._bind("after", "DateTime64(3, 'UTC')", after)
        row = "(name, unit_id, event_id, toUnixTimestamp64Milli(timestamp), value, environment, received_at)"
        if new_after is None or previous_refresh is None:
            new = "toUInt8(0)"
        else:
            since = self._bind("new_after", "DateTime64(3, 'UTC')", new_after)
            counted = select(
                ["name", "unit_id", "event_id", "ts", "value", "environment", "received_at"],
                self._table("rollup_arrivals"),
                where=f"experiment = {experiment} AND refresh_id = "
                f"{self._bind('previous_refresh', 'UInt64', previous_refresh)}",
            )
            new = f"toUInt8(received_at > {since} AND {row} NOT IN ({counted}))"
        columns = [
            experiment,
            refresh,
            "unit_id",
            "name",
            "event_id",
            "toUnixTimestamp64Milli(timestamp)",
            "value",
            "environment",
            "toYYYYMM(timestamp)",
            "received_at",
            new,
        ]
        sql = select(columns, self._table("events"), where=f"name IN {events} AND received_at > {lower}")
        return self._insert(
            "rollup_arrivals",
            ["experiment", "refresh_id", "unit_id", "name", "event_id", "ts", "value", "environment",
             "month", "received_at", "new"],
            sql,
        )  # fmt: skip

    def arrivals_count_statement(self, refresh: int) -> Statement:
        """How many arrival rows a refresh recorded (from the primary index)."""
        self.params = {}
        where = f"experiment = {self._experiment()} AND refresh_id = {self._bind('count_refresh', 'UInt64', refresh)}"
        return self._merged(
            select(["count() AS rows"], self._table("rollup_arrivals"), where=where), {"rows": "sum"}
        )

    def touched_statement(self, *, watermark: dt.datetime, previous_until: dt.datetime) -> Statement:
        """Write the units this refresh touches, with why (bits, migrations_sql/0006): new events
        (1), exposures received after ``watermark`` (2), a pending event the analysis time has now
        passed (4), a t0 at or after the previous analysis time, whose entry day was that time's
        (8)."""
        self.params = {}
        experiment = self._experiment()
        after = self._bind("watermark", "DateTime64(3, 'UTC')", watermark)
        environments = self._environment_filter()
        until = self._bind("until_ms", "Int64", self.spec.until_ms)
        arrivals = [
            select(
                ["unit_id", "toUInt8(1) AS reason"],
                self._table("rollup_arrivals"),
                where=f"experiment = {experiment} AND refresh_id = {self._refresh()} AND new = 1",
            ),
            select(
                ["unit_id", "toUInt8(2) AS reason"],
                self._table("exposures"),
                where=f"experiment = {experiment} AND received_at > {after}{environments}",
            ),
            self._pending_units(until),
        ]
        previous = self._bind(
            "previous_until_ms", "Int64", (previous_until - EPOCH) // dt.timedelta(milliseconds=1)
        )
        arrivals.append(
            select(
                ["unit_id", "toUInt8(8) AS reason"],
                self._table("rollup_units"),
                where=f"experiment = {experiment} AND units_key = {self._units_key()} AND t0_ms >= {previous}",
            )
        )
        units = select(
            [experiment, self._refresh(), "unit_id", "groupBitOr(reason)"],
            f"({' UNION ALL '.join(arrivals)})",
            group_by="unit_id",
        )
        return self._insert("rollup_touched", ["experiment", "refresh_id", "unit_id", "reasons"], units)

    def _pending_units(self, until: str) -> str:
        """(unit_id, 4): units whose newest row has an event dated at or after ``until`` (an older row,
        replaced but not yet merged away, may still show one that has been counted since)."""
        state = f"experiment = {self._experiment()} AND units_key = {self._units_key()}"
        candidates = select(
            ["day", "unit_id"], self._table("rollup_unit_values"), where=f"{state} AND pending_ms < {until}"
        )
        newest = select(
            ["day", "unit_id", "max(version)"],
            self._table("rollup_unit_values"),
            where=f"{state} AND (day, unit_id) IN ({candidates})",
            group_by="day, unit_id",
        )
        return select(
            ["unit_id", "toUInt8(4) AS reason"],
            self._table("rollup_unit_values"),
            where=f"{state} AND pending_ms < {until} AND (day, unit_id, version) IN ({newest})",
        )

    # --- 2. the touched units before, and their exposures after -------------------------------------------
    def snapshot_statements(self, value_keys: list[str]) -> list[Statement]:
        """Copy the touched units' current state rows (``value_keys``' values) to the scratch tables,
        phase 0: the one read of the state tables that grows with the history."""
        self.params = {}
        experiment, refresh = self._experiment(), self._refresh()
        where = f"experiment = {experiment} AND units_key = {self._units_key()} AND {self._touched()}"
        unit_columns = ["t0_ms", "variant_index", "last_exposure_ms"]
        units = select(
            [experiment, refresh, "toUInt8(0)", "unit_id", *(f"argMax({c}, version)" for c in unit_columns)],
            self._table("rollup_units"),
            where=where,
            group_by="unit_id",
        )
        statements = [
            self._insert(
                "rollup_scratch_units",
                ["experiment", "refresh_id", "phase", "unit_id", *unit_columns],
                units,
            )
        ]
        self.params = {}
        experiment, refresh = self._experiment(), self._refresh()
        keys = self._bind("value_keys", "Array(String)", value_keys)
        # a unit's row sits under its entry day (the sorting key's third column): the touched units'
        # (day, unit) pairs, from their rows copied just before, read only the days that hold them
        days = self._scratch_rows([f"toInt32(intDiv(t0_ms, {DAY_MS}))", "unit_id"], "rollup_scratch_units", 0)
        where = (
            f"experiment = {experiment} AND units_key = {self._units_key()} AND (day, unit_id) IN ({days})"
        )
        # each touched unit's newest row: found from narrow columns, then read whole, so that no
        # array is aggregated
        newest = select(
            ["day", "unit_id", "max(version)"],
            self._table("rollup_unit_values"),
            where=where,
            group_by="day, unit_id",
        )
        values = select(
            [experiment, refresh, "toUInt8(0)", "unit_id", "day", f"arrayFilter(v -> has({keys}, v.1), vals)",
             "seen_low", "seen_high"],
            self._table("rollup_unit_values"),
            where=f"{where} AND (day, unit_id, version) IN ({newest})",
        )  # fmt: skip
        values += " LIMIT 1 BY unit_id"  # one row even if two share the newest version
        statements.append(
            self._insert(
                "rollup_scratch_unit_values",
                ["experiment", "refresh_id", "phase", "unit_id", "day", "vals", "seen_low", "seen_high"],
                values,
            )
        )
        return statements

    def units_insert_statement(self, *, touched_only: bool) -> Statement:
        """Each unit's t0 and variant from every one of its exposures: of every unit (a full
        recompute, into ``rollup_units``), or of the touched units (into the scratch table, phase 1:
        recomputed for units with new exposures, copied from phase 0 for the others)."""
        self.params = {}
        experiment = self._experiment()
        variants = self._bind("variants", "Array(String)", list(self.spec.variants))
        indexes = self._bind("variant_indexes", "Array(Int16)", list(range(1, len(self.spec.variants) + 1)))
        where = f"experiment = {experiment}{self._environment_filter()}"
        if touched_only:
            where += f" AND {self._touched(2)}"
        rows = select(
            ["unit_id", "timestamp", f"transform(variant, {variants}, {indexes}, 0) AS exposed_variant"],
            self._table("exposures"),
            where=where,
        )
        computed = [
            "toUnixTimestamp64Milli(min(timestamp))",
            "if(min(exposed_variant) = max(exposed_variant), min(exposed_variant), -1)",
            "toUnixTimestamp64Milli(max(timestamp))",
        ]
        unit_columns = ["t0_ms", "variant_index", "last_exposure_ms"]
        if not touched_only:
            columns = [experiment, self._units_key(), "unit_id", *computed,
                       self._bind("version", "UInt64", self.version)]  # fmt: skip
            return self._insert(
                "rollup_units",
                ["experiment", "units_key", "unit_id", *unit_columns, "version"],
                select(columns, f"({rows})", group_by="unit_id"),
            )
        refresh = self._refresh()
        recomputed = select([experiment, refresh, "toUInt8(1)", "unit_id", *computed], f"({rows})",
                            group_by="unit_id")  # fmt: skip
        copied = self._scratch_rows([experiment, refresh, "toUInt8(1)", "unit_id", *unit_columns],
                                    "rollup_scratch_units", 0, where=f"NOT {self._touched(2)}")  # fmt: skip
        return self._insert(
            "rollup_scratch_units",
            ["experiment", "refresh_id", "phase", "unit_id", *unit_columns],
            f"{recomputed} UNION ALL {copied}",
        )

    def recompute_statement(self) -> Statement:
        """Write the touched units whose values must be recomputed from their events (phase 2):
        a pending event now counts, t0 or the variant changed (or the unit is new), an arrival may
        replay a counted event (its bits are all in the unit's filter of counted events: a replay,
        or rarely a false alarm), or two arrivals share a key but not their content. Everything else
        is new, and is added to the state as it is."""
        self.params = {}
        experiment, refresh = self._experiment(), self._refresh()
        after = self._scratch_rows(["unit_id", "t0_ms", "variant_index"], "rollup_scratch_units", 1)
        before = self._scratch_rows(["unit_id", "t0_ms", "variant_index"], "rollup_scratch_units", 0)
        changed = select(
            ["a.unit_id AS unit_id"],
            f"({after}) AS a LEFT JOIN ({before}) AS b ON a.unit_id = b.unit_id",
            where="a.variant_index > 0 AND (b.unit_id = '' OR b.t0_ms != a.t0_ms OR b.variant_index != a.variant_index)",
        )
        pending = select(
            ["unit_id"],
            self._table("rollup_touched"),
            where=f"experiment = {experiment} AND refresh_id = {refresh} "
            f"AND bitAnd(reasons, {self._bind('reasons_4', 'UInt8', 4)}) != 0",
        )
        arrivals = self._arrival_rows(refresh, new_only=True)
        low, high = bloom_bits("a.h")
        replaced = select(
            ["a.unit_id AS unit_id"],
            f"({arrivals}) AS a INNER JOIN ({self._seen(0)}) AS k ON a.unit_id = k.unit_id",
            where=f"bitAnd(k.seen_low, {low}) = {low} AND bitAnd(k.seen_high, {high}) = {high}",
        )
        clashing = select(["unit_id"], f"({arrivals})", group_by="unit_id, h", having="uniqExact(c) > 1")
        units = select(
            [experiment, refresh, "toUInt8(2)", "unit_id"],
            f"({' UNION ALL '.join([changed, pending, replaced, clashing])})",
            group_by="unit_id",
        )
        return self._insert("rollup_scratch_units", ["experiment", "refresh_id", "phase", "unit_id"], units)

    def _state_units(self, *, valid_only: bool, touched_only: bool = False) -> str:
        """The current row of each unit (``FINAL``), or the touched units' rows of the scratch table at
        ``phase`` (1 when not set)."""
        columns = ["unit_id", "t0_ms", "variant_index", "last_exposure_ms"]
        if not touched_only:
            where = f"experiment = {self._experiment()} AND units_key = {self._units_key()}"
            return select(
                columns,
                f"{self._table('rollup_units')} FINAL",
                where=where + (" AND variant_index > 0" if valid_only else ""),
            )
        phase = 1 if self.phase is None else self.phase
        return self._scratch_rows(
            columns, "rollup_scratch_units", phase, where="variant_index > 0" if valid_only else None
        )

    def _current_values(self, *, all_units: bool) -> str:
        """(unit_id, day, vals, seen_low, seen_high): each unit's row under its current entry day (rows
        left under another day, and empty ones, are not), of every unit or of the analysed ones."""
        values = select(
            ["unit_id", "day", "vals", "seen_low", "seen_high"],
            f"{self._table('rollup_unit_values')} FINAL",
            where=f"experiment = {self._experiment()} AND units_key = {self._units_key()}",
        )
        units = select(["unit_id", f"toInt32(intDiv(t0_ms, {DAY_MS})) AS day"],
                       f"({self._state_units(valid_only=not all_units)})")  # fmt: skip
        return select(
            ["v.unit_id AS unit_id", "v.day AS day", "v.vals AS vals", "v.seen_low AS seen_low",
             "v.seen_high AS seen_high"],
            f"({values}) AS v INNER JOIN ({units}) AS u ON v.unit_id = u.unit_id AND v.day = u.day",
        )  # fmt: skip

    def _state_values(self) -> str:
        """(unit_id, vals) of the touched units' rows of the scratch table at ``phase``."""
        phase = 1 if self.phase is None else self.phase
        return self._scratch_rows(["unit_id", "vals"], "rollup_scratch_unit_values", phase)

    def newer_rows_statement(self, version: int) -> Statement:
        """How many rows of the state's units and values have a version above ``version``, one row.
        ``version`` is read first (``PREWHERE``, one narrow column) and, as a refresh normally finds
        no such row, nothing else is: 3 ms at 10M events where ``max(version)`` took 35 ms."""
        self.params = {}
        above = self._bind("above_version", "UInt64", version)
        where = f"experiment = {self._experiment()} AND units_key = {self._units_key()}"
        counts = [
            select(["count()"], f"{self._table(table)} PREWHERE version > {above}", where=where)
            for table in ("rollup_units", "rollup_unit_values")
        ]
        return self._merged(f"SELECT ({counts[0]}) + ({counts[1]}) AS rows", {"rows": "sum"})  # noqa: S608 - built by select()

    def count_statement(self) -> Statement:
        """How many unit rows the state holds, every version (at least the units the last refresh
        recorded, unless rows were lost); counted from the primary index, without reading rows."""
        self.params = {}
        where = f"experiment = {self._experiment()} AND units_key = {self._units_key()}"
        return self._merged(
            select(["count() AS units"], self._table("rollup_units"), where=where), {"units": "sum"}
        )

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
        return self._statement(sql, ("variant_index", "entry_day"), UNITS_MERGES)

    # --- 3. values ---------------------------------------------------------------------------------------
    def _value_tuple(self, definition: ValueDef, code: int) -> str:
        """``(key, total, days, increments, last_ms, pending_ms)``: one element of a unit's values, per
        unit, over the joined rows ``e`` (events or arrivals) and ``u`` (the unit's t0)."""
        measure = definition.measure
        until = self._bind("until_ms", "Int64", self.spec.until_ms)
        never = self._bind("never_ms", "Int64", NEVER_MS)
        key = self._bind(f"key_{definition.key}", "String", definition.key)
        no_days, no_increments = "CAST([], 'Array(Int32)')", "CAST([], 'Array(Float64)')"
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
            days, increments = no_days, no_increments
        last = f"maxIf(e.ts, e.code = {code} AND e.ts < {until})"
        pending = f"min(if(e.code = {code} AND e.ts >= {until}, e.ts, {never}))"
        return f"({key}, {total}, {days}, {increments}, {last}, {pending})"

    def _per_unit_values(self, definitions: list[ValueDef], rows: str, units: str, join: str) -> str:
        """(unit_id, value tuples, filter of the events read) per unit: ``rows`` (with code and key hash h) joined to
        ``units`` (the build side; RIGHT JOIN gives units without rows their zero rows)."""
        unique = list({d.key: d for d in definitions}.values())
        tuples = ", ".join(self._value_tuple(d, self._code(d.measure)) for d in unique)
        low, high = bloom_bits("e.h")
        return select(
            [
                "u.unit_id AS unit_id",
                f"toInt32(intDiv(any(u.t0_ms), {DAY_MS})) AS day",
                f"[{tuples}] AS unit_values",
                # every event read (any time, the analysed environments): a replay of any may arrive
                f"groupBitOrIf({low}, e.code > 0) AS seen_low",
                f"groupBitOrIf({high}, e.code > 0) AS seen_high",
            ],
            f"({rows}) AS e {join} ({units}) AS u ON e.unit_id = u.unit_id",
            group_by="u.unit_id",
        )

    def _counted_filter(self, lower: dt.datetime) -> str:
        """Rows this refresh may count: received by ``lower`` (its arrivals' lower bound), or read
        as arrivals; a row that became visible since is the next refresh's arrival."""
        bound = self._bind("counted_by", "DateTime64(3, 'UTC')", lower)
        listed = select(
            ["name", "unit_id", "event_id", "received_at"],
            self._table("rollup_arrivals"),
            where=f"experiment = {self._experiment()} AND refresh_id = {self._refresh()}",
        )
        return f"(received_at <= {bound} OR (name, unit_id, event_id, received_at) IN ({listed}))"

    def values_insert_statement(
        self,
        definitions: list[ValueDef],
        *,
        touched_only: bool,
        lower: dt.datetime,
        since: dt.datetime | None = None,
        merge: bool = False,
    ) -> Statement:
        """Compute ``definitions``' rows from the units' events: for every unit (into
        ``rollup_unit_values``; reading events from ``since`` on, the earliest look-back of any unit), or
        for the units this refresh recomputes (into the scratch table, phase 1: a row for every
        definition, zeros included, so a row that no longer applies is replaced). Only rows
        received by ``lower`` or read as this refresh's arrivals count (``_counted_filter``)."""
        self.params = {}
        events = self._bind("events", "Array(String)", self.events)
        where = f"name IN {events}{self._environment_filter()} AND {self._counted_filter(lower)}"
        source = self._table("events_dedup")
        if touched_only:
            source = f"({self._recomputed_events(events)})"
        if since is not None:
            since_value = self._bind("since", "DateTime64(3, 'UTC')", since)
            where += f" AND timestamp >= {since_value}"
        codes = self._bind("event_codes", "Array(UInt8)", list(range(1, len(self.events) + 1)))
        rows = select(
            [
                "unit_id",
                "toUnixTimestamp64Milli(timestamp) AS ts",
                f"transform(name, {events}, {codes}, 0) AS code",
                "value",
                "cityHash64(name, event_id, toYYYYMM(timestamp)) AS h",
            ],
            source,
            where=where,
        )
        if touched_only:
            units = select(["unit_id", "t0_ms"], f"({self._state_units(valid_only=True, touched_only=True)})",
                           where=self._recomputed())  # fmt: skip
        else:
            units = self._state_units(valid_only=True)
        # The units are the hash join's build side (the right one), events stream through.
        per_unit = self._per_unit_values(
            definitions, rows, units, "RIGHT JOIN" if touched_only else "INNER JOIN"
        )
        fresh = sorted({d.key for d in definitions})
        return self._write_values(per_unit, touched_only=touched_only, merge=merge, fresh=fresh)

    def _recomputed_events(self, events: str) -> str:
        """The recomputed units' event rows as ``events_dedup`` has them, without ``FINAL``: their
        rows (the units as ``PREWHERE``: first, and on the sorting key), then one row per key and
        month, the one of the newest part, which is the row ``FINAL`` keeps (a part is deduplicated
        when written and merged, so a key's rows in several parts differ by their parts' first block
        number; the offset breaks a tie within a part, as the merge's last row). ``FINAL`` merged every
        part's ranges of the units' granules: this step took 0.41-0.55 s with it at 10M events,
        0.31-0.34 s without (2026-12-07)."""
        block = "toUInt64(splitByChar('_', _part)[2])"
        newest = select(
            ["unit_id", "name", "event_id", "timestamp", "value", "environment", "received_at"],
            f"{self._table('events')} PREWHERE {self._recomputed()}",
            where=f"name IN {events}",
            order_by=f"{block} DESC, _part_offset DESC",
        )
        return f"{newest} LIMIT 1 BY name, unit_id, event_id, toYYYYMM(timestamp)"

    def _write_values(
        self, per_unit: str, *, touched_only: bool, merge: bool = False, fresh: list[str] | None = None
    ) -> Statement:
        """Write ``per_unit``'s (unit_id, unit_values, seen_low, seen_high) rows: to the scratch table
        (phase 1), or to the state; ``merge``: into each unit's current row, replacing the elements
        of the same keys (a definition's new measures, computed for every unit) and dropping those of
        keys no longer defined."""
        if touched_only:
            columns = [self._experiment(), self._refresh(), "toUInt8(1)", "unit_id", "day", "unit_values",
                       "seen_low", "seen_high", "toUInt8(1)"]  # fmt: skip
            return self._insert(
                "rollup_scratch_unit_values",
                [
                    "experiment",
                    "refresh_id",
                    "phase",
                    "unit_id",
                    "day",
                    "vals",
                    "seen_low",
                    "seen_high",
                    "changed",
                ],
                select(columns, f"({per_unit})"),
            )
        experiment, units_key = self._experiment(), self._units_key()
        version = self._bind("version", "UInt64", self.version + (1 if merge else 0))
        if merge:  # after this refresh's own rows (version + 1): the state read FINAL includes them
            # the unit's elements of the other current keys, then the fresh ones (a unit with no fresh
            # values keeps none of an older computation of a fresh key: a metric removed and added again)
            kept = self._bind("kept_keys", "Array(String)", sorted(set(self.value_keys) - set(fresh or ())))
            state = self._current_values(all_units=True)
            per_unit = select(
                [
                    "if(n.unit_id = '', o.unit_id, n.unit_id) AS unit_id",
                    "if(n.unit_id = '', o.day, n.day) AS day",
                    f"arrayConcat(arrayFilter(v -> has({kept}, v.1), o.vals), n.unit_values) AS unit_values",
                    "bitOr(o.seen_low, n.seen_low) AS seen_low",
                    "bitOr(o.seen_high, n.seen_high) AS seen_high",
                ],
                f"({state}) AS o FULL OUTER JOIN ({per_unit}) AS n ON o.unit_id = n.unit_id",
            )
        never = self._bind("never_ms", "Int64", NEVER_MS)
        columns = [
            experiment,
            units_key,
            "unit_id",
            "day",
            "unit_values",
            f"arrayMin(arrayPushBack(arrayMap(v -> v.6, unit_values), {never}))",
            "seen_low",
            "seen_high",
            version,
        ]
        return self._insert(
            "rollup_unit_values",
            [
                "experiment",
                "units_key",
                "unit_id",
                "day",
                "vals",
                "pending_ms",
                "seen_low",
                "seen_high",
                "version",
            ],
            select(columns, f"({per_unit})"),
        )

    def delta_statement(self, definitions: list[ValueDef]) -> Statement:
        """The touched units that are not recomputed, after: their values before plus their new
        events' (scratch phase 1). None of these events was counted before (``recompute_statement``
        sends a unit with a possible replay to be recomputed); identical arrivals count once."""
        self.params = {}
        arrivals = self._arrival_rows(self._refresh(), new_only=True)
        rows = select(["*"], f"({arrivals})", where=self._environment_filter().removeprefix(" AND ") or None)
        rows += " LIMIT 1 BY unit_id, h"
        units = select(
            ["unit_id", "t0_ms"],
            f"({self._state_units(valid_only=True, touched_only=True)})",
            where=f"NOT {self._recomputed()}",
        )
        per_unit = self._per_unit_values(definitions, rows, units, "RIGHT JOIN")
        before = self._scratch_rows(
            ["unit_id", "vals", "seen_low", "seen_high"], "rollup_scratch_unit_values", 0
        )
        # each new element t (the arrivals' values) with the unit's element b of the same key before
        # (an empty-keyed default when there was none)
        pairs = "arrayMap(t -> (t, arrayFirst(x -> x.1 = t.1, b.vals)), d.unit_values)"

        def t(i: int) -> str:
            return f"tupleElement(tupleElement(p, 1), {i})"

        def b(i: int) -> str:
            return f"tupleElement(tupleElement(p, 2), {i})"

        combined = (
            f"arrayMap(p -> ({t(1)}, {b(2)} + {t(2)}, arrayConcat({b(3)}, {t(3)}), arrayConcat({b(4)}, {t(4)}), "
            f"greatest({b(5)}, {t(5)}), if({b(1)} = '', {t(6)}, least({b(6)}, {t(6)}))), pairs)"
        )
        # new events changed an element (or it is new), or the filter: only such units are written back
        changed = (
            f"toUInt8(seen_low != before_low OR seen_high != before_high OR arrayExists(p -> {b(1)} = '' "
            f"OR {t(2)} != 0 OR notEmpty({t(3)}) OR {t(5)} > {b(5)} OR {t(6)} < {b(6)}, pairs))"
        )
        joined = select(
            [
                "d.unit_id AS unit_id",
                "d.day AS day",
                f"{pairs} AS pairs",
                "bitOr(b.seen_low, d.seen_low) AS seen_low",
                "bitOr(b.seen_high, d.seen_high) AS seen_high",
                "b.seen_low AS before_low",
                "b.seen_high AS before_high",
            ],
            f"({per_unit}) AS d LEFT JOIN ({before}) AS b ON d.unit_id = b.unit_id",
        )
        columns = [self._experiment(), self._refresh(), "toUInt8(1)", "unit_id", "day", combined, "seen_low",
                   "seen_high", changed]  # fmt: skip
        return self._insert(
            "rollup_scratch_unit_values",
            [
                "experiment",
                "refresh_id",
                "phase",
                "unit_id",
                "day",
                "vals",
                "seen_low",
                "seen_high",
                "changed",
            ],
            select(columns, f"({joined})"),
        )

    def commit_statements(self) -> list[Statement]:
        """Write the touched units' rows after this refresh (scratch phase 1) to the state tables."""
        self.params = {}
        unit_columns = ["t0_ms", "variant_index", "last_exposure_ms"]
        units = self._scratch_rows(
            [
                self._experiment(),
                self._units_key(),
                "unit_id",
                *unit_columns,
                self._bind("version", "UInt64", self.version),
            ],
            "rollup_scratch_units",
            1,
            where=self._touched(2),
        )
        statements = [
            self._insert(
                "rollup_units", ["experiment", "units_key", "unit_id", *unit_columns, "version"], units
            )
        ]
        self.params = {}
        never = self._bind("never_ms", "Int64", NEVER_MS)
        version = self._bind("version", "UInt64", self.version)
        values = self._scratch_rows(
            [
                self._experiment(),
                self._units_key(),
                "unit_id",
                "day",
                "vals",
                f"arrayMin(arrayPushBack(arrayMap(v -> v.6, vals), {never}))",
                "seen_low",
                "seen_high",
                version,
            ],
            "rollup_scratch_unit_values",
            1,
            where="changed = 1",
        )
        # a unit whose t0 moved to another day leaves its row under the old day, and a unit no longer
        # analysed (now in several variants) is never recomputed: an empty row of the same version
        # replaces that row, so that its pending time cannot touch the unit at every refresh
        before = self._scratch_rows(["unit_id", "day"], "rollup_scratch_unit_values", 0)
        after = self._scratch_rows(["unit_id", "t0_ms", "variant_index"], "rollup_scratch_units", 1)
        empty = "CAST([], 'Array(Tuple(String, Float64, Array(Int32), Array(Float64), Int64, Int64))')"
        tombstones = select(
            [self._experiment(), self._units_key(), "b.unit_id", "b.day", empty, never, "toUInt64(0)",
             "toUInt64(0)", version],
            f"({before}) AS b INNER JOIN ({after}) AS a ON b.unit_id = a.unit_id",
            where=f"b.day != intDiv(a.t0_ms, {DAY_MS}) OR a.variant_index <= 0",
        )  # fmt: skip
        statements.append(
            self._insert(
                "rollup_unit_values",
                ["experiment", "units_key", "unit_id", "day", "vals", "pending_ms", "seen_low", "seen_high",
                 "version"],
                f"{values} UNION ALL {tombstones}",
            )
        )  # fmt: skip
        return statements

    # --- 4. aggregation ----------------------------------------------------------------------------------
    def _per_unit_sql(self) -> str:
        """The cold roll-up's per-unit relation (variant, t0, raw values, covariates, daily series),
        read from the state: the rest of ``metrics_statement`` is unchanged."""
        keys = self._bind("value_keys", "Array(String)", self.value_keys)

        def element(definition: ValueDef) -> str:
            return (
                f"arrayFirst(v -> v.1 = {self._bind(f'key_{definition.key}', 'String', definition.key)}, vs)"
            )

        columns = ["unit_id", "nullIf(arrayMax(arrayPushBack(arrayMap(v -> v.5, vs), 0)), 0) AS last_ms"]
        columns += [f"tupleElement({element(d)}, 2) AS r_{i}" for i, d in enumerate(self.post_defs)]
        columns += [f"tupleElement({element(d)}, 2) AS q_{i}" for i, d in enumerate(self.pre_defs)]
        if self.series_measures:
            parts = []
            for position, index in enumerate(self.series_measures):
                definition = self.post_defs[index]
                increments = ", ".join(
                    "x" if other == position else "toFloat64(0)" for other in range(len(self.series_measures))
                )
                parts.append(
                    f"arrayMap((d, x) -> (toInt64(d), {increments}), tupleElement({element(definition)}, 3), "
                    f"tupleElement({element(definition)}, 4))"
                )
            columns.append(f"arraySort(arrayConcat({', '.join(parts)})) AS series")
        source = self._state_values() if self.touched_only else self._current_values(all_units=False)
        current = select(["unit_id", f"arrayFilter(v -> has({keys}, v.1), vals) AS vs"], f"({source})")
        values = select(columns, f"({current})")
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
        statements = []
        for name in ("rollup_units", "rollup_unit_values"):
            self.params = {}
            # on a cluster, from every shard's own table (ON CLUSTER where replicated: Keeper runs it
            # on every node; else the cluster's shards are the connected server)
            table = name
            if self.shards is not None:
                table = self.shards.table(name)
                if self.shards.replicated:
                    table += f" ON CLUSTER {self.shards.cluster}"
            sql = f"DELETE FROM {table} WHERE experiment = {self._experiment()} AND units_key != {self._units_key()}"  # noqa: S608 - placeholders only
            statements.append(Statement(sql, self.params))
        return statements
