"""Approvals: writes held as change requests, approved (and applied) or rejected.

Which changes need approval
---------------------------
An environment with ``requires_approval`` protects:

- its flags: a write that changes a flag's switch or rules in that environment, or a flag's type,
  default value or prerequisites (served in every environment), or that creates a flag already on or
  with rules there, or deletes a flag that is on or has rules there. Name, description and tags are not served: they never need approval.
- the experiments that serve it: an experiment whose ``analysis_environments`` include it, or that a
  flag's experiment rule in it uses. Their start, stop, ramp-up (a change of ``traffic_allocation``)
  and schedule (``scheduled_start_at``, ``scheduled_stop_at``) need approval; pause and resume do not,
  so anyone with the permission can halt an experiment at once.

How a write is held
-------------------
The edges (API, admin) pass the write to ``feature_write`` or, for experiments, through the hook
``experiments.approvals.experiment_write`` (filled by ``experiment_gate``). The write runs as usual,
through its service and all its validation, inside a savepoint; its result is compared with the state
before. When the difference touches a protected environment, the savepoint is rolled back (nothing
was written, no history, no signal) and a change request records the change as the arguments of the
service that applies it, its diff, and a fingerprint of the state it was made against; then
``ApprovalRequired`` is raised (202 in the API). A write that would fail fails as it would without
approvals: a proposal is always valid when made.

Approving applies: ``change_request_approve`` (by a user with ``features.approve_changerequest``, never
the author) re-reads the target under a row lock, refuses with 409 when the part the change touches
changed since it was proposed (the fingerprint differs), and calls the same service again. The
history rows the change writes carry the reason "change request #N approved by USER".

Scheduled changes in protected environments are approved when they are created (creating one opens
a change request); once approved they run at their time without asking again. Cancelling one never
needs approval: it only keeps things as they are.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from config.exceptions import Conflict
from experiments.models import Experiment
from experiments.services import LIFECYCLE_SERVICES, experiment_update
from features.governance import signals
from features.governance.models import (
    ChangeOperation,
    ChangeRequest,
    ChangeRequestStatus,
)
from features.governance.selectors import change_request_current_fingerprint
from features.governance.services.common import (
    APPROVE_PERMISSION,
    StaleChangeRequest,
    approval_required,
    change_request_open,
    dry_run,
    history_reason,
    protected_environment_keys,
)
from features.governance.services.holdouts import holdout_change_apply
from features.governance.services.schedules import scheduled_change_save
from features.governance.state import (
    EXPERIMENT_GOVERNED,
    EXPERIMENT_WRITABLE,
    FEATURE_SERVED_FIELDS,
    diff,
    experiment_state,
    feature_state,
    fingerprint,
    part,
    scope_of,
)
from features.models import Environment, Feature, FeatureRule
from features.services import feature_create, feature_environments_as_dict, feature_update
from features.services import feature_delete as services_feature_delete

T = TypeVar("T")


def experiment_protected_environments(experiment: Experiment, protected: set[str] | None = None) -> list[str]:
    """The approval-requiring environments an experiment serves: those it is analysed in, and those
    where a flag's experiment rule uses it."""
    protected = protected_environment_keys() if protected is None else protected
    if not protected:
        return []
    environments = set(experiment.analysis_environments or []) & protected
    environments |= set(
        FeatureRule.objects.filter(experiment=experiment, environment__key__in=protected).values_list(
            "environment__key", flat=True
        )
    )
    return sorted(environments)


def _feature_environments(scope: list[str], protected: set[str]) -> list[str]:
    environments: set[str] = set()
    for name in scope:
        head, _, env = name.partition(".")
        if head == "environments" and env in protected:
            environments.add(env)
        elif head in FEATURE_SERVED_FIELDS:
            environments |= protected
    return sorted(environments)


# --- proposing ----------------------------------------------------------------------------------------


