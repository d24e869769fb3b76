"""The Results document (docs/api.md, "Results") as types: what every reader of an experiment's results uses.

The roll-up's statistics are stored as JSON (``ExperimentResult.payload``) and served by the API as
that JSON. Readers (the API, the results pages, the experiment list's columns) do not pick the JSON
apart themselves: they read a :class:`ResultsDocument`, made by :meth:`ResultsDocument.from_dict`.

* ``from_dict`` is tolerant: documents stored by earlier versions lack fields added since (``units``,
  ``analysis.environments``, ``direction``...), and a missing field reads as its "no answer" value
  (None, an empty list), never as an error.
* ``to_dict`` gives the JSON back exactly as the API documents it: fields that a document of this kind
  always has are always present (null when there is no answer); the fields that are only in computed
  documents (``units``, ``analysis``, ``timings_ms``...) are left out when absent, as before.

Pure: no Django, no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_ENGINE = "frequentist"


def _datetime(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(value)


def _date(value: Any) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(value)


def _iso(value: dt.date | dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _pair(value: Any) -> tuple[float | None, float | None] | None:
    if not value:
        return None
    return (value[0], value[1])


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _list(values: Any) -> list[Any]:
    return list(values) if values else []


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class Estimate:
    """An effect and its interval; both None when the engine could not estimate it (see ``error``)."""

    estimate: float | None = None
    ci: tuple[float | None, float | None] | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Estimate:
        data = _mapping(data)
        return cls(estimate=data.get("estimate"), ci=_pair(data.get("ci")))

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate, "ci": list(self.ci) if self.ci is not None else None}


@dataclass(frozen=True)
class Comparison:
    """One treatment against the baseline on one metric.

    ``direction`` is None in documents stored before it existed: readers then decide from the sign
    and ``significant``. ``p_value_adjusted`` and ``guardrail_violated`` are not part of a time
    series' daily points (no adjustment there).
    """

    variant: str
    baseline: str = "control"
    relative: Estimate = field(default_factory=Estimate)
    absolute: Estimate = field(default_factory=Estimate)
    p_value: float | None = None
    p_value_adjusted: float | None = None
    significant: bool = False
    direction: str | None = None  # improved | regressed | inconclusive
    chance_to_win: float | None = None
    risk: tuple[float, float] | None = None
    error: str | None = None
    guardrail_violated: bool | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Comparison:
        data = _mapping(data)
        risk = data.get("risk")
        return cls(
            variant=data.get("variant") or "?",
            baseline=data.get("baseline") or "control",
            relative=Estimate.from_dict(data.get("relative")),
            absolute=Estimate.from_dict(data.get("absolute")),
            p_value=data.get("p_value"),
            p_value_adjusted=data.get("p_value_adjusted"),
            significant=bool(data.get("significant")),
            direction=data.get("direction"),
            chance_to_win=data.get("chance_to_win"),
            risk=tuple(risk) if risk is not None else None,
            error=data.get("error"),
            guardrail_violated=data.get("guardrail_violated"),
        )

    def to_dict(self, *, adjusted: bool = True) -> dict[str, Any]:
        """The comparison's JSON; ``adjusted=False`` for a time series' point (no adjustment fields)."""
        data: dict[str, Any] = {
            "variant": self.variant,
            "baseline": self.baseline,
            "relative": self.relative.to_dict(),
            "absolute": self.absolute.to_dict(),
            "p_value": self.p_value,
        }
        if adjusted:
            data["p_value_adjusted"] = self.p_value_adjusted
        data.update(
            significant=self.significant,
            direction=self.direction,
            chance_to_win=self.chance_to_win,
            risk=list(self.risk) if self.risk is not None else None,
            error=self.error,
        )
        if adjusted:
            data["guardrail_violated"] = self.guardrail_violated
        return data

    @property
    def evidence_p_value(self) -> float | None:
        """The p-value that decides: the adjusted one where there is one, else the raw one."""
        return self.p_value_adjusted if self.p_value_adjusted is not None else self.p_value


@dataclass(frozen=True)
class QuantileSummary:
    """A quantile metric's summary for one variant: what its comparison was computed from.

    ``n`` observations (units, or events for an event quantile), the bounds' grid size ``n_star``,
    the quantile ``estimate`` and the ``lower``/``upper`` order statistics (docs/analysis.md).
    """

    n: int = 0
    n_star: int = 0
    estimate: float | None = None
    lower: float | None = None
    upper: float | None = None

    @classmethod
    def from_dict(cls, data: Any) -> QuantileSummary | None:
        if data is None:
            return None
        data = _mapping(data)
        return cls(
            n=data.get("n") or 0,
            n_star=data.get("n_star") or 0,
            estimate=data.get("estimate"),
            lower=data.get("lower"),
            upper=data.get("upper"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "n_star": self.n_star,
            "estimate": self.estimate,
            "lower": self.lower,
            "upper": self.upper,
        }


@dataclass(frozen=True)
class VariantSummary:
    """One variant's units and unadjusted mean on one metric (Σm/Σd for ratios; the quantile, with
    ``quantile_stats``, for quantile metrics)."""

    variant: str
    units: int = 0
    mean: float | None = None
    quantile_stats: QuantileSummary | None = None

    @classmethod
    def from_dict(cls, data: Any) -> VariantSummary:
        data = _mapping(data)
        return cls(
            variant=data.get("variant") or "?",
            units=data.get("units") or 0,
            mean=data.get("mean"),
            quantile_stats=QuantileSummary.from_dict(data.get("quantile_stats")),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"variant": self.variant, "units": self.units, "mean": self.mean}
        if self.quantile_stats is not None:
            data["quantile_stats"] = self.quantile_stats.to_dict()
        return data


@dataclass(frozen=True)
class MetricResult:
    """One metric's block: how it is analysed, its variants and its comparisons (or why there are none)."""

    metric: str
    name: str = ""
    type: str = ""
    role: str = "secondary"  # primary | secondary | guardrail
    higher_is_better: bool = True
    cuped: bool = False
    variants: tuple[VariantSummary, ...] = ()
    comparisons: tuple[Comparison, ...] = ()
    error: str | None = None
    # What each unit's value (a ratio's numerator) was capped at: the fixed cap_value, the percentile
    # cap computed over the experiment's units (the same for every variant, level and day), or None.
    cap_used: float | None = None

    @classmethod
    def from_dict(cls, data: Any) -> MetricResult:
        data = _mapping(data)
        return cls(
            metric=data.get("metric") or "",
            name=data.get("name") or "",
            type=data.get("type") or "",
            role=data.get("role") or "secondary",
            higher_is_better=data.get("higher_is_better") is not False,
            cuped=bool(data.get("cuped")),
            variants=tuple(VariantSummary.from_dict(v) for v in _list(data.get("variants"))),
            comparisons=tuple(Comparison.from_dict(c) for c in _list(data.get("comparisons"))),
            error=data.get("error"),
            cap_used=_float_or_none(data.get("cap_used")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "name": self.name,
            "type": self.type,
            "role": self.role,
            "higher_is_better": self.higher_is_better,
            "cuped": self.cuped,
            "variants": [v.to_dict() for v in self.variants],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "error": self.error,
            "cap_used": self.cap_used,
        }

    @property
    def label(self) -> str:
        """What to call the metric on a page: its name, else its key."""
        return self.name or self.metric

    def comparison_of(self, variant: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.variant == variant), None)


