"""Celery entry points of the analytics app."""

from dataclasses import asdict

from celery import shared_task
from django.db import OperationalError as DatabaseUnavailable

from analytics import ingestion


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