def feature_write(
    *, feature: Feature | None, user: AbstractBaseUser | None, run: Callable[[], Feature], comment: str = ""
) -> Feature:
    """Apply ``run()`` (a create, ``feature`` None, or an update of ``feature``), unless it changes an
    environment that requires approval: then nothing is written and ``ApprovalRequired`` is raised,
    holding the change request. Called inside a transaction, catch ``ApprovalRequired`` inside it, or
    the change request is rolled back with it."""
    protected = protected_environment_keys()
    if not protected:
        return run()
    with transaction.atomic():
        before = feature_state(feature) if feature is not None else None

        def touched(after: dict[str, Any]) -> tuple[list[str], list[str]]:
            """The parts of the flag the write changes, and the protected environments among them."""
            if before is None:  # a new flag: what it serves in protected environments
                scope = [
                    f"environments.{key}"
                    for key, settings in after["environments"].items()
                    if key in protected and (settings["enabled"] or settings["rules"])
                ]
                return scope, sorted(name.partition(".")[2] for name in scope)
            scope = scope_of(diff(before, after))
            return scope, _feature_environments(scope, protected)

        result, after, held = dry_run(run, feature_state, lambda after: bool(touched(after)[1]))
        if not held:
            return result
        scope, environments = touched(after)
        if before is None:
            change_request = change_request_open(
                user=user,
                comment=comment,
                operation=ChangeOperation.FEATURE_CREATE,
                title=f"Create flag “{after['key']}”",
                target_key=after["key"],
                environments=environments,
                params=after,
                diff=diff({}, after),
                base_fingerprint=fingerprint(None),
            )
        else:
            params: dict[str, Any] = {}
            for name in scope:
                head, _, env = name.partition(".")
                if head == "environments":
                    params.setdefault("environments", {})[env] = after["environments"][env]
                else:
                    params[name] = after[name]
            change_request = change_request_open(
                user=user,
                comment=comment,
                operation=ChangeOperation.FEATURE_UPDATE,
                title=f"Change flag “{before['key']}” in {', '.join(environments)}",
                feature=feature,
                target_key=before["key"],
                environments=environments,
                params=params,
                diff=diff(part(before, scope), part(after, scope)),
                base_fingerprint=fingerprint(part(before, scope)),
            )
    raise approval_required(change_request)


def feature_delete_environments(feature: Feature) -> list[str]:
    """The environments requiring approval where deleting ``feature`` changes what is served (it is
    on there, or has rules)."""
    protected = protected_environment_keys()
    if not protected:
        return []
    settings = feature_environments_as_dict(feature)
    return sorted(
        key for key, value in settings.items() if key in protected and (value["enabled"] or value["rules"])
    )


def _feature_delete(feature: Feature, user: AbstractBaseUser | None) -> None:
    services_feature_delete(feature=feature, user=user)  # with its flag.changed webhook event


def feature_delete(*, feature: Feature, user: AbstractBaseUser | None, comment: str = "") -> None:
    """Delete a flag, unless it is on or has rules in an environment that requires approval: then
    ``ApprovalRequired`` is raised, holding a change request that deletes it once approved (its code
    would get its fallback value there from then on)."""
    environments = feature_delete_environments(feature)
    if not environments:
        _feature_delete(feature, user)
        return
    with transaction.atomic():
        state = feature_state(feature)
        change_request = change_request_open(
            user=user,
            comment=comment,
            operation=ChangeOperation.FEATURE_DELETE,
            title=f"Delete flag “{feature.key}”",
            feature=feature,
            target_key=feature.key,
            environments=environments,
            params={},
            diff=diff(state, {}),
            base_fingerprint=fingerprint(state),
        )
    raise approval_required(change_request)


