"""Incremental refresh: roll an experiment up from per-unit state, recomputing touched units only.

``rollup_refresh(spec, previous=..., read_at=..., watermark=...)`` returns the same :class:`Rollup`
as the cold ``rollup_run(spec)`` (docs/analysis.md, "Incremental refresh"), plus the
:class:`RollupState` the caller keeps for the next refresh. It falls back to a full recompute by
itself when there is no usable state, and recomputes in full only the measures that are new.

The caller owns the clock and the watermark rule (``analytics.results.services``): ``read_at`` is when
the refresh started (it versions the state rows), ``watermark`` the arrival time up to which
everything is known to be visible (the next refresh reads what arrived after it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import secrets
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings

from analytics import clickhouse
from analytics.clickhouse import ClickHouseError
from analytics.clickhouse.client import cluster_insert_settings
from analytics.rollup.quantile import rollup_quantiles, without_quantiles
from analytics.rollup.query import QUERY_SETTINGS, Shards, Statement
from analytics.rollup.refresh import (
    Rollup,
    empty_metrics,
    percentile_caps,
    read_metrics,
    read_units,
    record_caps,
    rollup_shards,
    shard_slots,
)
from analytics.rollup.spec import Measure, RollupSpec
from analytics.rollup.state import StateQuery, ValueDef, digest, units_key

logger = logging.getLogger(__name__)

STATE_FORMAT = 4  # bump when the state's meaning changes: every experiment then recomputes
# Sums kept up to date by differences are re-aggregated from the state this often (in refreshes:
# a day at the default 5-minute interval), so floating-point rounding cannot drift for months.
REAGGREGATE_EVERY = 288


@dataclass(frozen=True)
class RollupState:
    """What a refresh leaves for the next one (stored with the results; JSON-safe via ``to_dict``)."""

    generation: str
    units_key: str
    value_keys: tuple[str, ...]
    watermark: dt.datetime  # rows received after this are the next refresh's arrivals
    until: dt.datetime  # the analysis time of this refresh
    units: int  # rows of rollup_units for units_key after this refresh
    kind: str  # "full" or "incremental": how this refresh ran
    format: int = STATE_FORMAT
    # The aggregate itself, as the units and metrics statements answer it (rows per variant and
    # day), for the definition aggregation_key names; a refresh updates it by the touched units'
    # contributions after minus before. first_exposure_ms: the earliest t0 of an analysed unit.
    aggregation_key: str = ""
    unit_rows: tuple[dict[str, Any], ...] = ()
    metric_rows: tuple[dict[str, Any], ...] = ()
    first_exposure_ms: int | None = None
    updates: int = 0  # refreshes since the sums were last aggregated from the whole state
    # This refresh's id (random, naming its rows of rollup_arrivals) and how many arrival rows it recorded: the next refresh
    # leaves those rows out (they are counted), and recomputes in full if they are gone.
    refresh_id: int = 0
    arrivals: int = 0
    # The highest row version this refresh wrote: rows of a higher one were written by a refresh that
    # failed after writing them, so the stored sums do not include them (see _written_since)
    version: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["value_keys"] = list(self.value_keys)
        data["unit_rows"] = [dict(row) for row in self.unit_rows]
        data["metric_rows"] = [dict(row) for row in self.metric_rows]
        if not all(
            math.isfinite(v) for row in self.metric_rows for v in row.values() if isinstance(v, float)
        ):
            # sums that overflowed (values near the largest double) cannot be stored as JSON: keep
            # no sums, so the next refresh aggregates the state again
            data.update(aggregation_key="", unit_rows=[], metric_rows=[])
        data["watermark"] = self.watermark.isoformat()
        data["until"] = self.until.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: Any) -> RollupState | None:
        """The stored state; None when there is none or it cannot be read (then: a full recompute)."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                generation=str(data["generation"]),
                units_key=str(data["units_key"]),
                value_keys=tuple(str(k) for k in data["value_keys"]),
                watermark=dt.datetime.fromisoformat(data["watermark"]),
                until=dt.datetime.fromisoformat(data["until"]),
                units=int(data["units"]),
                kind=str(data.get("kind", "full")),
                format=int(data.get("format", 0)),
                aggregation_key=str(data.get("aggregation_key", "")),
                unit_rows=tuple(dict(row) for row in data.get("unit_rows", ())),
                metric_rows=tuple(dict(row) for row in data.get("metric_rows", ())),
                first_exposure_ms=data.get("first_exposure_ms"),
                updates=int(data.get("updates", 0)),
                refresh_id=int(data.get("refresh_id", 0)),
                arrivals=int(data.get("arrivals", 0)),
                version=int(data.get("version", 0)),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _ms(when: dt.datetime) -> int:
    return (when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


def _settings() -> dict[str, Any]:
    """The statements' settings. On a cluster, each shard's first healthy replica answers
    (``load_balancing = 'in_order'``, for reads and the inserts' replica alike), so a refresh reads
    the rows it has just written even where an insert is acknowledged by one replica before the
    others have it (``CLICKHOUSE_INSERT_QUORUM`` below the replica count)."""
    if not settings.CLICKHOUSE_CLUSTER:
        return dict(QUERY_SETTINGS)
    return {**QUERY_SETTINGS, "load_balancing": "in_order"}


# Every statement writes each key of a ReplacingMergeTree state table once per version, and every
# reader takes the newest version itself, so an insert need not collapse its own block: sorting and
# merging a block of nested value arrays on insert (``optimize_on_insert``, on by default) cost half
# of the write back of the touched units' values (measured at 10M events, docs/analysis.md).
STATE_INSERT = {"optimize_on_insert": 0}


def _run(statement: Statement) -> list[dict[str, Any]]:
    return clickhouse.query(statement.sql, statement.params, settings=_settings())


def _command(statement: Statement) -> None:
    """An ``INSERT ... SELECT`` (or ``DELETE``); on a cluster with the inserts' settings (rows on their
    shards when it returns, the quorum), and the rows sent through the initiator
    (``parallel_distributed_insert_select``, 2 by default since ClickHouse 25, would have each shard
    insert what it selects into its own table: right on a cluster of distinct servers, but where two
    shards are one server, as in the test suite, each would write every unit, and ``shardNum()`` reads
    0 there, so the shard cannot keep its own units; see ``StateQuery._owned``)."""
    insert = cluster_insert_settings(settings.CLICKHOUSE_CLUSTER, settings.CLICKHOUSE_INSERT_QUORUM)
    if insert:
        insert["parallel_distributed_insert_select"] = 0
    clickhouse.command(statement.sql, statement.params, settings={**_settings(), **insert, **STATE_INSERT})


def state_shards() -> Shards | None:
    """Where the state lives: per shard of ``CLICKHOUSE_CLUSTER`` (with the tables' routing, which
    the state's writes follow), else None (one server)."""
    shards = rollup_shards()
    if shards is None:
        return None
    return dataclasses.replace(shards, slots=shard_slots(shards.cluster))


def full_reason(
    spec: RollupSpec, previous: RollupState | None, *, full: bool, shards: Shards | None = None
) -> str | None:
    """Why this refresh must recompute everything (None: it can be incremental)."""
    if full:
        return "requested"
    if previous is None:
        return "no state"
    if previous.format != STATE_FORMAT:
        return "state format changed"
    if units_key(spec, previous.generation) != previous.units_key:
        return "experiment definition changed"
    if spec.until < previous.until:
        return "analysis time moved back"
    query = StateQuery(spec, units_key=previous.units_key, version=0, shards=shards)
    units = int(_run(query.count_statement())[0]["units"])
    if units < previous.units:
        return f"state holds {units} unit rows, the last refresh left {previous.units} units"
    arrivals = int(_run(query.arrivals_count_statement(previous.refresh_id))[0]["rows"])
    if arrivals != previous.arrivals:  # dropped by their TTL (a week), or lost
        return f"the last refresh's {previous.arrivals} arrival rows are not all there ({arrivals})"
    return None


def rollup_refresh(
    spec: RollupSpec,
    *,
    previous: RollupState | None,
    read_at: dt.datetime,
    watermark: dt.datetime,
    full: bool = False,
) -> Rollup:
    """Roll ``spec`` up from per-unit state, incrementally from ``previous`` when it can.

    ``read_at``: when this refresh started (later refreshes must pass later times); ``watermark``:
    rows received after it are the next refresh's arrivals (see the module docstring). ``full``:
    recompute everything (``manage.py rollup --full``). Raises ``ClickHouseError``.
    """
    started = time.perf_counter()
    full_spec, spec = spec, without_quantiles(spec)  # quantile metrics: recomputed whole, every time
    shards = state_shards()
    reason = full_reason(spec, previous, full=full, shards=shards)
    # Even: a definition change writes its merged rows at version + 1, which must stay below the
    # next refresh's version even if that one reads a millisecond later
    version = 2 * _ms(read_at)
    if reason is None:
        assert previous is not None
        generation, kind = previous.generation, "incremental"
    else:
        generation, kind = uuid.uuid4().hex[:16], "full"
        logger.info("Experiment %s: full roll-up (%s).", spec.experiment, reason)
    refresh_id = secrets.randbits(63)
    query = StateQuery(
        spec, units_key=units_key(spec, generation), version=version, refresh_id=refresh_id, shards=shards
    )
    known = set(previous.value_keys) if previous is not None and reason is None else set()
    definitions = query.post_defs + query.pre_defs
    stale = [d for d in definitions if d.key in known]
    fresh = [d for d in definitions if d.key not in known]
    aggregation = aggregation_key(spec, query)
    by_difference = (
        kind == "incremental"
        and not fresh
        and previous.aggregation_key == aggregation
        and previous.updates < REAGGREGATE_EVERY
        # a percentile cap moves with every unit's value: then every unit's contribution changes
        and not spec.percentile_capped
        and not _written_since(query, previous)
    )

    # What this refresh counts beyond the state: the rows received after the previous watermark (or
    # its own, for a full refresh), recorded before anything else reads events (see _counted_filter)
    lower = watermark if kind == "full" else min(watermark, previous.watermark)
    _command(
        query.arrivals_statement(
            after=lower,
            new_after=previous.watermark if kind == "incremental" else None,
            previous_refresh=previous.refresh_id if kind == "incremental" else None,
        )
    )
    arrivals = int(_run(query.arrivals_count_statement(refresh_id))[0]["rows"])
    if kind == "incremental":
        _incremental_steps(query, previous, stale, lower=lower)
    else:
        _command(query.units_insert_statement(touched_only=False))
    if by_difference:  # the touched units' contributions before (previous analysis time) and after
        before = StateQuery(
            dataclasses.replace(spec, until=previous.until), units_key=query.units_key, version=version,
            touched_only=True, refresh_id=refresh_id, shards=shards,
        )  # fmt: skip
        before.phase = 0
        after = StateQuery(
            spec, units_key=query.units_key, version=version, touched_only=True, refresh_id=refresh_id,
            shards=shards,
        )  # fmt: skip
        old_units = _run(before.units_statement())
        unit_rows, first_ms = _units_updated(previous, old_units, _run(after.units_statement()))
        if first_ms is _UNKNOWN:  # an analysed unit left (now in two variants): find the new earliest
            first_ms = _first_exposure_ms(query)
    else:
        unit_rows = _run(query.units_statement())
        first_ms = min((r["first_exposure_ms"] for r in unit_rows if r["variant_index"] > 0), default=None)
    for row in unit_rows:  # read_units takes the earliest of the analysed groups' first exposures
        if row["variant_index"] > 0:
            row["first_exposure_ms"] = first_ms
    rollup, units_by_day, _ = read_units(spec, unit_rows)
    if fresh and rollup.first_exposure_at is not None:
        _command(
            query.values_insert_statement(
                fresh,
                touched_only=False,
                lower=lower,
                since=query_since(query, rollup),
                merge=kind == "incremental",
            )
        )
    caps: dict[Measure, float | None] = {}
    if by_difference:
        old_metrics = _run(before.metrics_statement()) if spec.metrics else []
        new_metrics = _run(after.metrics_statement()) if spec.metrics else []
        metric_rows = _metrics_updated(previous.metric_rows, old_metrics, new_metrics)
    elif spec.metrics and rollup.first_exposure_at is not None:
        if spec.percentile_capped:  # from the state's raw values, as the cold roll-up from events
            caps = percentile_caps(
                StateQuery(spec, units_key=query.units_key, version=version, shards=shards),
                rollup,
                _settings(),
            )
        query.caps = caps
        metric_rows = _run(query.metrics_statement())
    else:
        metric_rows = []
    if spec.metrics and rollup.first_exposure_at is not None:
        read_metrics(rollup, metric_rows, units_by_day)
    else:
        empty_metrics(rollup)
    if kind == "full":
        _delete_other_generations(query)

    rollup.kind = kind
    rollup.recomputed_metrics = _recomputed(spec, query, fresh) if kind == "incremental" else ()
    rollup.state = RollupState(
        generation=generation,
        units_key=query.units_key,
        value_keys=tuple(query.value_keys),
        watermark=watermark,
        until=spec.until,
        units=sum(int(row["units"]) for row in unit_rows),
        kind=kind,
        aggregation_key=aggregation,
        unit_rows=tuple(_plain(row) for row in unit_rows),
        metric_rows=tuple(_plain(row) for row in metric_rows),
        first_exposure_ms=first_ms,
        updates=previous.updates + 1 if by_difference else 0,
        refresh_id=refresh_id,
        arrivals=arrivals,
        version=version + 1,
    )
    record_caps(rollup, full_spec, caps)
    rollup_quantiles(rollup, full_spec, shards)
    rollup.duration_ms = (time.perf_counter() - started) * 1000
    return rollup


_UNKNOWN: Any = object()


def _incremental_steps(
    query: StateQuery, previous: RollupState, stale: list[ValueDef], *, lower: dt.datetime
) -> None:
    """Bring the touched units' state up to date (docs/analysis.md, "Incremental refresh"): copy
    their rows out (phase 0), recompute their t0 and variant from their exposures where exposures
    arrived (phase 1), recompute from their events only the units whose t0 or variant changed, whose
    pending event now counts or which received a changed replay, add the arrivals to the others'
    values, and write the result back."""
    _command(query.touched_statement(watermark=previous.watermark, previous_until=previous.until))
    stale_keys = sorted({d.key for d in stale})
    for statement in query.snapshot_statements(stale_keys):
        _command(statement)
    _command(query.units_insert_statement(touched_only=True))
    _command(query.recompute_statement())
    if stale:
        _command(query.values_insert_statement(stale, touched_only=True, lower=lower))
        _command(query.delta_statement(stale))
    for statement in query.commit_statements():
        _command(statement)


def aggregation_key(spec: RollupSpec, query: StateQuery) -> str:
    """What the stored sums depend on besides the state: every metric setting (caps, kinds, CUPED,
    series), the variants and environments, and the state's keys."""
    return digest("aggregation", repr(spec.metrics), list(spec.variants), query.units_key, query.value_keys)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A statement's row as JSON-safe numbers."""
    return {key: (None if value is None else (float(value) if isinstance(value, float) else int(value)))
            for key, value in row.items()}  # fmt: skip


def _units_updated(
    previous: RollupState, before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], Any]:
    """The units statement's rows, updated by the touched units' rows after minus before; and the
    earliest first exposure of an analysed unit (``_UNKNOWN`` when one that might have held it left)."""
    rows = {(r["variant_index"], r["entry_day"]): dict(r) for r in previous.unit_rows}
    for sign, changes in ((-1, before), (1, after)):
        for change in changes:
            key = (change["variant_index"], change["entry_day"])
            row = rows.setdefault(key, {**change, "units": 0})
            row["units"] = int(row["units"]) + sign * int(change["units"])
            row["last_exposure_ms"] = max(row["last_exposure_ms"], change["last_exposure_ms"])
    first_ms: Any = previous.first_exposure_ms
    valid_before = min((r["first_exposure_ms"] for r in before if r["variant_index"] > 0), default=None)
    valid_after = min((r["first_exposure_ms"] for r in after if r["variant_index"] > 0), default=None)
    if (
        valid_before is not None
        and valid_before == first_ms
        and (valid_after is None or valid_after > first_ms)
    ):
        first_ms = _UNKNOWN
    elif valid_after is not None:
        first_ms = valid_after if first_ms is None else min(first_ms, valid_after)
    return [row for row in rows.values() if row["units"]], first_ms


