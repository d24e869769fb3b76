"""Dimension breakdowns of an experiment's results (``GET .../results/?dimension=NAME``).

The latest results document with a ``dimension`` block: per level of the dimension (the 20 largest
and ``__other__``, :mod:`analytics.rollup.dimensions`) its units, SRM check and metrics, each level
analysed as its units alone (the experiment's engine, options and multiple-testing correction across
the level's own metrics). Per-level p-values are not corrected for the number of levels: the
breakdown is exploratory, and the document says so in a warning.

Computed from ClickHouse on demand, over the same analysis window as the stored results (their
``analysis.until``), and cached per experiment, dimension and refresh (``computed_at``): the next
refresh makes a new key, so a breakdown is never older than the results it sits in.

A breakdown reads every event of the experiment (about 1.85 full refreshes for an attribute), in the
web process's ClickHouse (embedded chDB shares its cores with the SDK endpoints). So it is computed
once per key, whoever asks: the first request takes the key's lock (``cache.add``, shared by every
process through the cache) and computes; the others wait up to ``RESULTS_BREAKDOWN_WAIT_SECONDS``
for its result, then answer 503 ``breakdown_busy`` with ``Retry-After``. And at most
``RESULTS_BREAKDOWN_MAX_CONCURRENT`` breakdowns compute at once (slots claimed the same way; per
process with the local-memory cache), so a burst of different dimensions cannot take every core.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from rest_framework import status

from analytics.clickhouse import ClickHouseError
from analytics.results.document import DimensionBreakdown, DimensionLevel, Notice, ResultsDocument
from analytics.results.selectors import experiment_results_get
from analytics.results.services import (
    experiment_analysis_time,
    experiment_results_document,
    experiment_rollup_spec,
)
from analytics.rollup.dimensions import (
    ATTRIBUTE_NAMES_LIMIT,
    attribute_exists,
    attribute_names,
    rollup_breakdown,
)
from analytics.rollup.refresh import Rollup
from analytics.rollup.spec import ENTRY_DAY, MAX_LEVELS, OTHER_LEVEL
from config.exceptions import DomainError
from experiments.models import Experiment

BREAKDOWN_CACHE_TIMEOUT = 24 * 60 * 60  # keys change with every refresh; this only bounds memory
# A client told to come back (503 breakdown_busy) is told to in this many seconds: a breakdown takes
# from well under a second to ~15 s (10M events); asking sooner costs one cache read.
BREAKDOWN_RETRY_AFTER_SECONDS = 5
# How often a request waiting for another's computation looks for its result (one cache read).
BREAKDOWN_POLL_SECONDS = 0.2

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


class BreakdownBusy(BreakdownUnavailable):
    """The breakdown is being computed by another request, or the most breakdowns that may compute
    at once are computing: not computed again (it costs a full read of the experiment's events), the
    client asks again after ``retry_after`` seconds."""

    code = "breakdown_busy"

    def __init__(self, message: str, *, retry_after: int = BREAKDOWN_RETRY_AFTER_SECONDS) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


def breakdown_max_concurrent() -> int:
    """Breakdowns that may compute at once (``RESULTS_BREAKDOWN_MAX_CONCURRENT``, at least 1)."""
    return max(1, int(getattr(settings, "RESULTS_BREAKDOWN_MAX_CONCURRENT", 2)))


def breakdown_wait_seconds() -> float:
    """How long a request waits for a breakdown another request computes
    (``RESULTS_BREAKDOWN_WAIT_SECONDS``)."""
    return max(0.0, float(getattr(settings, "RESULTS_BREAKDOWN_WAIT_SECONDS", 5)))


def _computation_timeout() -> int:
    """How long a computation's lock and slot last. A live computation releases both as soon as it
    ends (or fails); this only frees them after a process died mid-computation. A breakdown runs four
    statements and one per quantile metric, each stopped by ClickHouse after CLICKHOUSE_QUERY_TIMEOUT."""
    return int(10 * float(getattr(settings, "CLICKHOUSE_QUERY_TIMEOUT", 60)))


def _claim(key: str, timeout: int) -> str | None:
    """A token if ``key`` was free and is now ours (``cache.add``: atomic, also on Redis), else None."""
    token = uuid.uuid4().hex
    return token if cache.add(key, token, timeout=timeout) else None


def _release(key: str, token: str) -> None:
    """Free ``key`` if it is still ours (after its timeout another request may have claimed it)."""
    if cache.get(key) == token:
        cache.delete(key)


def _slot_claim(timeout: int) -> tuple[str, str] | None:
    """One of the ``breakdown_max_concurrent()`` computation slots, or None when all are taken."""
    for index in range(breakdown_max_concurrent()):
        slot = f"analytics:results-breakdown-slot:{index}"
        token = _claim(slot, timeout)
        if token is not None:
            return slot, token
    return None


def _pause(seconds: float) -> None:
    """Wait before looking for another request's result again (a seam for the tests)."""
    time.sleep(seconds)


def _computed_once(key: str, compute: Callable[[], dict[str, Any]], what: str) -> dict[str, Any]:
    """The value cached at ``key``, computed by ``compute`` (then cached) only by the request that
    holds the key's lock and one of the computation slots (module docstring).

    Raises :class:`BreakdownBusy` when neither the value nor the right to compute it came within
    ``breakdown_wait_seconds()``; lets ``compute``'s errors through (the lock and slot released).
    """
    deadline = time.monotonic() + breakdown_wait_seconds()
    timeout = _computation_timeout()
    lock = f"{key}:computing"
    while True:
        cached = cache.get(key)
        if cached is not None:
            return cached
        computing = "another request is computing it"
        token = _claim(lock, timeout)
        if token is not None:
            try:
                cached = cache.get(key)  # computed between the read above and the claim
                if cached is not None:
                    return cached
                slot = _slot_claim(timeout)
                if slot is not None:
                    try:
                        value = compute()
                        cache.set(key, value, BREAKDOWN_CACHE_TIMEOUT)
                        return value
                    finally:
                        _release(*slot)
                computing = (
                    f"as many other breakdowns as may be computed at once ({breakdown_max_concurrent()}) "
                    "are being computed"
                )
            finally:
                _release(lock, token)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BreakdownBusy(
                f"The breakdown by {what} is not ready: {computing} (each reads every event of the "
                f"experiment, so they are not run side by side). Ask again in "
                f"{BREAKDOWN_RETRY_AFTER_SECONDS} s."
            )
        _pause(min(BREAKDOWN_POLL_SECONDS, remaining))


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


def _unlisted_attribute(
    experiment: Experiment, document: ResultsDocument, name: str, available: list[str]
) -> bool:
    """Whether ``name``, not among the listed dimensions, is still an attribute of the experiment's
    analysed exposures: the listing stops at ``ATTRIBUTE_NAMES_LIMIT`` names. One ``LIMIT 1`` query,
    only when the listing may have been cut (``available`` is ``entry_day`` and the names but an
    attribute named ``entry_day``, so a cut listing has at least ``ATTRIBUTE_NAMES_LIMIT`` entries),
    its answer cached like the listing."""
    if not name or name == ENTRY_DAY or len(available) < ATTRIBUTE_NAMES_LIMIT:  # not cut (see above)
        return False
    key = _cache_key("dimension-exists", experiment, document, name)
    cached = cache.get(key)
    if cached is not None:
        return bool(cached)
    spec = experiment_rollup_spec(experiment=experiment, until=_analysis_time(experiment, document))
    try:
        exists = attribute_exists(spec, name)
    except ClickHouseError as exc:
        raise BreakdownUnavailable(f"Whether {name!r} is a dimension could not be read: {exc}") from exc
    cache.set(key, exists, BREAKDOWN_CACHE_TIMEOUT)
    return exists


def _level(level: str, rollup: Rollup, experiment: Experiment, computed_at: dt.datetime) -> DimensionLevel:
    """One level's block: the results document of its roll-up alone (SRM, metrics)."""
    document = experiment_results_document(experiment, rollup, computed_at=computed_at)
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
    if dimension not in available and not _unlisted_attribute(experiment, document, dimension, available):
        shown = ", ".join(available)
        if len(available) > ATTRIBUTE_NAMES_LIMIT:  # entry_day and the listing's limit of names
            shown += f": the first {ATTRIBUTE_NAMES_LIMIT} attribute names by name"
        reason = "is empty" if not dimension else f"{dimension!r} is not one of them"
        raise UnknownDimension(
            f"dimension: results break down by the entry day or an attribute of the experiment's "
            f"exposures ({shown}); {reason}.",
            field="dimension",
        )
    if not document.computed:
        return dataclasses.replace(document, dimension=DimensionBreakdown(dimension, (), tuple(available)))

    def compute() -> dict[str, Any]:
        spec = experiment_rollup_spec(experiment=experiment, until=_analysis_time(experiment, document))
        try:
            breakdown = rollup_breakdown(spec, dimension)
        except ClickHouseError as exc:
            raise BreakdownUnavailable(f"The breakdown by {dimension} could not be computed: {exc}") from exc
        computed_at = document.computed_at or timezone.now()
        levels = tuple(_level(name, rollup, experiment, computed_at) for name, rollup in breakdown.levels)
        return DimensionBreakdown(dimension, levels, tuple(available)).to_dict()

    cached = _computed_once(_cache_key("dimension", experiment, document, dimension), compute, dimension)
    return dataclasses.replace(
        document,
        dimension=DimensionBreakdown.from_dict(cached),
        warnings=(*document.warnings, EXPLORATORY_WARNING),
    )


__all__ = [
    "MAX_LEVELS",
    "OTHER_LEVEL",
    "BreakdownBusy",
    "BreakdownUnavailable",
    "UnknownDimension",
    "experiment_dimensions",
    "experiment_results_breakdown",
]
