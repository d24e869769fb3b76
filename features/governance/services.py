"""Approvals and scheduled changes: the writes of the governance workflow.

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

import contextlib
import contextvars
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from config.exceptions import ApprovalRequired, Conflict, DomainError
from experiments.models import Experiment
from experiments.services import LIFECYCLE_SERVICES, experiment_update
from features.governance import signals
from features.governance.models import (
    ChangeOperation,
    ChangeRequest,
    ChangeRequestStatus,
    ScheduledAction,
    ScheduledChange,
    ScheduledChangeStatus,
)
from features.governance.selectors import change_request_current_fingerprint, change_request_data
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
from features.models import Environment, Feature, FeatureRule, RuleType
from features.services import feature_create, feature_environments_as_dict, feature_update

T = TypeVar("T")
S = TypeVar("S")

APPROVE_PERMISSION = "features.approve_changerequest"


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


def _held(change_request: ChangeRequest) -> ApprovalRequired:
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


def _open(*, user: AbstractBaseUser | None, comment: str = "", **fields: Any) -> ChangeRequest:
    change_request = ChangeRequest(
        created_by=user if user is not None and user.is_authenticated else None, comment=comment, **fields
    )
    if change_request.created_by is not None:
        change_request._history_user = user
    change_request.save()
    signals.send_on_commit(signals.change_request_opened, change_request)
    return change_request


class _Undo(Exception):
    """Raised inside the dry run's atomic block to roll it back (with its on-commit callbacks)."""


