"""Celery entry points of the features app."""

from celery import shared_task
from django.db import OperationalError as DatabaseUnavailable
from django.utils import timezone

from features.governance.services import scheduled_changes_apply
from features.webhooks.services import deliveries_resend_stalled, delivery_attempt


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


@shared_task(
    name="features.tasks.webhook_deliver",
    bind=True,
    # Retries are counted on the delivery (WEBHOOK_MAX_ATTEMPTS), not by Celery.
    max_retries=None,
    # Run twice after a worker crash, a receiver gets the event twice with the same id: deliveries
    # are at least once, and the documentation asks receivers to ignore a repeated id.
    acks_late=True,
    soft_time_limit=90,
    time_limit=120,
)
def webhook_deliver(self, delivery_id: int) -> None:
    """One attempt at a webhook delivery; when it should be tried again, a retry after the backoff."""
    wait = delivery_attempt(delivery_id=delivery_id)
    if wait is not None:
        raise self.retry(countdown=wait)


@shared_task(
    name="features.tasks.webhooks_resend_stalled",
    # Safe to run twice: a second run finds the deliveries claimed by the first.
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
)
def webhooks_resend_stalled() -> int:
    """Send again the webhook deliveries left pending past their time (scheduled every 5 minutes)."""
    return deliveries_resend_stalled(now=timezone.now())
