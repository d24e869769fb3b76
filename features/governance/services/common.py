"""What approvals and schedules share: the reason written on history rows, which environments
require approval, and opening a change request."""

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.urls import NoReverseMatch, reverse

from config.exceptions import ApprovalRequired, Conflict
from features.governance import signals
from features.governance.models import ChangeRequest
from features.governance.selectors import change_request_data
from features.models import Environment

APPROVE_PERMISSION = "features.approve_changerequest"

T = TypeVar("T")
S = TypeVar("S")


class StaleChangeRequest(Conflict):
    code = "stale_change_request"


# --- the reason written on history rows while a change request or a scheduled change applies -------
_history_reason: contextvars.ContextVar[str | None] = contextvars.ContextVar("history_reason", default=None)


@contextlib.contextmanager
def history_reason(reason: str) -> Iterator[None]:
    token = _history_reason.set(reason[:100])  # simple-history's column is 100 characters
    try:
        yield
    finally:
        _history_reason.reset(token)


def history_reason_fill(sender: Any, history_instance: Any, **kwargs: Any) -> None:
    """``pre_create_historical_record`` receiver: history rows written while a change request or a
    scheduled change applies say so (recording, not business logic)."""
    reason = _history_reason.get()
    if reason and not getattr(history_instance, "history_change_reason", None):
        history_instance.history_change_reason = reason


# --- which environments need approval ---------------------------------------------------------------


def protected_environment_keys() -> set[str]:
    return set(Environment.objects.filter(requires_approval=True).values_list("key", flat=True))


def approval_required(change_request: ChangeRequest) -> ApprovalRequired:
    environments = ", ".join(change_request.environments)
    message = (
        f"{change_request.title}: {environments} requires approval, so this change waits as change request "
        f"#{change_request.pk} until someone else with the permission approves it."
    )
    try:
        admin_url = reverse("admin:features_changerequest_change", args=[change_request.pk])
    except NoReverseMatch:
        admin_url = ""
    data = change_request_data(change_request)
    return ApprovalRequired(message, payload=data, location=data["url"] or "", admin_url=admin_url)


def change_request_open(*, user: AbstractBaseUser | None, comment: str = "", **fields: Any) -> ChangeRequest:
    change_request = ChangeRequest(
        created_by=user if user is not None and user.is_authenticated else None, comment=comment, **fields
    )
    if change_request.created_by is not None:
        change_request._history_user = user
    change_request.save()
    signals.send_on_commit(signals.change_request_opened, change_request)
    return change_request


# --- proposing: a write run, inspected, and undone when it must wait ----------------------------------


class _Undo(Exception):
    """Raised inside the dry run's atomic block to roll it back (with its on-commit callbacks)."""


def dry_run(run: Callable[[], T], inspect: Callable[[T], S], hold: Callable[[S], bool]) -> tuple[T, S, bool]:
    """Run a write in an atomic block and ``inspect`` its result; when ``hold(seen)``, roll the block
    back. Rolling back an atomic block (not a bare savepoint) also discards the on-commit callbacks
    the write registered (cache invalidation, webhooks), so a held write leaves no trace."""
    outcome: list[Any] = []
    try:
        with transaction.atomic():
            result = run()
            seen = inspect(result)
            outcome[:] = [result, seen]
            if hold(seen):
                raise _Undo
    except _Undo:
        return outcome[0], outcome[1], True
    return outcome[0], outcome[1], False
