"""Approvals, as experiments see them: one hook the edges (API, admin) call around a write.

Approvals live in ``features.governance`` (environments belong to ``features``, which depends on this
app, never the reverse). At start-up the features app registers its gate here
(``features.apps.FeaturesConfig.ready``); without one, every write applies at once.

An edge wraps a write in ``experiment_write``: the gate decides whether the experiment is
approval-protected (it serves an environment that requires approval) and whether this change is one
that needs a second pair of eyes (a start, a stop, a ramp-up, a schedule). If so, nothing is written:
the gate records a change request and raises ``config.exceptions.ApprovalRequired`` (202 in the API, a
message in the admin). Otherwise ``run`` (the service call) is what happens and its result returned.
"""

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from django.contrib.auth.models import AbstractBaseUser

from experiments.models import Experiment

T = TypeVar("T")

# The operations a gate is told about: the lifecycle actions and "update" (a write of the fields).
OPERATIONS = frozenset({"start", "pause", "resume", "stop", "archive", "update"})


class ApprovalGate(Protocol):
    def __call__(
        self,
        *,
        experiment: Experiment,
        operation: str,
        user: AbstractBaseUser | None,
        run: Callable[[], T],
        params: dict[str, Any],
    ) -> T: ...


_gate: ApprovalGate | None = None


def gate_register(gate: ApprovalGate | None) -> None:
    """Install the gate (``features.governance``); None removes it."""
    global _gate
    _gate = gate


def experiment_write(
    *,
    experiment: Experiment,
    operation: str,
    user: AbstractBaseUser | None,
    run: Callable[[], T],
    params: dict[str, Any] | None = None,
) -> T:
    """Apply ``run()`` (a service call on ``experiment``), unless the change needs approval: then raise
    ``ApprovalRequired`` holding the change request. ``params`` are the operation's arguments as JSON
    (a stop's ``decision_variant`` and ``reason``), kept to apply the change once approved."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}")
    if _gate is None:
        return run()
    return _gate(experiment=experiment, operation=operation, user=user, run=run, params=params or {})
