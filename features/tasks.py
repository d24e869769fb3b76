"""Celery entry points of the features app."""

from celery import shared_task
from django.db import OperationalError as DatabaseUnavailable
from django.utils import timezone

from features.governance.services import scheduled_changes_apply


@shared_task(
    name="features.tasks.scheduled_changes_run",
    # Idempotent: a scheduled change that ran is no longer pending, and each locks its row, so a
    # redelivery or two overlapping runs cannot apply one twice.
    acks_late=True,
    autoretry_for=(DatabaseUnavailable,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=3,
    soft_time_limit=50,
    time_limit=60,
)
def scheduled_changes_run() -> dict[str, list[int]]:
    """Run the scheduled flag changes whose time has come (scheduled every minute)."""
    fired = scheduled_changes_apply(now=timezone.now())
    return {
        "done": [change.pk for change in fired if change.status == "done"],
        "failed": [change.pk for change in fired if change.status == "failed"],
    }
