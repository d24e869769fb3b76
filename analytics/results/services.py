"""Writes of experiment results: computing and storing them.

``experiment_results_refresh`` is the one way results are made, whoever asks (the API's refresh, the
5-minute schedule, ``manage.py rollup``): roll the experiment's exposures and events up in ClickHouse
(``analytics.rollup``), run the statistics engine over the sums (``analytics.results.analysis``), store the document in the
experiment's ``ExperimentResult`` (one row, replaced in place) and drop the cached copy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from typing import Any

from celery.exceptions import Retry
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from analytics.clickhouse import ClickHouseError
from analytics.models import ExperimentResult, ResultStatus, SpoolBatch
from analytics.results.analysis import MetricAnalysis, results_document
from analytics.results.document import Analysis, ResultsDocument
from analytics.results.notify import results_events_emit
from analytics.results.selectors import results_cache_key
from analytics.rollup import Measure, MetricSpec, RollupSpec
from analytics.rollup.incremental import RollupState, rollup_refresh
from analytics.rollup.refresh import Rollup, rollup_run
from analytics.safe_rollouts import safe_rollout_check
from analytics.stats import AnalysisOptions, GaussianPrior
from experiments.models import Experiment, ExperimentMetric, ExperimentStatus, MetricRole
from metrics.models import Metric, MetricType

logger = logging.getLogger(__name__)

# Roles whose metrics also get a daily time series (each costs a little more roll-up work).
TIMESERIES_ROLES = frozenset({MetricRole.PRIMARY})


# --- from the models to the roll-up and the engine -------------------------------------------------------
def _measure(metric: Metric) -> Measure:
    """The metric's per-unit value (docs/analysis.md); for a ratio, the numerator: the sum of its event's value."""
    # A ratio's numerator and a quantile's observations are sums of the event's value.
    kind = "sum" if metric.type in (MetricType.RATIO, MetricType.QUANTILE) else metric.type
    percentile = metric.cap_percentile if metric.type in (MetricType.COUNT, MetricType.SUM) else None
    return Measure(
        event=metric.event,
        kind=kind,
        window_hours=metric.window_hours,
        cap=metric.cap_value if percentile is None else None,
        cap_percentile=percentile,
        cap_ignore_zeros=metric.cap_ignore_zeros and percentile is not None,
    )


def _metric_spec(link: ExperimentMetric) -> MetricSpec:
    metric = link.metric
    denominator = None
    if metric.type == MetricType.RATIO:
        if metric.denominator is None:
            raise ValueError(f"Ratio metric {metric.key} has no denominator.")
        denominator = _measure(metric.denominator)
    return MetricSpec(
        key=metric.key,
        type=metric.type,
        measure=_measure(metric),
        denominator=denominator,
        cuped=metric.cuped,
        cuped_lookback_days=metric.cuped_lookback_days,
        # A quantile is not a sum over units: no daily increments to add up (docs/analysis.md).
        timeseries=link.role in TIMESERIES_ROLES and metric.type != MetricType.QUANTILE,
        quantile=metric.quantile if metric.type == MetricType.QUANTILE else None,
        quantile_scope=(metric.quantile_scope or None) if metric.type == MetricType.QUANTILE else None,
    )


def experiment_analysis_time(experiment: Experiment, now: dt.datetime) -> dt.datetime:
    """Events count up to now, or up to ``stopped_at`` once the experiment has stopped (docs/analysis.md)."""
    if experiment.status in (ExperimentStatus.STOPPED, ExperimentStatus.ARCHIVED) and experiment.stopped_at:
        return min(experiment.stopped_at, now)
    return now


def _links(experiment: Experiment) -> list[ExperimentMetric]:
    return list(experiment.metric_links.select_related("metric", "metric__denominator").order_by("id"))


def experiment_rollup_spec(*, experiment: Experiment, until: dt.datetime) -> RollupSpec:
    """What to roll up for ``experiment``: its variants (control first), metrics and analysed environments."""
    return RollupSpec(
        experiment=experiment.key,
        variants=tuple(v.key for v in experiment.variants.all()),
        until=until,
        metrics=tuple(_metric_spec(link) for link in _links(experiment)),
        environments=tuple(experiment.analysis_environments),
    )


def experiment_results_document(
    experiment: Experiment, rollup: Rollup, *, computed_at: dt.datetime
) -> ResultsDocument:
    """The engine's analysis of a roll-up of ``experiment`` (its metrics, weights, SRM threshold and
    correction): the whole experiment's, or one dimension level's (``analytics.results.breakdown``)."""
    return results_document(
        experiment=experiment.key,
        rollup=rollup,
        metrics=experiment_analysis_plan(experiment),
        weights=[v.weight for v in experiment.variants.all()],
        srm_threshold=experiment.srm_threshold,
        correction=experiment.correction,
        computed_at=computed_at,
    )


def experiment_analysis_plan(experiment: Experiment) -> list[MetricAnalysis]:
    """How each metric is analysed: the experiment's engine settings with the metric's own."""
    prior = None
    if experiment.prior_mean is not None and experiment.prior_stddev:
        prior = GaussianPrior(mean=experiment.prior_mean, variance=experiment.prior_stddev**2)
    return [
        MetricAnalysis(
            key=link.metric.key,
            name=link.metric.name,
            role=link.role,
            type=link.metric.type,
            options=AnalysisOptions(
                engine=experiment.engine,
                alpha=experiment.alpha,
                sequential=experiment.sequential,
                sequential_tuning=float(experiment.sequential_tuning),
                prior=prior,
                higher_is_better=link.metric.higher_is_better,
                cuped=link.metric.cuped,
                binomial=link.metric.type == MetricType.BINOMIAL,
            ),
        )
        for link in _links(experiment)
    ]


# With ROLLUP_INCREMENTAL=auto, after a refresh that was to build an experiment's state failed (the
# build costs 3-5 cold refreshes, so it may pass the task's time limit where they did not), the
# experiment stays on the cold refresh this long before the next attempt.
AUTO_SWITCH_RETRY = dt.timedelta(days=1)


def rollup_incremental_enabled(
    last_refresh: dict[str, Any], *, previous: RollupState | None, now: dt.datetime
) -> bool:
    """Whether this refresh keeps per-unit state and runs incrementally when it can (on a cluster too,
    the state per shard); otherwise it is the cold roll-up, which keeps none.

    ``ROLLUP_INCREMENTAL``: ``on`` for every experiment, ``off`` for none; ``auto`` for an experiment
    that keeps state already (``previous``), or whose last refresh, ``last_refresh`` (the stored
    ``ExperimentResult.rollup_state``), was a cold roll-up that took ``ROLLUP_INCREMENTAL_AUTO_MS`` or
    more, unless building its state failed less than ``AUTO_SWITCH_RETRY`` before ``now``: the
    incremental refresh is slower than the cold one on small experiments (docs/analysis.md,
    "Incremental refresh")."""
    mode = settings.ROLLUP_INCREMENTAL
    if mode != "auto":
        return mode == "on"
    if previous is not None:
        return True
    try:
        failed_at = dt.datetime.fromisoformat(last_refresh.get("auto_switch_failed_at") or "")
    except (TypeError, ValueError):  # none recorded (or unreadable)
        failed_at = None
    if failed_at is not None and now - failed_at < AUTO_SWITCH_RETRY:
        return False
    cold_ms = last_refresh.get("cold_rollup_ms")
    return isinstance(cold_ms, int | float) and cold_ms >= settings.ROLLUP_INCREMENTAL_AUTO_MS


def arrivals_watermark(read_at: dt.datetime) -> dt.datetime:
    """Rows received after this time are the next refresh's arrivals (docs/analysis.md, "Incremental
    refresh", the watermark rule): ``read_at``, or the oldest batch still waiting in the spool (its
    rows keep the time they were accepted and become visible only when the drain inserts them),
    minus ``ROLLUP_ARRIVAL_MARGIN_SECONDS`` for inserts in flight and clock skew. Read before any
    ClickHouse statement of the refresh."""
    oldest = SpoolBatch.objects.order_by("created_at").values_list("created_at", flat=True).first()
    start = read_at if oldest is None else min(read_at, oldest)
    return start - dt.timedelta(seconds=settings.ROLLUP_ARRIVAL_MARGIN_SECONDS)


def experiment_results_compute(
    *,
    experiment: Experiment,
    now: dt.datetime | None = None,
    incremental: bool = False,
    previous: RollupState | None = None,
    full: bool = False,
) -> tuple[ResultsDocument, Rollup]:
    """The results document of ``experiment`` as of ``now``, and the roll-up it came from.

    ``incremental``: the roll-up keeps per-unit state, and is incremental from ``previous`` (the state
    the last refresh left) when it can be, full otherwise or when ``full`` (docs/analysis.md,
    "Incremental refresh"); else it is the cold roll-up.
    """
    now = now or timezone.now()
    watermark = arrivals_watermark(now)
    spec = experiment_rollup_spec(experiment=experiment, until=experiment_analysis_time(experiment, now))
    if incremental:
        rollup = rollup_refresh(spec, previous=previous, read_at=now, watermark=watermark, full=full)
    else:  # the cold refresh: every event read, no state kept
        rollup = rollup_run(spec)
        rollup.kind = "full"
    started = time.perf_counter()
    document = experiment_results_document(experiment, rollup, computed_at=now)
    analysis = dataclasses.replace(
        document.analysis or Analysis(),
        alpha=experiment.alpha,
        sequential=experiment.sequential,
        sequential_tuning=experiment.sequential_tuning,
        environments=tuple(spec.environments or ()),
    )
    document = dataclasses.replace(
        document,
        analysis=analysis,
        experiment_status=experiment.status,
        engine=experiment.engine,
        timings_ms={"rollup": rollup.duration_ms, "statistics": (time.perf_counter() - started) * 1000},
    )
    return document, rollup


# --- refresh -----------------------------------------------------------------------------------------
def experiment_results_refresh(
    *, experiment_id: int, refreshed_by: str = "", full: bool = False
) -> ExperimentResult:
    """Recompute and store the results of the experiment ``experiment_id``; the stored snapshot.

    Where the experiment refreshes incrementally (``rollup_incremental_enabled``): from the state the
    last refresh left (``ExperimentResult.rollup_state``) unless ``full`` or that state cannot be used
    (docs/analysis.md, "Incremental refresh"); elsewhere the cold roll-up.

    On failure the snapshot keeps its last good payload, records the error and its time (and, for a
    refresh that was to build the state under ``ROLLUP_INCREMENTAL=auto``, that the switch failed),
    and the exception propagates (``ClickHouseUnavailable`` is transient: the Celery task retries it).
    Raises ``Experiment.DoesNotExist`` when there is no such experiment.
    """
    experiment = Experiment.objects.prefetch_related("variants").get(pk=experiment_id)
    snapshot, _ = ExperimentResult.objects.get_or_create(experiment=experiment)
    started = time.perf_counter()
    last = snapshot.rollup_state if isinstance(snapshot.rollup_state, dict) else {}
    previous_state = RollupState.from_dict(last)
    incremental = rollup_incremental_enabled(last, previous=previous_state, now=timezone.now())
    try:
        document, rollup = experiment_results_compute(
            experiment=experiment, incremental=incremental, previous=previous_state, full=full
        )
    except Exception as exc:  # any failure is recorded on the snapshot, then re-raised
        snapshot.status = ResultStatus.FAILED
        snapshot.last_error = " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]
        snapshot.last_error_at = timezone.now()
        snapshot.refreshed_by = refreshed_by[:150]
        fields = ["status", "last_error", "last_error_at", "refreshed_by", "updated_at"]
        if incremental and previous_state is None and settings.ROLLUP_INCREMENTAL == "auto":
            # auto's switch to state failed: cold refreshes until AUTO_SWITCH_RETRY has passed
            snapshot.rollup_state = {**last, "auto_switch_failed_at": snapshot.last_error_at.isoformat()}
            fields.append("rollup_state")
        snapshot.save(update_fields=fields)
        cache.delete(results_cache_key(experiment.pk))
        logger.warning("Results of %s could not be refreshed: %s", experiment.key, snapshot.last_error)
        raise
    previous = ResultsDocument.from_dict(snapshot.payload or {})
    snapshot.payload = document.to_dict()
    if rollup.state is not None:
        snapshot.rollup_state = {
            **rollup.state.to_dict(),
            "recomputed_metrics": list(rollup.recomputed_metrics),
        }
    else:  # a cold refresh: what the refresh block reports, its time (ROLLUP_INCREMENTAL=auto), no state
        snapshot.rollup_state = {
            "kind": rollup.kind,
            "watermark": None,
            "recomputed_metrics": [],
            "cold_rollup_ms": round(rollup.duration_ms),
        }
        if "auto_switch_failed_at" in last:  # kept until auto tries the switch again
            snapshot.rollup_state["auto_switch_failed_at"] = last["auto_switch_failed_at"]
    snapshot.computed_at = document.computed_at
    snapshot.status = ResultStatus.OK
    snapshot.duration_ms = round((time.perf_counter() - started) * 1000)
    snapshot.refreshed_by = refreshed_by[:150]
    snapshot.save()
    cache.delete(results_cache_key(experiment.pk))
    results_events_emit(experiment=experiment, previous=previous, current=document)
    logger.info("Results of %s refreshed (%s) in %d ms", experiment.key, rollup.kind, snapshot.duration_ms)
    # A safe rollout's experiment: roll the rollout back or finish it (analytics.safe_rollouts).
    safe_rollout_check(
        experiment_id=experiment.pk, payload=snapshot.payload, now=document.computed_at or timezone.now()
    )
    return snapshot


def experiment_results_enqueue(experiment_id: int, *, refreshed_by: str) -> None:
    """Queue a refresh now (the schedule's fan-out; the API goes through the commit hook below)."""
    from analytics.tasks import experiment_results_refresh_task  # the task calls this module

    try:
        experiment_results_refresh_task.delay(experiment_id, refreshed_by=refreshed_by)
    except (ClickHouseError, ValueError, Retry) as exc:
        # Only when tasks run eagerly (the embedded default): the refresh ran here and failed (an eager
        # task's retry surfaces as ``Retry``). The snapshot records the error, which GET .../results/
        # shows; the request that asked for the refresh succeeded all the same.
        logger.warning("Eager results refresh of experiment %s failed: %s", experiment_id, exc)


def experiment_results_request_refresh(*, experiment: Experiment, user: Any = None) -> None:
    """Queue a refresh of ``experiment``'s results once the current transaction commits.

    This is ``delay_on_commit`` (``transaction.on_commit`` + ``delay``), with the eager failure case
    above handled. Where tasks run eagerly the refresh is done when this returns.
    """
    refreshed_by = f"user:{user.get_username()}" if user is not None and user.is_authenticated else "api"
    transaction.on_commit(lambda: experiment_results_enqueue(experiment.pk, refreshed_by=refreshed_by))


def refresh_interval_seconds() -> int:
    """Least time between two refreshes of one experiment requested through the API."""
    return int(getattr(settings, "RESULTS_REFRESH_MIN_INTERVAL_SECONDS", 30))
