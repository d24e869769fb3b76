"""Signals of the governance workflow, for webhooks and anything else that wants to know.

Each is sent once the transaction that made the change commits (never for a change rolled back),
with ``sender`` the model class (``ChangeRequest`` or ``ScheduledChange``) and ``instance`` the object:

- ``change_request_opened(instance)``: a write was held for approval.
- ``change_request_approved(instance, user)``: someone else approved it (it is then applied).
- ``change_request_applied(instance)``: its change is live (sent right after ``approved``).
- ``change_request_rejected(instance, user)``: rejected, or withdrawn by its author.
- ``scheduled_change_fired(instance)``: a scheduled change ran; its ``status`` is ``done`` or
  ``failed`` (with the reason in ``result``).

Connect with ``signal.connect(receiver, dispatch_uid=...)``; a receiver that raises does not undo
the change (it is already committed) and is logged by ``send_robust``.
"""

import logging
from typing import Any

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

change_request_opened = Signal()
change_request_approved = Signal()
change_request_applied = Signal()
change_request_rejected = Signal()
scheduled_change_fired = Signal()


def send_on_commit(signal: Signal, instance: Any, **kwargs: Any) -> None:
    """Send ``signal`` for ``instance`` once the current transaction commits."""

    def send() -> None:
        for receiver, result in signal.send_robust(sender=type(instance), instance=instance, **kwargs):
            if isinstance(result, Exception):
                logger.error("A receiver of %s failed: %r", receiver, result, exc_info=result)

    transaction.on_commit(send)