def _dry_run(run: Callable[[], T], inspect: Callable[[T], S], hold: Callable[[S], bool]) -> tuple[T, S, bool]:
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

        result, after, held = _dry_run(run, feature_state, lambda after: bool(touched(after)[1]))
        if not held:
            return result
        scope, environments = touched(after)
        if before is None:
            change_request = _open(
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
            change_request = _open(
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
    raise _held(change_request)


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
    if user is not None and user.is_authenticated:
        feature._history_user = user
    feature.delete()


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
        change_request = _open(
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
    raise _held(change_request)


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
    environments = experiment_protected_environments(experiment)
    if not environments:
        return run()
    with transaction.atomic():
        before = experiment_state(experiment)

        def changed(after: dict[str, Any]) -> tuple[list[dict[str, Any]], set[str]]:
            """The write's changes (the version aside), and the fields they touch."""
            changes = [change for change in diff(before, after) if change["path"] != "version"]
            return changes, {change["path"].split(".")[0].split("[")[0] for change in changes}

        result, after, held = _dry_run(
            run,
            lambda result: experiment_state(experiment),
            # A start or a stop always waits; a write of the fields when it ramps up or reschedules.
            lambda after: operation != "update" or bool(changed(after)[1] & set(EXPERIMENT_GOVERNED)),
        )
        if not held:
            return result
        changes, heads = changed(after)
        if operation == "update":
            params = {name: after[name] for name in EXPERIMENT_WRITABLE if name in heads}
        change_request = _open(
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
    raise _held(change_request)


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
        locked.refresh_from_db(fields=["feature", "experiment"])  # a deleted flag's link is now null
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
    elif operation == ChangeOperation.SCHEDULE_CREATE:
        feature = Feature.objects.filter(key=params["feature"]).first()
        environment = Environment.objects.filter(key=params["environment"]).first()
        if feature is None or environment is None:
            raise _stale(
                change_request, f"The flag or environment of “{change_request.title}” was deleted; it"
            )
        _scheduled_change_save(
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


# --- scheduled changes ------------------------------------------------------------------------------


def _rules_of(feature: Feature, environment: Environment) -> list[dict[str, Any]]:
    return feature_environments_as_dict(feature).get(environment.key, {}).get("rules", [])


def scheduled_change_validate(
    *,
    feature: Feature,
    environment: Environment,
    action: str,
    run_at: dt.datetime | None,
    rule_position: int | None = None,
    coverage: float | None = None,
    now: dt.datetime | None = None,
) -> dt.datetime:
    """The checks of a scheduled change; returns ``run_at`` to the minute (it runs at that minute)."""
    if action not in ScheduledAction.values:
        raise ValidationError({"action": f"Choose one of {', '.join(ScheduledAction.values)}."})
    if run_at is None:
        raise ValidationError({"run_at": "Give the date and time it should happen."})
    run_at = run_at.replace(second=0, microsecond=0)
    if run_at <= (now or timezone.now()):
        raise ValidationError({"run_at": "Choose a time in the future."})
    if action == ScheduledAction.SET_COVERAGE:
        if isinstance(coverage, bool) or not isinstance(coverage, int | float) or not 0 <= coverage <= 1:
            raise ValidationError(
                {"coverage": "A share from 0 to 1, e.g. 0.5 for half of the matching users."}
            )
        rules = _rules_of(feature, environment)
        if not isinstance(rule_position, int) or not 1 <= rule_position <= len(rules):
            raise ValidationError(
                {
                    "rule_position": f"{feature.key} has {len(rules)} rules in {environment.key}; give one from 1."
                }
            )
        if rules[rule_position - 1]["type"] != RuleType.ROLLOUT:
            raise ValidationError(
                {"rule_position": f"Rule {rule_position} of {environment.key} is not a rollout rule."}
            )
    elif rule_position is not None or coverage is not None:
        raise ValidationError({"action": "Rule and coverage are only for “set coverage”."})
    return run_at


def _scheduled_change_save(**fields: Any) -> ScheduledChange:
    fields["run_at"] = scheduled_change_validate(
        feature=fields["feature"],
        environment=fields["environment"],
        action=fields["action"],
        run_at=fields["run_at"],
        rule_position=fields.get("rule_position"),
        coverage=fields.get("coverage"),
    )
    scheduled_change = ScheduledChange(**fields)
    if fields.get("created_by") is not None:
        scheduled_change._history_user = fields["created_by"]
    scheduled_change.save()
    return scheduled_change


def scheduled_change_create(
    *,
    feature: Feature,
    environment: Environment,
    action: str,
    run_at: dt.datetime | None,
    user: AbstractBaseUser | None,
    rule_position: int | None = None,
    coverage: float | None = None,
    comment: str = "",
) -> ScheduledChange:
    """Schedule a switch or a coverage change. In an environment that requires approval, the schedule
    itself is the change to approve: ``ApprovalRequired`` is raised with the change request that
    creates it once approved."""
    run_at = scheduled_change_validate(
        feature=feature,
        environment=environment,
        action=action,
        run_at=run_at,
        rule_position=rule_position,
        coverage=coverage,
    )
    author = user if user is not None and user.is_authenticated else None
    if not environment.requires_approval:
        return _scheduled_change_save(
            feature=feature,
            environment=environment,
            action=action,
            run_at=run_at,
            rule_position=rule_position,
            coverage=coverage,
            comment=comment,
            created_by=author,
        )
    proposal = ScheduledChange(
        feature=feature,
        environment=environment,
        action=action,
        run_at=run_at,
        rule_position=rule_position,
        coverage=coverage,
    )
    params = {
        "feature": feature.key,
        "environment": environment.key,
        "action": action,
        "run_at": run_at.isoformat(),
        "rule_position": rule_position,
        "coverage": coverage,
        "comment": comment,
    }
    with transaction.atomic():
        change_request = _open(
            user=user,
            comment=comment,
            operation=ChangeOperation.SCHEDULE_CREATE,
            title=f"Schedule: {proposal}",
            feature=feature,
            target_key=feature.key,
            environments=[environment.key],
            params=params,
            diff=[{"path": "scheduled_changes", "before": None, "after": str(proposal)}],
            base_fingerprint=fingerprint(None),
        )
    raise _held(change_request)


def scheduled_change_cancel(
    *, scheduled_change: ScheduledChange, user: AbstractBaseUser | None
) -> ScheduledChange:
    """Cancel a pending scheduled change (409 once it ran or was cancelled)."""
    with transaction.atomic():
        locked = ScheduledChange.objects.select_for_update().get(pk=scheduled_change.pk)
        if locked.status != ScheduledChangeStatus.PENDING:
            raise Conflict(f"This scheduled change is already {locked.get_status_display().lower()}.")
        locked.status = ScheduledChangeStatus.CANCELLED
        if user is not None and user.is_authenticated:
            locked.cancelled_by = user
            locked._history_user = user
        locked.save()
    return locked


def _fire(scheduled_change: ScheduledChange, now: dt.datetime) -> ScheduledChange | None:
    with transaction.atomic():
        locked = (
            ScheduledChange.objects.select_for_update()
            .select_related("feature", "environment")
            .filter(pk=scheduled_change.pk, status=ScheduledChangeStatus.PENDING)
            .first()
        )
        if locked is None:  # ran or cancelled meanwhile
            return None
        feature, environment = locked.feature, locked.environment
        if locked.action == ScheduledAction.SET_COVERAGE:
            rules = _rules_of(feature, environment)
            position = locked.rule_position or 0
            if not 1 <= position <= len(rules) or rules[position - 1]["type"] != RuleType.ROLLOUT:
                settings: dict[str, Any] | None = None
                failure = (
                    f"Rule {position} of {environment.key} is no longer a rollout rule; nothing changed."
                )
            else:
                rules[position - 1]["coverage"] = locked.coverage
                settings, failure = {"rules": rules}, ""
        else:
            settings, failure = {"enabled": locked.action == ScheduledAction.SWITCH_ON}, ""
        if settings is not None:
            try:
                with transaction.atomic(), history_reason(f"scheduled change #{locked.pk}"):
                    feature_update(feature=feature, user=None, environments={environment.key: settings})
            except (DomainError, ValidationError) as exc:
                failure = exc.message if isinstance(exc, DomainError) else "; ".join(exc.messages)
        locked.status = ScheduledChangeStatus.FAILED if failure else ScheduledChangeStatus.DONE
        locked.result = failure or f"{locked.describe()}: done."
        locked.fired_at = now
        locked.save()
        signals.send_on_commit(signals.scheduled_change_fired, locked)
    return locked


def scheduled_changes_apply(*, now: dt.datetime) -> list[ScheduledChange]:
    """Run the pending scheduled changes whose time has come, oldest first; returns those that ran
    (done or failed). Running it twice is harmless: a change that ran is no longer pending, and each
    locks its row."""
    due = ScheduledChange.objects.filter(status=ScheduledChangeStatus.PENDING, run_at__lte=now).order_by(
        "run_at", "pk"
    )
    fired = []
    for scheduled_change in due:
        result = _fire(scheduled_change, now)
        if result is not None:
            fired.append(result)
    return fired
