"""Dimension breakdowns of an experiment's results (``GET .../results/?dimension=NAME``).

The latest results document with a ``dimension`` block: per level of the dimension (the 20 largest
and ``__other__``, :mod:`analytics.rollup.dimensions`) its units, SRM check and metrics, each level
analysed as its units alone (the experiment's engine, options and multiple-testing correction across
the level's own metrics). Per-level p-values are not corrected for the number of levels: the
breakdown is exploratory, and the document says so in a warning.

Computed from ClickHouse on demand, over the same analysis window as the stored results (their
``analysis.until``), and cached per experiment, dimension and refresh (``computed_at``): the next
refresh makes a new key, so a breakdown is never older than the results it sits in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

from django.core.cache import cache
from django.utils import timezone
from rest_framework import status

from analytics.clickhouse import ClickHouseError
from analytics.results.analysis import results_document
from analytics.results.document import DimensionBreakdown, DimensionLevel, Notice, ResultsDocument
from analytics.results.selectors import experiment_results_get
from analytics.results.services import (
    experiment_analysis_plan,
    experiment_analysis_time,
    experiment_rollup_spec,
)
from analytics.rollup.dimensions import attribute_names, rollup_breakdown
from analytics.rollup.refresh import Rollup
from analytics.rollup.spec import ENTRY_DAY, MAX_LEVELS, OTHER_LEVEL
from config.exceptions import DomainError
from experiments.models import Experiment

BREAKDOWN_CACHE_TIMEOUT = 24 * 60 * 60  # keys change with every refresh; this only bounds memory

EXPLORATORY_WARNING = Notice(
    code="dimension_exploratory",
    message="Per-level p-values and intervals are not corrected for the number of levels looked at: "
    "with enough levels one will look significant by chance. Treat a breakdown as exploratory, a "
    "hypothesis for a new experiment, not as a result.",
)


class UnknownDimension(DomainError):
    """``dimension`` names neither ``entry_day`` nor an attribute of the experiment's exposures."""

    code = "unknown_dimension"


class BreakdownUnavailable(DomainError):
    """ClickHouse could not compute the breakdown (unreachable, or it refused the query)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "breakdown_unavailable"


def _cache_key(kind: str, experiment: Experiment, document: ResultsDocument, name: str = "") -> str:
    """Per experiment, refresh and (hashed: any text may be an attribute name) dimension."""
    refreshed = document.computed_at.isoformat() if document.computed_at else "never"
    digest = hashlib.sha256(f"{refreshed}\n{name}".encode()).hexdigest()[:32]
    return f"analytics:results-{kind}:{experiment.pk}:{digest}"


def _analysis_time(experiment: Experiment, document: ResultsDocument) -> dt.datetime:
    """The stored results' analysis time, so that levels add up to the results they sit in."""
    if document.analysis is not None and document.analysis.until is not None:
        return document.analysis.until
    return experiment_analysis_time(experiment, timezone.now())


def experiment_dimensions(*, experiment: Experiment, document: ResultsDocument | None = None) -> list[str]:
    """What the experiment's results can be broken down by: ``entry_day`` and every attribute name
    seen on its analysed exposures (in name order). Cached like the breakdowns."""
    document = document or experiment_results_get(experiment=experiment)
    key = _cache_key("dimensions", experiment, document)
    cached = cache.get(key)
    if cached is not None:
        return list(cached)
    spec = experiment_rollup_spec(experiment=experiment, until=_analysis_time(experiment, document))
    try:
        names = attribute_names(spec)
    except ClickHouseError as exc:
        raise BreakdownUnavailable(f"The experiment's dimensions could not be read: {exc}") from exc
    available = [ENTRY_DAY, *(name for name in names if name != ENTRY_DAY)]
    cache.set(key, available, BREAKDOWN_CACHE_TIMEOUT)
    return available


def _level(level: str, rollup: Rollup, experiment: Experiment, computed_at: dt.datetime) -> DimensionLevel:
    """One level's block: the results document of its roll-up alone (SRM, metrics)."""
    document = results_document(
        experiment=experiment.key,
        rollup=rollup,
        metrics=experiment_analysis_plan(experiment),
        weights=[v.weight for v in experiment.variants.all()],
        srm_threshold=experiment.srm_threshold,
        correction=experiment.correction,
        computed_at=computed_at,
    )
    return DimensionLevel(
        level=level, units=sum(rollup.units.values()), srm=document.srm, metrics=document.metrics
    )


def experiment_results_breakdown(*, experiment: Experiment, dimension: str) -> ResultsDocument:
    """The latest results of ``experiment`` with the breakdown by ``dimension`` (module docstring).

    Raises :class:`UnknownDimension` (400, naming the available dimensions) and
    :class:`BreakdownUnavailable` (503) when ClickHouse cannot answer. Before the first refresh the
    breakdown has no levels.
    """
    document = experiment_results_get(experiment=experiment)
    available = experiment_dimensions(experiment=experiment, document=document)
    if dimension not in available:
        shown = ", ".join(available)
        reason = "is empty" if not dimension else f"{dimension!r} is not one of them"
        raise UnknownDimension(
            f"dimension: results break down by the entry day or an attribute of the experiment's "
            f"exposures ({shown}); {reason}.",
            field="dimension",
        )
    if not document.computed:
        return dataclasses.replace(document, dimension=DimensionBreakdown(dimension, (), tuple(available)))
    key = _cache_key("dimension", experiment, document, dimension)
    cached = cache.get(key)
    if cached is None:
        spec = experiment_rollup_spec(experiment=experiment, until=_analysis_time(experiment, document))
        try:
            breakdown = rollup_breakdown(spec, dimension)
        except ClickHouseError as exc:
            raise BreakdownUnavailable(f"The breakdown by {dimension} could not be computed: {exc}") from exc
        computed_at = document.computed_at or timezone.now()
        levels = tuple(_level(name, rollup, experiment, computed_at) for name, rollup in breakdown.levels)
        cached = DimensionBreakdown(dimension, levels, tuple(available)).to_dict()
        cache.set(key, cached, BREAKDOWN_CACHE_TIMEOUT)
    return dataclasses.replace(
        document,
        dimension=DimensionBreakdown.from_dict(cached),
        warnings=(*document.warnings, EXPLORATORY_WARNING),
    )


__all__ = [
    "MAX_LEVELS",
    "OTHER_LEVEL",
    "BreakdownUnavailable",
    "UnknownDimension",
    "experiment_dimensions",
    "experiment_results_breakdown",
]
