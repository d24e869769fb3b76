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

import datetime as dt
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from analytics import clickhouse
from analytics.clickhouse import ClickHouseError
from analytics.rollup.query import QUERY_SETTINGS, Statement
from analytics.rollup.refresh import Rollup, empty_metrics, read_metrics, read_units
from analytics.rollup.spec import RollupSpec
from analytics.rollup.state import StateQuery, ValueDef, units_key

logger = logging.getLogger(__name__)

STATE_FORMAT = 1  # bump when the state tables' meaning changes: every experiment then recomputes


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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["value_keys"] = list(self.value_keys)
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
            )
        except (KeyError, TypeError, ValueError):
            return None


def _ms(when: dt.datetime) -> int:
    return (when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


def _run(statement: Statement) -> list[dict[str, Any]]:
    return clickhouse.query(statement.sql, statement.params, settings=QUERY_SETTINGS)


def _command(statement: Statement) -> None:
    clickhouse.command(statement.sql, statement.params, settings=QUERY_SETTINGS)


def full_reason(spec: RollupSpec, previous: RollupState | None, *, full: bool) -> str | None:
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
    query = StateQuery(spec, units_key=previous.units_key, version=0)
    units = int(_run(query.count_statement())[0]["units"])
    if units != previous.units:
        return f"state holds {units} units, the last refresh left {previous.units}"
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
    reason = full_reason(spec, previous, full=full)
    version = _ms(read_at)
    if reason is None:
        assert previous is not None
        generation, kind = previous.generation, "incremental"
    else:
        generation, kind = uuid.uuid4().hex[:16], "full"
        logger.info("Experiment %s: full roll-up (%s).", spec.experiment, reason)
    query = StateQuery(spec, units_key=units_key(spec, generation), version=version)
    known = set(previous.value_keys) if previous is not None and reason is None else set()
    definitions = query.post_defs + query.pre_defs
    stale = [d for d in definitions if d.key in known]
    fresh = [d for d in definitions if d.key not in known]

    if kind == "incremental":
        _command(query.touched_statement(watermark=previous.watermark, value_keys=sorted(known)))
    _command(query.units_insert_statement(touched_only=kind == "incremental"))
    unit_rows = _run(query.units_statement())
    rollup, units_by_day, _ = read_units(spec, unit_rows)
    if stale:
        _command(query.values_insert_statement(stale, touched_only=True))
    if fresh and rollup.first_exposure_at is not None:
        _command(query.values_insert_statement(fresh, touched_only=False, since=query_since(query, rollup)))
    if spec.metrics and rollup.first_exposure_at is not None:
        read_metrics(rollup, _run(query.metrics_statement()), units_by_day)
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
    )
    rollup.duration_ms = (time.perf_counter() - started) * 1000
    return rollup


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