@dataclass(frozen=True)
class TimeseriesPoint:
    """The cumulative results at the end of ``date``: units exposed by then, events up to then."""

    date: dt.date | None
    variants: tuple[VariantSummary, ...] = ()
    comparisons: tuple[Comparison, ...] = ()

    @classmethod
    def from_dict(cls, data: Any) -> TimeseriesPoint:
        data = _mapping(data)
        return cls(
            date=_date(data.get("date")),
            variants=tuple(VariantSummary.from_dict(v) for v in _list(data.get("variants"))),
            comparisons=tuple(Comparison.from_dict(c) for c in _list(data.get("comparisons"))),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": _iso(self.date),
            "variants": [v.to_dict() for v in self.variants],
            "comparisons": [c.to_dict(adjusted=False) for c in self.comparisons],
        }


@dataclass(frozen=True)
class Timeseries:
    """One metric's daily cumulative results."""

    metric: str
    role: str = ""
    points: tuple[TimeseriesPoint, ...] = ()

    @classmethod
    def from_dict(cls, data: Any) -> Timeseries:
        data = _mapping(data)
        return cls(
            metric=data.get("metric") or "",
            role=data.get("role") or "",
            points=tuple(TimeseriesPoint.from_dict(p) for p in _list(data.get("points"))),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "role": self.role, "points": [p.to_dict() for p in self.points]}


