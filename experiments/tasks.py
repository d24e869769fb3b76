"""Celery entry points of the experiments app."""

from celery import shared_task
from django.db import OperationalError as DatabaseUnavailable
from django.utils import timezone

from experiments.services import experiments_apply_schedules


@shared_task(
    name="experiments.tasks.experiments_run_schedules",
    # Idempotent: an experiment already started or stopped no longer matches its schedule, and each
    # transition locks its row, so a redelivery or two overlapping runs cannot apply one twice.
    acks_late=True,
    autoretry_for=(DatabaseUnavailable,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=3,
    soft_time_limit=50,
    time_limit=60,
)
def experiments_run_schedules() -> dict[str, list[str]]:
    """Start and stop the experiments whose scheduled time has come (scheduled every minute)."""
    started, stopped = experiments_apply_schedules(now=timezone.now())
    return {"started": started, "stopped": stopped}
