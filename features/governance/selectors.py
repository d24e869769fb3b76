"""Reads of change requests and scheduled changes: one representation for the API, the 202 answer of a
held write and the admin."""

from typing import Any

from django.urls import NoReverseMatch, reverse

from features.governance.models import ChangeRequest, ChangeRequestStatus, ScheduledChange
from features.governance.state import experiment_state, feature_state, fingerprint, holdout_state, part
from features.models import Feature


def change_request_scope(change_request: ChangeRequest) -> list[str]:
    """The parts of the target a flag change touches (what its fingerprint covers)."""
    params = change_request.params
    return sorted(
        [f"environments.{key}" for key in params.get("environments", {})]
        + [name for name in params if name != "environments"]
    )


def change_request_current_fingerprint(change_request: ChangeRequest) -> str | None:
    """The fingerprint of the target's state now, comparable with ``base_fingerprint``; None when the
    target is gone (a flag, experiment or holdout deleted since)."""
    operation = change_request.operation
    if operation == "feature.create":
        exists = Feature.objects.filter(key=change_request.params.get("key")).exists()
        return fingerprint("exists" if exists else None)
    if operation == "feature.delete":
        if change_request.feature_id is None:
            return None
        return fingerprint(feature_state(change_request.feature))
    if operation == "feature.update":
        if change_request.feature_id is None:
            return None
        state = feature_state(change_request.feature)
        return fingerprint(part(state, change_request_scope(change_request)))
    if operation.startswith("experiment."):
        if change_request.experiment_id is None:
            return None
        return fingerprint(experiment_state(change_request.experiment))
    if operation.startswith("holdout."):
        if change_request.holdout_id is None:
            return None
        return fingerprint(holdout_state(change_request.holdout))
    return change_request.base_fingerprint  # a schedule is checked when it runs


def change_request_outdated(change_request: ChangeRequest) -> bool:
    """An open change request whose target changed since it was proposed: approving it answers 409."""
    if change_request.status != ChangeRequestStatus.OPEN:
        return False
    return change_request_current_fingerprint(change_request) != change_request.base_fingerprint


def _url(name: str, *args: Any) -> str | None:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def change_request_data(change_request: ChangeRequest) -> dict[str, Any]:
    """The change request as the API shows it."""
    cr = change_request
    if cr.operation.startswith("feature.") or cr.operation == "schedule.create":
        target_type = "feature"
    elif cr.operation.startswith("holdout."):
        target_type = "holdout"
    else:
        target_type = "experiment"
    return {
        "id": cr.pk,
        "url": _url("changerequest-detail", cr.pk),
        "status": cr.status,
        "operation": cr.operation,
        "title": cr.title,
        "target": {"type": target_type, "key": cr.target_key},
        "environments": cr.environments,
        "diff": cr.diff,
        "params": cr.params,
        "outdated": change_request_outdated(cr),
        "comment": cr.comment,
        "created_by": cr.created_by.get_username() if cr.created_by else None,
        "created_at": cr.created_at.isoformat() if cr.created_at else None,
        "reviewed_by": cr.reviewed_by.get_username() if cr.reviewed_by else None,
        "reviewed_at": cr.reviewed_at.isoformat() if cr.reviewed_at else None,
        "review_comment": cr.review_comment,
        "applied_at": cr.applied_at.isoformat() if cr.applied_at else None,
    }


def scheduled_change_data(scheduled_change: ScheduledChange) -> dict[str, Any]:
    sc = scheduled_change
    return {
        "id": sc.pk,
        "feature": sc.feature.key,
        "environment": sc.environment.key,
        "action": sc.action,
        "rule_position": sc.rule_position,
        "coverage": sc.coverage,
        "run_at": sc.run_at.isoformat(),
        "status": sc.status,
        "description": sc.describe(),
        "result": sc.result,
        "comment": sc.comment,
        "change_request": sc.change_request_id,
        "created_by": sc.created_by.get_username() if sc.created_by else None,
        "created_at": sc.created_at.isoformat() if sc.created_at else None,
        "cancelled_by": sc.cancelled_by.get_username() if sc.cancelled_by else None,
        "fired_at": sc.fired_at.isoformat() if sc.fired_at else None,
    }