@dataclass(frozen=True)
class Srm:
    """The sample ratio check: units per variant against the configured weights."""

    p_value: float | None = None
    units: Mapping[str, int] = field(default_factory=dict)
    ok: bool = True
    threshold: float | None = None
    weights: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> Srm | None:
        if data is None:
            return None
        data = _mapping(data)
        return cls(
            p_value=data.get("p_value"),
            units=dict(_mapping(data.get("units"))),
            ok=data.get("ok") is not False,
            threshold=data.get("threshold"),
            weights=dict(_mapping(data.get("weights"))),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "p_value": self.p_value,
            "units": dict(self.units),
            "ok": self.ok,
            "threshold": self.threshold,
            "weights": dict(self.weights),
        }


@dataclass(frozen=True)
class Units:
    """Units analysed (in total and per variant) and units left out."""

    total: int
    variants: Mapping[str, int] = field(default_factory=dict)
    multiple_exposures: int = 0
    unknown_variant: int = 0

    @classmethod
    def from_dict(cls, data: Any) -> Units | None:
        if data is None:
            return None
        data = _mapping(data)
        variants = dict(_mapping(data.get("variants")))
        total = data.get("total")
        return cls(
            total=total if total is not None else sum(variants.values()),
            variants=variants,
            multiple_exposures=data.get("multiple_exposures") or 0,
            unknown_variant=data.get("unknown_variant") or 0,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "variants": dict(self.variants),
            "multiple_exposures": self.multiple_exposures,
            "unknown_variant": self.unknown_variant,
        }


# Fields of ``analysis`` that documents of earlier versions may lack; left out of the JSON when absent.
_ANALYSIS_SETTINGS = ("alpha", "sequential", "sequential_tuning", "environments")


@dataclass(frozen=True)
class Analysis:
    """The analysis window and settings the numbers were computed with.

    ``environments`` None: a document from before the setting existed, which counted every environment.
    """

    start: dt.datetime | None = None  # "from" in the JSON
    until: dt.datetime | None = None
    correction: str | None = None
    alpha: float | None = None
    sequential: bool | None = None
    sequential_tuning: float | None = None
    environments: tuple[str, ...] | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Analysis | None:
        if data is None:
            return None
        data = _mapping(data)
        environments = data.get("environments")
        return cls(
            start=_datetime(data.get("from")),
            until=_datetime(data.get("until")),
            correction=data.get("correction"),
            alpha=data.get("alpha"),
            sequential=data.get("sequential"),
            sequential_tuning=data.get("sequential_tuning"),
            environments=tuple(environments) if environments is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "from": _iso(self.start),
            "until": _iso(self.until),
            "correction": self.correction,
        }
        for name in _ANALYSIS_SETTINGS:
            value = getattr(self, name)
            if value is not None:
                data[name] = list(value) if name == "environments" else value
        return data


@dataclass(frozen=True)
class DataFreshness:
    """How recent the analysed data is: first and last exposure, last event."""

    first_exposure_at: dt.datetime | None = None
    last_exposure_at: dt.datetime | None = None
    last_event_at: dt.datetime | None = None

    @classmethod
    def from_dict(cls, data: Any) -> DataFreshness | None:
        if data is None:
            return None
        data = _mapping(data)
        return cls(
            first_exposure_at=_datetime(data.get("first_exposure_at")),
            last_exposure_at=_datetime(data.get("last_exposure_at")),
            last_event_at=_datetime(data.get("last_event_at")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_exposure_at": _iso(self.first_exposure_at),
            "last_exposure_at": _iso(self.last_exposure_at),
            "last_event_at": _iso(self.last_event_at),
        }


_NOTICE_FIELDS = ("code", "metric", "variant", "message", "error")


@dataclass(frozen=True)
class Notice:
    """A warning (``code``, ``message``, perhaps ``metric`` and ``variant``) or an error (``metric``,
    ``error``). Only the fields a notice has are in its JSON."""

    code: str | None = None
    metric: str | None = None
    variant: str | None = None
    message: str | None = None
    error: str | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Notice:
        data = _mapping(data)
        return cls(**{name: data.get(name) for name in _NOTICE_FIELDS})

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _NOTICE_FIELDS if getattr(self, name) is not None}

    @property
    def text(self) -> str:
        return self.message or self.error or ""


