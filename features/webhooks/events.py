"""The bodies' ``data`` of each event type, and the receivers that turn other apps' signals into events.

``data`` names things by key, as the API does, so a receiver can call the API back for more.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from experiments.models import Experiment
from experiments.signals import experiment_started, experiment_stopped
from features.webhooks.models import EventType
from features.webhooks.services import event_emit


def _username(user: AbstractBaseUser | None) -> str | None:
    return user.get_username() if user is not None and user.is_authenticated else None


def experiment_data(experiment: Experiment, user: AbstractBaseUser | None) -> dict[str, Any]:
    return {
        "experiment": {
            "key": experiment.key,
            "name": experiment.name,
            "status": experiment.status,
            "started_at": experiment.started_at,
            "stopped_at": experiment.stopped_at,
            "decision_variant": experiment.decision_variant or None,
            "decision_reason": experiment.decision_reason,
            "variants": list(experiment.variants.values_list("key", flat=True)),
        },
        "changed_by": _username(user),
    }


def flag_changed_data(
    *, key: str, action: str, user: AbstractBaseUser | None, feature: dict[str, Any] | None
) -> dict[str, Any]:
    """``action`` is created, updated or deleted; ``feature`` the flag as the API shows it (None once
    deleted)."""
    return {"feature": feature, "key": key, "action": action, "changed_by": _username(user)}


def _on_experiment_started(*, experiment: Experiment, user: AbstractBaseUser | None = None, **_: Any) -> None:
    event_emit(EventType.EXPERIMENT_STARTED, lambda: experiment_data(experiment, user))


def _on_experiment_stopped(*, experiment: Experiment, user: AbstractBaseUser | None = None, **_: Any) -> None:
    event_emit(EventType.EXPERIMENT_STOPPED, lambda: experiment_data(experiment, user))


def change_request_data(instance: Any, user: AbstractBaseUser | None = None) -> dict[str, Any]:
    """A change request (``features.governance.models.ChangeRequest``) as events show it."""
    return {
        "change_request": {
            "id": instance.pk,
            "status": getattr(instance, "status", None),
            "operation": getattr(instance, "operation", None),
            "title": getattr(instance, "title", ""),
            "target_key": getattr(instance, "target_key", ""),
            "environments": getattr(instance, "environments", None),
            "diff": getattr(instance, "diff", None),
            "comment": getattr(instance, "comment", ""),
            "created_by": _username(getattr(instance, "created_by", None)),
            "reviewed_by": _username(getattr(instance, "reviewed_by", None)),
        },
        "changed_by": _username(user),
    }


def _on_change_request_opened(*, instance: Any, **_: Any) -> None:
    event_emit(EventType.CHANGE_REQUEST_OPENED, lambda: change_request_data(instance))


def _on_change_request_approved(*, instance: Any, user: AbstractBaseUser | None = None, **_: Any) -> None:
    event_emit(EventType.CHANGE_REQUEST_APPROVED, lambda: change_request_data(instance, user))


def connect() -> None:
    """Listen to the experiments app's lifecycle signals and to change requests' "opened" and
    "approved" (``features.governance.signals``, sent on commit); called once, from
    ``FeaturesConfig.ready``."""
    from features.governance import signals as governance

    experiment_started.connect(_on_experiment_started, dispatch_uid="webhooks-experiment-started")
    experiment_stopped.connect(_on_experiment_stopped, dispatch_uid="webhooks-experiment-stopped")
    governance.change_request_opened.connect(
        _on_change_request_opened, dispatch_uid="webhooks-change-request-opened"
    )
    governance.change_request_approved.connect(
        _on_change_request_approved, dispatch_uid="webhooks-change-request-approved"
    )
