"""Celery entry points of the analytics app."""

import datetime as dt
import logging
from dataclasses import asdict

from celery import shared_task
from django.db import OperationalError as DatabaseUnavailable

from analytics.clickhouse import ClickHouseUnavailable
from analytics.ingestion import services as ingestion

logger = logging.getLogger(__name__)


@shared_task(
    name="analytics.tasks.spool_drain",
    # Safe to run twice, even at once: batches are row-locked (SKIP LOCKED) and a replayed batch is
    # deduplicated by event_id, so a redelivery after a worker crash costs nothing.
    acks_late=True,
    # Only the spool's own database can fail transiently here; ClickHouse being down is handled per
    # batch (backoff) by the service, and the beat schedule runs the task again every minute anyway.
    autoretry_for=(DatabaseUnavailable,),
    retry_backoff=True,
    retry_backoff_max=120,
    max_retries=3,
    soft_time_limit=50,
    time_limit=60,
)
def spool_drain() -> dict[str, int]:
    """Insert the spooled batches that are due into ClickHouse (scheduled every minute)."""
    return asdict(ingestion.spool_drain(time_budget_seconds=40.0))


# --- experiment results ----------------------------------------------------------------------------------
@shared_task(
    name="analytics.tasks.experiment_results_refresh",
    # Safe to run twice: a refresh recomputes touched units from the raw data (state rows versioned by
    # read time, the newest wins) and replaces the snapshot.
    acks_late=True,
    # Only ClickHouse being unreachable is worth retrying; a failing query would fail the same way.
    autoretry_for=(ClickHouseUnavailable,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=3,
    soft_time_limit=10 * 60,
    time_limit=11 * 60,
)
def experiment_results_refresh_task(experiment_id: int, refreshed_by: str = "") -> dict | None:
    """Recompute the results of one experiment (by id; nothing to do if it was deleted meanwhile)."""
    from analytics.results.services import (
        experiment_results_refresh,  # services enqueue this task: import late
    )
    from experiments.models import Experiment

    try:
        snapshot = experiment_results_refresh(experiment_id=experiment_id, refreshed_by=refreshed_by)
    except Experiment.DoesNotExist:
        return None
    return {"experiment_id": experiment_id, "duration_ms": snapshot.duration_ms}


@shared_task(
    name="analytics.tasks.running_experiments_rollup", acks_late=True, soft_time_limit=50, time_limit=60
)
def running_experiments_rollup() -> int:
    """Queue a results refresh for every running experiment (the 5-minute schedule); how many.

    One task per experiment, so a slow or failing experiment does not hold the others back and
    workers share the load. Safe to run twice: the refreshes are idempotent.
    """
    from analytics.results.selectors import running_experiment_ids
    from analytics.results.services import experiment_results_enqueue

    ids = running_experiment_ids()
    for experiment_id in ids:
        try:
            experiment_results_enqueue(experiment_id, refreshed_by="schedule")
        except Exception:
            # Where tasks run eagerly the refresh runs right here: one experiment's failure (logged,
            # and recorded on its snapshot where it got that far) must not skip the others.
            logger.exception(
                "Results refresh of experiment %s failed; going on with the others.", experiment_id
            )
    return len(ids)


# --- exposures from assignment and flag evaluation ------------------------------------------------------
@shared_task(
    name="analytics.tasks.exposures_record",
    # Safe to run twice: identical exposures collapse in ClickHouse (exposures_dedup).
    acks_late=True,
    # The write path spools when ClickHouse is down, so only the spool's database can fail here.
    autoretry_for=(DatabaseUnavailable,),
    retry_backoff=True,
    max_retries=5,
    soft_time_limit=50,
    time_limit=60,
)
def exposures_record(rows: list[dict]) -> int:
    """Store exposures logged by assignment and flag evaluation (a batch from the in-process buffer).

    Rows are `{experiment, variant, unit_id, timestamp (ISO 8601), environment, attributes}`; they
    come from our own evaluation, so only their timestamps need parsing.
    """
    exposures = [{**row, "timestamp": dt.datetime.fromisoformat(row["timestamp"])} for row in rows]
    return ingestion.exposures_write(rows=exposures).accepted