def _written_since(query: StateQuery, previous: RollupState) -> bool:
    """Whether the state holds rows written after ``previous`` saved its sums: a refresh that failed
    after committing its rows (its sums were never stored), so differences from the stored sums would
    leave its changes out. Then the sums are aggregated from the whole state (``by_difference`` off)."""
    return int(_run(query.newer_rows_statement(previous.version))[0]["rows"]) > 0


def _first_exposure_ms(query: StateQuery) -> int | None:
    query.params = {}
    sql = f"SELECT minOrNull(t0_ms) AS first FROM ({query._state_units(valid_only=True)})"  # noqa: S608 - placeholders only
    rows = _run(query._merged(sql, {"first": "min"}))  # a shard without units answers NULL
    return int(rows[0]["first"]) if rows and rows[0]["first"] is not None else None


def _metrics_updated(
    stored: tuple[dict[str, Any], ...], before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The metrics statement's rows (sums per variant and day), plus after minus before."""
    rows = {(r["variant_index"], r["day"]): dict(r) for r in stored}
    for sign, changes in ((-1, before), (1, after)):
        for change in changes:
            key = (change["variant_index"], change["day"])
            row = rows.get(key)
            if row is None:
                row = rows[key] = {name: (value if name in ("variant_index", "day") else 0.0)
                                   for name, value in change.items()}  # fmt: skip
                row["last_event_ms"] = None
            for name, value in change.items():
                if name in ("variant_index", "day"):
                    continue
                if name == "last_event_ms":  # the latest event: only ever moves later
                    if value is not None and sign > 0:
                        row[name] = value if row[name] is None else max(row[name], value)
                    continue
                row[name] = float(row[name]) + sign * float(value)
    return list(rows.values())


def query_since(query: StateQuery, rollup: Rollup) -> dt.datetime:
    """No unit can count an event older than this: the first exposure minus the longest look-back."""
    assert rollup.first_exposure_at is not None
    lookback = max((days for _, days in query.covariates), default=0)
    return max(rollup.first_exposure_at - dt.timedelta(days=lookback), dt.datetime(1970, 1, 1, tzinfo=dt.UTC))


def _recomputed(spec: RollupSpec, query: StateQuery, fresh: list[ValueDef]) -> tuple[str, ...]:
    keys = {d.key for d in fresh}
    by_measure = {d.measure: d.key for d in query.post_defs}
    by_covariate = {(d.measure, d.lookback_days): d.key for d in query.pre_defs}
    recomputed = []
    for metric in spec.metrics:
        needed = {by_measure[m] for m in metric.measures}
        if metric.cuped:
            needed |= {by_covariate[(m, metric.cuped_lookback_days)] for m in metric.measures}
        if needed & keys:
            recomputed.append(metric.key)
    return tuple(recomputed)


def _delete_other_generations(query: StateQuery) -> None:
    """Old generations' rows are garbage after a full recompute; failing to drop them is harmless."""
    for statement in query.delete_statements():
        try:
            _command(statement)
        except ClickHouseError as exc:
            logger.warning("Could not delete old roll-up state of %s: %s", query.spec.experiment, exc)
