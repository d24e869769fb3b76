"""What a roll-up computes: plain, frozen descriptions of an experiment's metrics (no ORM, no I/O).

The service turns an ``Experiment`` and its ``Metric`` rows into a :class:`RollupSpec`; the query
builder turns the spec into SQL. Keeping the spec plain keeps the SQL testable without a database and
lets the benchmark describe its metrics without Django models.

A metric reduces every unit to one or two *measures* (docs/analysis.md): a measure is
one event counted over the unit's conversion window and capped:

* ``binomial``: 1 if the unit has any such event in the window, else 0;
* ``count``: the number of events in the window (capped);
* ``sum``: the sum of their ``value`` (capped).

A ``ratio`` metric has two: the numerator (sum of its own event's value, its own window and cap) and
the denominator (the denominator metric's measure, with that metric's type, window and cap).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

MEASURE_KINDS = ("binomial", "count", "sum")
METRIC_TYPES = ("binomial", "count", "sum", "ratio", "quantile")
QUANTILE_SCOPES = ("unit", "event")

# Dimension breakdowns (docs/analysis.md, "Dimension breakdowns")
ENTRY_DAY = "entry_day"  # the dimension of each unit's entry day (UTC), not an attribute
MISSING_LEVEL = "__missing__"  # the level of units whose first exposure lacks the attribute
OTHER_LEVEL = "__other__"  # every level beyond the largest ones, pooled
MAX_LEVELS = 20  # the largest levels kept as themselves


@dataclass(frozen=True)
class Measure:
    """One per-unit quantity: ``kind`` of ``event`` within ``window_hours`` of t0, capped at ``cap``.

    ``cap_percentile`` (instead of ``cap``): capped at that percentile of every analysed unit's value
    of the measure, both arms pooled, units without events as 0 (left out with ``cap_ignore_zeros``);
    the roll-up computes it first (``RollupQuery.caps_statement``) and then caps as with ``cap``.
    """

    event: str
    kind: str
    window_hours: int | None = None
    cap: float | None = None
    cap_percentile: float | None = None
    cap_ignore_zeros: bool = False

    def __post_init__(self) -> None:
        if self.kind not in MEASURE_KINDS:
            raise ValueError(
                f"Unknown measure kind {self.kind!r}; expected one of {', '.join(MEASURE_KINDS)}."
            )
        if self.window_hours is not None and self.window_hours <= 0:
            raise ValueError("window_hours must be positive (or None for no upper bound).")
        if self.cap is not None and self.cap < 0:
            raise ValueError("cap must be non-negative (or None for no cap).")
        if self.cap_percentile is not None:
            if not 0.0 < self.cap_percentile < 1.0:
                raise ValueError("cap_percentile must be strictly between 0 and 1.")
            if self.cap is not None or self.kind == "binomial":
                raise ValueError("A percentile cap is for count and sum measures without a fixed cap.")
        elif self.cap_ignore_zeros:
            raise ValueError("cap_ignore_zeros applies to a percentile cap only.")


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the experiment, as the roll-up needs it.

    ``measure`` is the metric's value (for a ratio: its numerator); ``denominator`` is set for ratio
    metrics only. ``cuped`` adds the pre-exposure covariate: the same measure(s) over
    ``t0 - cuped_lookback_days <= timestamp < t0``. ``timeseries`` asks for cumulative daily sums too.
    A ``quantile`` metric has its ``quantile`` level and ``quantile_scope`` and a ``sum`` measure (its
    own statement, :mod:`analytics.rollup.quantile`; no CUPED, no time series).
    """

    key: str
    type: str
    measure: Measure
    denominator: Measure | None = None
    cuped: bool = False
    cuped_lookback_days: int = 14
    timeseries: bool = False
    quantile: float | None = None
    quantile_scope: str | None = None

    def __post_init__(self) -> None:
        if self.type not in METRIC_TYPES:
            raise ValueError(f"Unknown metric type {self.type!r}.")
        if self.type == "quantile" and not (
            self.quantile is not None and 0.0 < self.quantile < 1.0 and self.quantile_scope in QUANTILE_SCOPES
        ):
            raise ValueError("A quantile metric needs 0 < quantile < 1 and a scope (unit or event).")
        if (self.type == "ratio") != (self.denominator is not None):
            raise ValueError("A ratio metric needs a denominator measure; other metrics have none.")
        if self.cuped and self.cuped_lookback_days <= 0:
            raise ValueError("cuped_lookback_days must be positive.")

    @property
    def is_ratio(self) -> bool:
        return self.denominator is not None

    @property
    def measures(self) -> tuple[Measure, ...]:
        return (self.measure,) if self.denominator is None else (self.measure, self.denominator)


@dataclass(frozen=True)
class RollupSpec:
    """An experiment's roll-up: its exposures, variants (control first) and metrics, up to ``until``.

    ``until`` is the analysis time: now, or ``stopped_at`` once stopped; events at or after it are
    ignored (``timestamp < until``). ``environments``: only exposures and events sent with these
    environments' SDK keys count (the experiment's ``analysis_environments``); None counts every one.
    """

    experiment: str
    variants: tuple[str, ...]
    until: dt.datetime
    metrics: tuple[MetricSpec, ...] = field(default_factory=tuple)
    environments: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError("An experiment needs at least one variant.")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError("Variant keys must be unique.")
        if len(self.variants) > 250:
            raise ValueError("At most 250 variants.")
        if self.until.tzinfo is None:
            raise ValueError("until must be timezone-aware.")
        if len({metric.key for metric in self.metrics}) != len(self.metrics):
            raise ValueError("Metric keys must be unique.")
        if self.environments is not None and not self.environments:
            raise ValueError("environments: at least one, or None for every environment.")

    @property
    def percentile_capped(self) -> tuple[Measure, ...]:
        """The distinct measures capped at a percentile (their caps come from a preceding statement)."""
        measures = (m for metric in self.metrics for m in metric.measures if m.cap_percentile is not None)
        return tuple(dict.fromkeys(measures))

    @property
    def until_ms(self) -> int:
        """``until`` in milliseconds since the epoch (the resolution of event timestamps)."""
        delta = self.until.astimezone(dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return delta // dt.timedelta(milliseconds=1)


@dataclass(frozen=True)
class Dimension:
    """What a breakdown groups units by: an exposure attribute's value on the unit's first exposure
    (``attribute``), or, with ``attribute`` None, the unit's entry day.

    ``levels``: the levels kept as themselves (the largest ones); every other level is pooled as
    ``__other__``. None keeps every level as itself (the statement that finds the largest ones).
    """

    name: str
    levels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("A dimension needs a name.")

    @property
    def attribute(self) -> str | None:
        """The exposure attribute, or None for the entry day."""
        return None if self.name == ENTRY_DAY else self.name
