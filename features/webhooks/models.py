"""Webhook subscriptions and the log of their deliveries."""

import secrets
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from simple_history.models import HistoricalRecords

SECRET_PREFIX = "whsec_"


def generate_webhook_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def validate_receiver_url(value: str) -> None:
    """An http(s) URL with a host. Django's URL validator is not used: it refuses host names without a
    dot, and internal receivers are often just that (``http://chat-bridge:8080/hook``)."""
    from features.webhooks.addresses import ReceiverRefused, url_parts

    try:
        url_parts(value)
    except ReceiverRefused as exc:
        raise ValidationError(f"Not a receiver URL: {exc}.") from None


def default_event_types() -> list[str]:
    return []


class EventType(models.TextChoices):
    """What a subscription can hear of. Values are the ``type`` field of the body."""

    FLAG_CHANGED = "flag.changed", "A feature flag was created, changed or deleted"
    EXPERIMENT_STARTED = "experiment.started", "An experiment started"
    EXPERIMENT_STOPPED = "experiment.stopped", "An experiment stopped"
    CHANGE_REQUEST_OPENED = "change_request.opened", "A change request was opened"
    CHANGE_REQUEST_APPROVED = "change_request.approved", "A change request was approved"
    RESULTS_SIGNIFICANT = "results.significant", "A primary metric's result became significant"
    GUARDRAIL_VIOLATED = "results.guardrail_violated", "A guardrail metric got significantly worse"
    SAMPLE_RATIO_MISMATCH = "results.sample_ratio_mismatch", "An experiment's split failed the SRM check"
    SAFE_ROLLOUT_ROLLED_BACK = "safe_rollout.rolled_back", "A safe rollout was rolled back"


# Sent only by "send test" to the one subscription tested; nobody subscribes to it.
TEST_EVENT_TYPE = "webhook.test"


class Webhook(models.Model):
    """A receiver that is told, by a signed POST, when chosen events happen."""

    name = models.CharField(max_length=100, help_text="Who receives it, e.g. “Slack bridge”.")
    url = models.CharField(
        "receiver URL",
        max_length=2000,
        validators=[validate_receiver_url],
        help_text="Where the events are POSTed, e.g. https://hooks.example.com/experiments.",
    )
    event_types = models.JSONField(
        default=default_event_types,
        blank=True,
        help_text="The events sent to this receiver.",
    )
    enabled = models.BooleanField(default=True, help_text="Off: nothing is sent.")
    description = models.TextField(blank=True)
    # Kept as is (not hashed): every delivery is signed with it. Shown once, when the webhook is made
    # or its secret replaced; never in the history or the API's reads.
    secret = models.CharField(max_length=100, editable=False, default=generate_webhook_secret)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    history = HistoricalRecords(excluded_fields=["secret"])

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def listens_to(self, event_type: str) -> bool:
        return self.enabled and event_type in (self.event_types or [])


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    """One event sent (or to be sent) to one webhook: the exact body signed, and how it went.

    Written in the same transaction as the change that caused the event (so a rolled-back change
    sends nothing) and handed to a worker only once that transaction has committed.
    """

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField(default=uuid.uuid4, db_index=True)
    event_type = models.CharField(max_length=50)
    body = models.TextField(help_text="The JSON body as sent (the signature covers these bytes).")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, help_text="The start of the receiver's last answer.")
    error = models.TextField(blank=True, help_text="Why the last attempt failed, when it did.")
    duration_ms = models.PositiveIntegerField(null=True, blank=True, help_text="The last attempt's time.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["webhook", "-created_at"], name="webhook_delivery_recent")]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.webhook} ({self.status})"
