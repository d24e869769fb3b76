"""Approvals for holdouts: starting, stopping or changing a holdout that covers an environment
requiring approval waits for someone else's approval, as flags do.

A holdout covers the environments it holds units out in (``Holdout.environments``). Its start and its
stop change what those environments serve (who gets the held-out flags' defaults and who is left out
of the held-out experiments), so both are held there; so is a change of a running holdout's served
fields (``HOLDOUT_SERVED_FIELDS``: its flags, experiments, environments, ...). A draft or a stopped
holdout serves nothing: changing it, creating one or deleting a draft never needs approval.

The write runs through its service inside an atomic block that is rolled back when it needs approval
(``common.dry_run``), so a proposal is always valid when made; approving re-checks the holdout's
fingerprint and calls the same service again.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from experiments.models import Experiment
from features.governance.models import ChangeOperation, ChangeRequest
from features.governance.services.common import (
    StaleChangeRequest,
    approval_required,
    change_request_open,
    dry_run,
    protected_environment_keys,
)
from features.governance.state import HOLDOUT_SERVED_FIELDS, diff, fingerprint, holdout_state
from features.holdouts.models import Holdout, HoldoutStatus
from features.holdouts.services import holdout_start, holdout_stop, holdout_update
from features.models import Feature
from metrics.models import Metric

T = TypeVar("T")

# The operations a holdout's edges pass: create and delete never wait (a draft serves nothing).
HELD_OPERATIONS = {
    "start": ChangeOperation.HOLDOUT_START,
    "stop": ChangeOperation.HOLDOUT_STOP,
    "update": ChangeOperation.HOLDOUT_UPDATE,
}


def _title(operation: str, key: str, environments: list[str]) -> str:
    verb = {"start": "Start", "stop": "Stop", "update": "Change"}[operation]
    return f"{verb} holdout “{key}” in {', '.join(environments)}"


def holdout_write(
    *,
    holdout: Holdout | None,
    operation: str,
    user: AbstractBaseUser | None,
    run: Callable[[], T],
    comment: str = "",
) -> T:
    """Apply ``run()`` (the holdout's service call for ``operation``: create, update, start, stop or
    delete), unless it starts, stops or changes what a running holdout serves in an environment that
    requires approval: then nothing is written and ``ApprovalRequired`` is raised, holding the change
    request. Called inside a transaction, catch ``ApprovalRequired`` inside it, or the change request
    is rolled back with it."""
    if holdout is None or operation not in HELD_OPERATIONS:
        return run()
    protected = protected_environment_keys()
    if not protected:
        return run()
    with transaction.atomic():
        before = holdout_state(holdout)

        def served_changes(after: dict[str, Any]) -> list[dict[str, Any]]:
            return [c for c in diff(before, after) if c["path"].split("[")[0] in HOLDOUT_SERVED_FIELDS]

        def environments_of(after: dict[str, Any]) -> list[str]:
            return sorted((set(before["environments"]) | set(after["environments"])) & protected)

        def needs_approval(after: dict[str, Any]) -> bool:
            if not environments_of(after):
                return False
            if operation != "update":
                return True
            return before["status"] == HoldoutStatus.RUNNING and bool(served_changes(after))

        result, after, held = dry_run(run, lambda result: holdout_state(holdout), needs_approval)
        if not held:
            return result
        environments = environments_of(after)
        changes = [c for c in diff(before, after) if c["path"] != "status"] if operation == "update" else []
        params = {c["path"].split("[")[0]: after[c["path"].split("[")[0]] for c in changes}
        change_request = change_request_open(
            user=user,
            comment=comment,
            operation=HELD_OPERATIONS[operation],
            title=_title(operation, before["key"], environments),
            holdout=holdout,
            target_key=before["key"],
            environments=environments,
            params=params,
            diff=diff(before, after),
            base_fingerprint=fingerprint(before),
        )
    raise approval_required(change_request)


def _stale(change_request: ChangeRequest, what: str) -> StaleChangeRequest:
    return StaleChangeRequest(
        f"{what} changed since change request #{change_request.pk} was proposed, so its diff no longer "
        "shows what approving would do. Reject it and propose the change again."
    )


def _by_keys(model: type, keys: list[str], what: str, change_request: ChangeRequest) -> list[Any]:
    found = {obj.key: obj for obj in model.objects.filter(key__in=keys)}
    missing = sorted(set(keys) - set(found))
    if missing:
        raise _stale(change_request, f"The {what} {', '.join(missing)} (deleted since); it")
    return [found[key] for key in keys]


def holdout_change_apply(change_request: ChangeRequest, user: AbstractBaseUser) -> None:
    """Apply an approved holdout change request through the holdouts' services (409 when the holdout
    is gone or changed since it was proposed)."""
    holdout = Holdout.objects.select_for_update().filter(pk=change_request.holdout_id).first()
    if holdout is None:
        raise _stale(change_request, f"The holdout “{change_request.target_key}” was deleted; it")
    if fingerprint(holdout_state(holdout)) != change_request.base_fingerprint:
        raise _stale(change_request, f"The holdout “{holdout.key}”")
    operation = change_request.operation
    if operation == ChangeOperation.HOLDOUT_START:
        holdout_start(holdout=holdout, user=user)
    elif operation == ChangeOperation.HOLDOUT_STOP:
        holdout_stop(holdout=holdout, user=user)
    else:
        params = dict(change_request.params)
        for name, model, what in (
            ("features", Feature, "flags"),
            ("experiments", Experiment, "experiments"),
            ("metrics", Metric, "metrics"),
        ):
            if name in params:
                params[name] = _by_keys(model, params[name], what, change_request)
        holdout_update(holdout=holdout, user=user, **params)