def _experiment_title(operation: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    key = before["key"]
    if operation == "start":
        return f"Start experiment “{key}”"
    if operation == "stop":
        return f"Stop experiment “{key}”"
    if before["traffic_allocation"] != after["traffic_allocation"]:
        return (
            f"Ramp experiment “{key}” from {before['traffic_allocation']:.0%} "
            f"to {after['traffic_allocation']:.0%}"
        )
    return f"Reschedule experiment “{key}”"


def experiment_gate(
    *,
    experiment: Experiment,
    operation: str,
    user: AbstractBaseUser | None,
    run: Callable[[], T],
    params: dict[str, Any],
) -> T:
    """The gate registered in ``experiments.approvals``: start, stop and changes of the traffic
    allocation or schedule of an experiment serving a protected environment are held for approval."""
    if operation not in ("start", "stop", "update"):
        return run()
    protected = protected_environment_keys()
    serving = experiment_protected_environments(experiment, protected)
    # An update may also bring the experiment into a protected environment (its analysis
    # environments) while ramping it up: that write is judged by where it leads too.
    if not serving and (operation != "update" or not protected):
        return run()
    with transaction.atomic():
        before = experiment_state(experiment)

        def changed(after: dict[str, Any]) -> tuple[list[dict[str, Any]], set[str]]:
            """The write's changes (the version aside), and the fields they touch."""
            changes = [change for change in diff(before, after) if change["path"] != "version"]
            return changes, {change["path"].split(".")[0].split("[")[0] for change in changes}

        def environments_of(after: dict[str, Any]) -> list[str]:
            return sorted(set(serving) | (set(after.get("analysis_environments") or []) & protected))

        def needs_approval(after: dict[str, Any]) -> bool:
            # A start or a stop always waits; a write of the fields when it ramps up or reschedules.
            if not environments_of(after):
                return False
            return operation != "update" or bool(changed(after)[1] & set(EXPERIMENT_GOVERNED))

        result, after, held = dry_run(run, lambda result: experiment_state(experiment), needs_approval)
        if not held:
            return result
        environments = environments_of(after)
        changes, heads = changed(after)
        if operation == "update":
            params = {name: after[name] for name in EXPERIMENT_WRITABLE if name in heads}
        change_request = change_request_open(
            user=user,
            operation=f"experiment.{operation}",
            title=_experiment_title(operation, before, after),
            experiment=experiment,
            target_key=before["key"],
            environments=environments,
            params=params,
            diff=changes,
            base_fingerprint=fingerprint(before),
        )
    raise approval_required(change_request)


# --- reviewing ----------------------------------------------------------------------------------------


def _lock_open(change_request: ChangeRequest) -> ChangeRequest:
    locked = ChangeRequest.objects.select_for_update().get(pk=change_request.pk)
    if locked.status != ChangeRequestStatus.OPEN:
        raise Conflict(f"Change request #{locked.pk} is already {locked.get_status_display().lower()}.")
    return locked


def change_request_approve(
    *, change_request: ChangeRequest, user: AbstractBaseUser, comment: str = ""
) -> ChangeRequest:
    """Approve and apply, through the same service as the original write (403 without the permission
    or for the author; 409 when it is no longer open or its target changed since it was proposed)."""
    if not user.has_perm(APPROVE_PERMISSION):
        raise PermissionDenied(
            "Approving change requests needs the permission “Can approve or reject change requests”."
        )
    if change_request.created_by_id is not None and change_request.created_by_id == user.pk:
        raise PermissionDenied("You proposed this change; someone else must approve it.")
    with transaction.atomic():
        locked = _lock_open(change_request)
        with history_reason(f"change request #{locked.pk} approved by {user.get_username()}"):
            _apply(locked, user)
        locked.refresh_from_db(
            fields=["feature", "experiment", "holdout"]
        )  # a deleted flag's link is now null
        now = timezone.now()
        locked.status = ChangeRequestStatus.APPLIED
        locked.reviewed_by, locked.reviewed_at, locked.applied_at = user, now, now
        locked.review_comment = comment
        locked._history_user = user
        locked.save()
        signals.send_on_commit(signals.change_request_approved, locked, user=user)
        signals.send_on_commit(signals.change_request_applied, locked)
    return locked


def change_request_reject(
    *, change_request: ChangeRequest, user: AbstractBaseUser, comment: str = ""
) -> ChangeRequest:
    """Reject (a reviewer with the permission) or withdraw (its author): nothing is applied."""
    is_author = change_request.created_by_id is not None and change_request.created_by_id == user.pk
    if not is_author and not user.has_perm(APPROVE_PERMISSION):
        raise PermissionDenied(
            "Rejecting change requests needs the permission “Can approve or reject change requests”."
        )
    with transaction.atomic():
        locked = _lock_open(change_request)
        locked.status = ChangeRequestStatus.REJECTED
        locked.reviewed_by, locked.reviewed_at = user, timezone.now()
        locked.review_comment = comment
        locked._history_user = user
        locked.save()
        signals.send_on_commit(signals.change_request_rejected, locked, user=user)
    return locked


def _stale(change_request: ChangeRequest, what: str) -> StaleChangeRequest:
    return StaleChangeRequest(
        f"{what} changed since change request #{change_request.pk} was proposed, so its diff no longer "
        "shows what approving would do. Reject it and propose the change again."
    )


def _apply(change_request: ChangeRequest, user: AbstractBaseUser) -> None:
    operation, params = change_request.operation, dict(change_request.params)
    if operation == ChangeOperation.FEATURE_CREATE:
        if Feature.objects.filter(key=params["key"]).exists():
            raise _stale(change_request, f"A flag “{params['key']}” was created meanwhile; it")
        feature_create(user=user, owner=change_request.created_by, **params)
    elif operation == ChangeOperation.FEATURE_DELETE:
        feature = Feature.objects.select_for_update().filter(pk=change_request.feature_id).first()
        if feature is None:
            raise _stale(change_request, f"The flag “{change_request.target_key}” was deleted; it")
        if change_request_current_fingerprint(change_request) != change_request.base_fingerprint:
            raise _stale(change_request, f"The flag “{feature.key}”")
        _feature_delete(feature, user)
    elif operation == ChangeOperation.FEATURE_UPDATE:
        feature = Feature.objects.select_for_update().filter(pk=change_request.feature_id).first()
        if feature is None:
            raise _stale(change_request, f"The flag “{change_request.target_key}” was deleted; it")
        if change_request_current_fingerprint(change_request) != change_request.base_fingerprint:
            raise _stale(change_request, f"The flag “{feature.key}”")
        feature_update(feature=feature, user=user, **params)
    elif operation.startswith("experiment."):
        experiment = Experiment.objects.select_for_update().filter(pk=change_request.experiment_id).first()
        if experiment is None:
            raise _stale(change_request, f"The experiment “{change_request.target_key}” was deleted; it")
        if change_request_current_fingerprint(change_request) != change_request.base_fingerprint:
            raise _stale(change_request, f"The experiment “{experiment.key}”")
        action = operation.removeprefix("experiment.")
        if action == "update":
            for name in ("scheduled_start_at", "scheduled_stop_at"):
                if isinstance(params.get(name), str):
                    params[name] = parse_datetime(params[name])
            experiment_update(experiment=experiment, user=user, version=experiment.version, **params)
        else:
            LIFECYCLE_SERVICES[action](experiment=experiment, user=user, version=experiment.version, **params)
    elif operation.startswith("holdout."):
        holdout_change_apply(change_request, user)
    elif operation == ChangeOperation.SCHEDULE_CREATE:
        feature = Feature.objects.filter(key=params["feature"]).first()
        environment = Environment.objects.filter(key=params["environment"]).first()
        if feature is None or environment is None:
            raise _stale(
                change_request, f"The flag or environment of “{change_request.title}” was deleted; it"
            )
        scheduled_change_save(
            feature=feature,
            environment=environment,
            action=params["action"],
            run_at=parse_datetime(params["run_at"]),
            rule_position=params.get("rule_position"),
            coverage=params.get("coverage"),
            comment=params.get("comment", ""),
            created_by=change_request.created_by,
            change_request=change_request,
        )
    else:  # pragma: no cover - the choices above are all the operations
        raise ValueError(f"unknown operation {operation}")
