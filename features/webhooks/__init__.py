"""Webhooks: subscriptions to the platform's events, delivered signed, after commit, with retries.

``models`` (subscriptions and the delivery log), ``signing`` (the signature, pure), ``addresses``
(which receivers may be reached), ``transport`` (one HTTP POST), ``services`` (emit an event, attempt
a delivery, send a test), ``dispatch`` (hand committed deliveries to Celery, or to a thread of this
process when tasks run eagerly), ``events`` (the event types' bodies and the experiments' signals).
"""
