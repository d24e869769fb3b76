"""Writes of webhooks: subscriptions, events and delivery attempts (shared by the admin and the API).

An event is recorded as one ``WebhookDelivery`` per subscribed webhook, in the transaction of the
change that caused it, and handed to a worker when that transaction commits (``dispatch``): a
rolled-back change tells nobody, and a slow or failing receiver never slows a save. Each attempt is
recorded on the delivery; network errors, timeouts, 429 and 5xx answers are retried with exponential
backoff up to ``WEBHOOK_MAX_ATTEMPTS`` attempts; other answers are final. Delivery is at least once:
a receiver may see an event twice (the same ``id``) and should ignore the second.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from features.webhooks import signing, transport
from features.webhooks.addresses import ReceiverRefused, receiver_addresses, url_parts
from features.webhooks.models import (
    TEST_EVENT_TYPE,
    DeliveryStatus,
    EventType,
    Webhook,
    WebhookDelivery,
    generate_webhook_secret,
)

logger = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 10  # the wait before the second attempt; each later wait doubles
RETRY_MAX_SECONDS = 3600
EDITABLE_FIELDS = frozenset({"name", "url", "event_types", "enabled", "description"})


# --- validation ------------------------------------------------------------------------------------
def webhook_url_validate(url: str) -> None:
    """An http(s) URL; with ``WEBHOOK_ALLOW_PRIVATE`` off, one whose host resolves to public addresses."""
    try:
        if settings.WEBHOOK_ALLOW_PRIVATE:
            url_parts(url)
        else:
            receiver_addresses(url, allow_private=False)
    except ReceiverRefused as exc:
        raise ValidationError({"url": f"This receiver cannot be used: {exc}."}) from None


def event_types_validate(event_types: Any) -> None:
    if not isinstance(event_types, list) or not all(isinstance(item, str) for item in event_types):
        raise ValidationError({"event_types": 'Give a list of event types, e.g. ["flag.changed"].'})
    unknown = [item for item in event_types if item not in EventType.values]
    if unknown:
        raise ValidationError(
            {
                "event_types": f"Unknown event type {', '.join(unknown)}; "
                f"choose from {', '.join(EventType.values)}."
            }
        )
    if not event_types:
        raise ValidationError({"event_types": "Choose at least one event to send."})


def _clean(webhook: Webhook) -> None:
    webhook.full_clean(exclude=["secret"])
    event_types_validate(webhook.event_types)
    webhook_url_validate(webhook.url)


def _save(webhook: Webhook, user: AbstractBaseUser | None) -> None:
    if user is not None and user.is_authenticated:
        webhook._history_user = user
    webhook.save()


# --- subscriptions ---------------------------------------------------------------------------------
@transaction.atomic
def webhook_create(*, user: AbstractBaseUser | None, **fields: Any) -> Webhook:
    """A new subscription with a generated secret (``webhook.secret``, to show its creator once)."""
    webhook = Webhook(**{name: value for name, value in fields.items() if name in EDITABLE_FIELDS})
    if user is not None and user.is_authenticated:
        webhook.created_by = user
    _clean(webhook)
    _save(webhook, user)
    return webhook


@transaction.atomic
def webhook_update(*, webhook: Webhook, user: AbstractBaseUser | None, **fields: Any) -> Webhook:
    webhook = Webhook.objects.select_for_update().get(pk=webhook.pk)
    for name, value in fields.items():
        if name in EDITABLE_FIELDS:
            setattr(webhook, name, value)
    _clean(webhook)
    _save(webhook, user)
    return webhook


@transaction.atomic
def webhook_secret_rotate(*, webhook: Webhook, user: AbstractBaseUser | None) -> str:
    """Replace the secret (deliveries from now on are signed with the new one); the new secret."""
    webhook = Webhook.objects.select_for_update().get(pk=webhook.pk)
    webhook.secret = generate_webhook_secret()
    _save(webhook, user)
    return webhook.secret


# --- events ----------------------------------------------------------------------------------------
def event_body(*, event_id: uuid.UUID, event_type: str, created: dt.datetime, data: Mapping[str, Any]) -> str:
    """The JSON body every receiver gets: ``{"id", "type", "created", "data"}``."""
    return json.dumps(
        {"id": str(event_id), "type": event_type, "created": created.isoformat(), "data": data},
        cls=DjangoJSONEncoder,
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _deliveries_record(webhooks: Sequence[Webhook], event_type: str, data: Mapping[str, Any]) -> list[int]:
    event_id, created = uuid.uuid4(), timezone.now()
    body = event_body(event_id=event_id, event_type=event_type, created=created, data=data)
    ids = []
    for webhook in webhooks:
        delivery = WebhookDelivery.objects.create(
            webhook=webhook, event_id=event_id, event_type=event_type, body=body, next_attempt_at=created
        )
        ids.append(delivery.pk)
    if ids:
        from features.webhooks import dispatch

        transaction.on_commit(lambda: dispatch.deliveries_send(ids))
    return ids


def event_emit(event_type: str, data: Mapping[str, Any] | Callable[[], Mapping[str, Any]]) -> list[int]:
    """Tell every enabled webhook subscribed to ``event_type``, once the current transaction commits;
    the ids of the deliveries recorded (none when nobody listens). ``data`` may be a function that
    builds it: it is called only when someone listens, so an unheard event costs one query."""
    if event_type not in EventType.values:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    webhooks = [webhook for webhook in Webhook.objects.filter(enabled=True) if webhook.listens_to(event_type)]
    if not webhooks:
        return []
    return _deliveries_record(webhooks, event_type, data() if callable(data) else data)


@transaction.atomic
def webhook_send_test(*, webhook: Webhook, user: AbstractBaseUser | None = None) -> WebhookDelivery:
    """Send a ``webhook.test`` event to this webhook alone (even when it is switched off)."""
    data = {
        "webhook": {"id": webhook.pk, "name": webhook.name},
        "message": "A test event: the signature and the body are those of every event.",
        "sent_by": user.get_username() if user is not None and user.is_authenticated else None,
    }
    [delivery_id] = _deliveries_record([webhook], TEST_EVENT_TYPE, data)
    return WebhookDelivery.objects.get(pk=delivery_id)


# --- delivery --------------------------------------------------------------------------------------
def retry_delay_seconds(attempts: int) -> float:
    """The wait after the ``attempts``-th failed attempt: 10 s, 20 s, 40 s, ..., at most an hour."""
    return float(min(RETRY_BASE_SECONDS * 2 ** (attempts - 1), RETRY_MAX_SECONDS))


def _retryable(result: transport.PostResult) -> bool:
    return result.status is None or result.status == 429 or result.status >= 500


def delivery_attempt(*, delivery_id: int) -> float | None:
    """Make one attempt at a pending delivery and record it; the seconds to wait before the next
    attempt, or None when the delivery is settled (delivered, failed for good, gone or not pending).

    No transaction is held during the HTTP call: a receiver that takes its time must not hold a lock.
    """
    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return None
    webhook = delivery.webhook
    body = delivery.body.encode()
    timestamp = int(time.time())
    headers = {
        signing.SIGNATURE_HEADER: signing.signature_header(webhook.secret, timestamp, body),
        "X-Webhook-Id": str(delivery.event_id),
        "X-Webhook-Event": delivery.event_type,
    }
    attempts = delivery.attempts + 1
    try:
        result = transport.post(
            webhook.url,
            body,
            headers,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            allow_private=settings.WEBHOOK_ALLOW_PRIVATE,
        )
    except ReceiverRefused as exc:
        result, retry = (
            transport.PostResult(status=None, body="", duration_ms=0, error=f"Refused: {exc}."),
            False,
        )
    else:
        retry = _retryable(result)
    now = timezone.now()
    if result.status is not None and 200 <= result.status < 300:
        status, next_at, wait = DeliveryStatus.DELIVERED, None, None
    elif retry and attempts < settings.WEBHOOK_MAX_ATTEMPTS:
        wait = retry_delay_seconds(attempts)
        status, next_at = DeliveryStatus.PENDING, now + dt.timedelta(seconds=wait)
    else:
        status, next_at, wait = DeliveryStatus.FAILED, None, None
    error = result.error
    if not error and status != DeliveryStatus.DELIVERED:
        error = f"The receiver answered {result.status}."
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=status,
        attempts=attempts,
        response_code=result.status,
        response_body=result.body,
        error=error,
        duration_ms=result.duration_ms,
        last_attempt_at=now,
        next_attempt_at=next_at,
    )
    log = logger.info if status == DeliveryStatus.DELIVERED else logger.warning
    log(
        "Webhook delivery %s (%s to %s), attempt %d: %s %s",
        delivery.pk,
        delivery.event_type,
        webhook.name,
        attempts,
        status,
        result.status or result.error,
    )
    return wait


@transaction.atomic
def delivery_retry(*, delivery: WebhookDelivery) -> None:
    """Send a settled delivery again, from a fresh count of attempts (the admin's "send again")."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=timezone.now()
    )
    from features.webhooks import dispatch

    transaction.on_commit(lambda: dispatch.deliveries_send([delivery.pk]))


STALLED_AFTER = dt.timedelta(minutes=5)


def deliveries_resend_stalled(*, now: dt.datetime) -> int:
    """Send again the pending deliveries whose next attempt is more than five minutes overdue: left
    behind by a process that stopped (the embedded mode's threads die with their process) or a
    message a broker lost. Run every five minutes; the number sent. A delivery still in flight that
    is this late may be sent twice (deliveries are at least once)."""
    stalled = list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=now - STALLED_AFTER
        ).values_list("pk", flat=True)[:1000]
    )
    if not stalled:
        return 0
    # Claimed for the next five minutes, so the next run does not send them again meanwhile.
    WebhookDelivery.objects.filter(pk__in=stalled).update(next_attempt_at=now)
    from features.webhooks import dispatch

    transaction.on_commit(lambda: dispatch.deliveries_send(stalled))
    return len(stalled)
