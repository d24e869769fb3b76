"""Scheduled flag changes: switch a flag on or off in an environment, or set a rollout rule's
coverage, at a given minute; run by the every-minute runner (``features.tasks.scheduled_changes_run``).
In an environment that requires approval, creating one opens a change request (the schedule is
what is approved); cancelling never needs approval."""

import datetime as dt
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from config.exceptions import Conflict, DomainError
from features.governance import signals
from features.governance.models import (
    ChangeOperation,
    ScheduledAction,
    ScheduledChange,
    ScheduledChangeStatus,
)
from features.governance.services.common import approval_required, change_request_open, history_reason
from features.governance.state import fingerprint
from features.models import Environment, Feature, RuleType
from features.services import feature_environments_as_dict, feature_update


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


def scheduled_change_save(**fields: Any) -> ScheduledChange:
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
        return scheduled_change_save(
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
        change_request = change_request_open(
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
    raise approval_required(change_request)


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