@dataclass(frozen=True)
class RefreshInfo:
    """How the last refresh of the results went (``status``: ok, failed or never_computed).

    ``kind`` (``"full"`` or ``"incremental"``) and ``watermark`` describe the last good results: how
    they were rolled up, and the arrival time up to which every exposure and event is in them (rows
    received later may be too); ``recomputed_metrics`` lists the metrics whose per-unit state an
    incremental refresh rebuilt from every event (a new or changed definition).
    """

    status: str = "never_computed"
    last_error: str | None = None
    last_error_at: dt.datetime | None = None
    duration_ms: int | None = None
    refreshed_by: str | None = None
    updated_at: dt.datetime | None = None
    kind: str | None = None
    watermark: dt.datetime | None = None
    recomputed_metrics: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Any) -> RefreshInfo | None:
        if data is None:
            return None
        data = _mapping(data)
        return cls(
            status=data.get("status") or "never_computed",
            last_error=data.get("last_error"),
            last_error_at=_datetime(data.get("last_error_at")),
            duration_ms=data.get("duration_ms"),
            refreshed_by=data.get("refreshed_by"),
            updated_at=_datetime(data.get("updated_at")),
            kind=data.get("kind"),
            watermark=_datetime(data.get("watermark")),
            recomputed_metrics=tuple(_list(data.get("recomputed_metrics"))),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
            "duration_ms": self.duration_ms,
            "refreshed_by": self.refreshed_by,
            "updated_at": _iso(self.updated_at),
            "kind": self.kind,
            "watermark": _iso(self.watermark),
            "recomputed_metrics": list(self.recomputed_metrics),
        }

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass(frozen=True)
class DimensionLevel:
    """One level of a dimension breakdown: its units, its own SRM check and its metrics, computed as
    the analysis of that level's units alone (docs/analysis.md, "Dimension breakdowns")."""

    level: str
    units: int = 0
    srm: Srm | None = None
    metrics: tuple[MetricResult, ...] = ()

    @classmethod
    def from_dict(cls, data: Any) -> DimensionLevel:
        data = _mapping(data)
        return cls(
            level=str(data.get("level") or ""),
            units=data.get("units") or 0,
            srm=Srm.from_dict(data.get("srm")),
            metrics=tuple(MetricResult.from_dict(m) for m in _list(data.get("metrics"))),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "units": self.units,
            "srm": self.srm.to_dict() if self.srm is not None else None,
            "metrics": [m.to_dict() for m in self.metrics],
        }

    def metric(self, key: str) -> MetricResult | None:
        return next((m for m in self.metrics if m.metric == key), None)


@dataclass(frozen=True)
class DimensionBreakdown:
    """The results per level of one dimension (``?dimension=NAME``): the largest levels, then
    ``__other__``; ``available`` lists every dimension the experiment can be broken down by."""

    name: str
    levels: tuple[DimensionLevel, ...] = ()
    available: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Any) -> DimensionBreakdown | None:
        if data is None:
            return None
        data = _mapping(data)
        return cls(
            name=str(data.get("name") or ""),
            levels=tuple(DimensionLevel.from_dict(level) for level in _list(data.get("levels"))),
            available=tuple(_list(data.get("available"))),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "levels": [level.to_dict() for level in self.levels],
            "available": list(self.available),
        }

    def level(self, name: str) -> DimensionLevel | None:
        return next((level for level in self.levels if level.level == name), None)


