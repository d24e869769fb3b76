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
    event_emit(EventType.EXPERIMENT_STARTED, experiment_data(experiment, user))


def _on_experiment_stopped(*, experiment: Experiment, user: AbstractBaseUser | None = None, **_: Any) -> None:
    event_emit(EventType.EXPERIMENT_STOPPED, experiment_data(experiment, user))


def connect() -> None:
    """Listen to the experiments app's lifecycle signals (called once, from ``FeaturesConfig.ready``).

    Change requests' "opened" and "approved" are connected here too once their app sends signals.
    """
    experiment_started.connect(_on_experiment_started, dispatch_uid="webhooks-experiment-started")
    experiment_stopped.connect(_on_experiment_stopped, dispatch_uid="webhooks-experiment-stopped")