@dataclass(frozen=True)
class ResultsDocument:
    """An experiment's results: as stored after a refresh, and as the API serves them.

    A document that was never computed has ``computed_at`` None, no ``srm`` and no metrics; only
    computed documents have ``units``, ``analysis``, ``data``, ``engine`` and ``timings_ms``.
    """

    experiment: str
    computed_at: dt.datetime | None = None
    srm: Srm | None = None
    units: Units | None = None
    multiple_exposures: int | None = None
    analysis: Analysis | None = None
    data: DataFreshness | None = None
    metrics: tuple[MetricResult, ...] = ()
    timeseries: tuple[Timeseries, ...] = ()
    warnings: tuple[Notice, ...] = ()
    errors: tuple[Notice, ...] = ()
    experiment_status: str | None = None
    engine: str | None = None
    timings_ms: Mapping[str, float] | None = None
    refresh: RefreshInfo | None = None
    message: str | None = None
    dimension: DimensionBreakdown | None = None  # only when asked for (``?dimension=NAME``)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResultsDocument:
        timings = data.get("timings_ms")
        return cls(
            experiment=data.get("experiment") or "",
            computed_at=_datetime(data.get("computed_at")),
            srm=Srm.from_dict(data.get("srm")),
            units=Units.from_dict(data.get("units")),
            multiple_exposures=data.get("multiple_exposures"),
            analysis=Analysis.from_dict(data.get("analysis")),
            data=DataFreshness.from_dict(data.get("data")),
            metrics=tuple(MetricResult.from_dict(m) for m in _list(data.get("metrics"))),
            timeseries=tuple(Timeseries.from_dict(t) for t in _list(data.get("timeseries"))),
            warnings=tuple(Notice.from_dict(w) for w in _list(data.get("warnings"))),
            errors=tuple(Notice.from_dict(e) for e in _list(data.get("errors"))),
            experiment_status=data.get("experiment_status"),
            engine=data.get("engine"),
            timings_ms=dict(timings) if timings is not None else None,
            refresh=RefreshInfo.from_dict(data.get("refresh")),
            message=data.get("message"),
            dimension=DimensionBreakdown.from_dict(data.get("dimension")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The document's JSON (docs/api.md): what ``from_dict`` read, in the API's shape."""
        document: dict[str, Any] = {
            "experiment": self.experiment,
            "computed_at": _iso(self.computed_at),
            "srm": self.srm.to_dict() if self.srm is not None else None,
        }
        optional: Sequence[tuple[str, Any]] = (
            ("units", self.units.to_dict() if self.units is not None else None),
            ("multiple_exposures", self.multiple_exposures),
            ("analysis", self.analysis.to_dict() if self.analysis is not None else None),
            ("data", self.data.to_dict() if self.data is not None else None),
        )
        document.update((name, value) for name, value in optional if value is not None)
        document.update(
            metrics=[m.to_dict() for m in self.metrics],
            timeseries=[t.to_dict() for t in self.timeseries],
            warnings=[w.to_dict() for w in self.warnings],
            errors=[e.to_dict() for e in self.errors],
        )
        optional = (
            ("experiment_status", self.experiment_status),
            ("engine", self.engine),
            ("timings_ms", dict(self.timings_ms) if self.timings_ms is not None else None),
            ("refresh", self.refresh.to_dict() if self.refresh is not None else None),
            ("message", self.message),
            ("dimension", self.dimension.to_dict() if self.dimension is not None else None),
        )
        document.update((name, value) for name, value in optional if value is not None)
        return document

    # --- what readers ask of it ---------------------------------------------------------------------
    @property
    def computed(self) -> bool:
        """False until the first successful refresh."""
        return self.computed_at is not None

    @property
    def engine_name(self) -> str:
        return self.engine or DEFAULT_ENGINE

    @property
    def alpha(self) -> float | None:
        return self.analysis.alpha if self.analysis is not None else None

    @property
    def is_sequential(self) -> bool:
        """The frequentist engine with sequential testing: p-values and intervals are always valid."""
        return (
            self.engine_name == "frequentist" and self.analysis is not None and bool(self.analysis.sequential)
        )

    @property
    def srm_failed(self) -> bool:
        return self.srm is not None and not self.srm.ok

    @property
    def total_units(self) -> int | None:
        """Units analysed, or None when never computed (older documents: the sum of the SRM's units)."""
        if self.units is not None:
            return self.units.total
        if self.srm is not None:
            return sum(self.srm.units.values())
        return None

    @property
    def primary_metric(self) -> MetricResult | None:
        """The first primary metric's block, if any."""
        return next((m for m in self.metrics if m.role == "primary"), None)

    def metric(self, key: str) -> MetricResult | None:
        return next((m for m in self.metrics if m.metric == key), None)

    @property
    def analysed_environments(self) -> tuple[str, ...] | None:
        """The environments counted; None when the document counted every one (made before the setting)."""
        return self.analysis.environments if self.analysis is not None else None
