"""Importing a document: every object through the API's serializer and its app's service, in one
transaction, in an order where references exist before they are used (environments, metrics with
denominators last, experiments, flags, then flags' prerequisites, holdouts, then deletions).

A dry run does the whole import and rolls it back, so it finds every error a real import would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from rest_framework import serializers

from config.exceptions import ApprovalRequired, DomainError
from experiments.approvals import experiment_write
from experiments.models import Experiment
from experiments.serializers import ExperimentSerializer
from experiments.services import (
    LAYER_HOLDING_STATUSES,
    LIFECYCLE_SERVICES,
    experiment_create,
    experiment_delete,
    experiment_lifecycle_restore,
    experiment_update,
    lifecycle_path,
)
from features.config_file.plan import (
    DELETE_ORDER,
    HOLDOUT_LIFECYCLE_RECORD,
    LIFECYCLE_RECORD,
    SINGULAR,
    Change,
    ConfigFileError,
    Plan,
    canonical,
    config_plan,
    document_validate,
)
from features.governance.services import feature_delete as feature_delete_governed
from features.governance.services import feature_write, holdout_write
from features.holdouts.models import Holdout, HoldoutStatus
from features.holdouts.serializers import HoldoutSerializer
from features.holdouts.services import (
    holdout_create,
    holdout_delete,
    holdout_start,
    holdout_stop,
    holdout_update,
)
from features.models import Environment, Feature
from features.serializers import EnvironmentSerializer, FeatureSerializer
from features.services import environment_delete, feature_create, feature_delete, feature_update
from metrics.models import Metric
from metrics.serializers import MetricSerializer
from metrics.services import metric_create, metric_delete, metric_update

EXPERIMENT_READ_ONLY = frozenset({"status", *LIFECYCLE_RECORD})
HOLDOUT_READ_ONLY = frozenset({"status", *HOLDOUT_LIFECYCLE_RECORD})
# A holdout's way from one status to another: (action, the record field its time comes from).
HOLDOUT_PATHS = {
    (HoldoutStatus.DRAFT, HoldoutStatus.RUNNING): [("start", "started_at")],
    (HoldoutStatus.DRAFT, HoldoutStatus.STOPPED): [("start", "started_at"), ("stop", "stopped_at")],
    (HoldoutStatus.RUNNING, HoldoutStatus.STOPPED): [("stop", "stopped_at")],
}


class Writes:
    """How the import's writes to flags and experiments are made: directly (``manage.py
    import_config``, an operator's tool), or, over the API, through approvals as the API's own writes
    are (``hold_protected``): a change to an environment that requires approval is then held as a
    change request (``features.governance``) and listed in ``held``, and the rest is applied."""

    def __init__(self, *, hold_protected: bool) -> None:
        self.hold_protected = hold_protected
        self.held: list[dict[str, Any]] = []

    def feature(self, feature: Feature | None, user: AbstractBaseUser | None, run: Any) -> Any:
        if not self.hold_protected:
            return run()
        return feature_write(feature=feature, user=user, run=run)

    def experiment(
        self,
        experiment: Experiment,
        operation: str,
        user: AbstractBaseUser | None,
        run: Any,
        params: Any = None,
    ) -> Any:
        if not self.hold_protected:
            return run()
        return experiment_write(experiment=experiment, operation=operation, user=user, run=run, params=params)

    def holdout(
        self, holdout: Holdout | None, operation: str, user: AbstractBaseUser | None, run: Any
    ) -> Any:
        """A holdout's write (``operation``: create, update, start, stop or delete)."""
        if not self.hold_protected:
            return run()
        return holdout_write(holdout=holdout, operation=operation, user=user, run=run)

    def feature_delete(self, feature: Feature, user: AbstractBaseUser | None) -> None:
        if self.hold_protected:
            feature_delete_governed(feature=feature, user=user)
        else:
            feature_delete(feature=feature, user=user)


def _first_error(detail: Any, path: str = "") -> tuple[str, str]:
    """(field, message) of the first error in a DRF error detail (nested dicts and lists)."""
    if isinstance(detail, Mapping):
        for field, value in detail.items():
            name = field if field != "non_field_errors" else ""
            return _first_error(value, f"{path}.{name}" if path and name else path or name)
    if isinstance(detail, list) and detail:
        for index, value in enumerate(detail):
            if value:
                inner_path = path if not isinstance(value, Mapping | list) else f"{path}[{index + 1}]"
                return _first_error(value, inner_path)
    return path, str(detail)


def _refusal(exc: Exception, *, kind: str, key: str) -> ConfigFileError:
    if isinstance(exc, serializers.ValidationError):
        field, message = _first_error(exc.detail)
    elif isinstance(exc, DjangoValidationError):
        field, message = _first_error(serializers.as_serializer_error(exc))
    elif isinstance(exc, DomainError):
        field, message = exc.field or "", exc.message
    else:
        raise exc
    return ConfigFileError(message, kind=kind, key=key, field=field)


def _valid(serializer: serializers.Serializer) -> dict[str, Any]:
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _changed(change: Change) -> set[str]:
    return {field.field.split(".")[0] for field in change.fields}


# --- each kind -------------------------------------------------------------------------------------
def _environment(item: dict[str, Any], change: Change, user: AbstractBaseUser | None, writes: Writes) -> None:
    instance = Environment.objects.filter(key=item["key"]).first()
    data = item if instance is None else {f: item[f] for f in _changed(change)}
    serializer = EnvironmentSerializer(instance, data=data, partial=instance is not None)
    _valid(serializer)
    serializer.save()


def _metric(item: dict[str, Any], change: Change, user: AbstractBaseUser | None, writes: Writes) -> None:
    instance = Metric.objects.filter(key=item["key"]).first()
    if instance is None:
        metric_create(user=user, **_valid(MetricSerializer(data=item)))
        return
    data = {f: item[f] for f in _changed(change)}
    metric_update(metric=instance, user=user, **_valid(MetricSerializer(instance, data=data, partial=True)))


def _experiment(item: dict[str, Any], change: Change, user: AbstractBaseUser | None, writes: Writes) -> None:
    instance = Experiment.objects.filter(key=item["key"]).first()
    if instance is not None and (problem := instance.managed_problem):
        # An internal experiment comes back with its holdout or safe rollout, not as an experiment.
        raise ConfigFileError(f"{problem} Leave it out of the file.", kind="experiments", key=item["key"])
    writable = {f: v for f, v in item.items() if f not in EXPERIMENT_READ_ONLY}
    if instance is None:
        data = _valid(ExperimentSerializer(data=writable))
        data.pop("version", None)
        instance = experiment_create(user=user, metrics=data.pop("metric_links", []), **data)
    else:
        fields = _changed(change) - EXPERIMENT_READ_ONLY
        if fields:
            serializer = ExperimentSerializer(instance, data={f: item[f] for f in fields}, partial=True)
            data = _valid(serializer)
            if "metric_links" in data:
                data["metrics"] = data.pop("metric_links")
            current = instance
            instance = writes.experiment(
                current, "update", user, lambda: experiment_update(experiment=current, user=user, **data)
            )
    target = item.get("status", instance.status)
    if target == instance.status:
        return
    path = lifecycle_path(instance.status, target)
    if path is None:
        raise ConfigFileError(
            f"cannot go from {instance.status} to {target}: no sequence of start, pause, resume, stop and "
            "archive leads there",
            kind="experiments",
            key=item["key"],
            field="status",
        )
    for action in path:
        extra = {}
        if action == "stop":
            extra = {
                "decision_variant": item.get("decision_variant") or None,
                "reason": item.get("decision_reason") or "",
            }
        current = instance
        instance = writes.experiment(
            current,
            action,
            user,
            lambda action=action, current=current, extra=extra: LIFECYCLE_SERVICES[action](
                experiment=current, user=user, **extra
            ),
            extra,
        )
    record = {field: canonical("experiments", field, item.get(field)) for field in LIFECYCLE_RECORD}
    experiment_lifecycle_restore(experiment=instance, user=user, **record)


def _feature_service_fields(data: dict[str, Any]) -> dict[str, Any]:
    if "prerequisites" in data:
        data["prerequisites"] = [
            {"feature": p["prerequisite"], "value": p["value"]} for p in data["prerequisites"]
        ]
    return data


def _feature(item: dict[str, Any], change: Change, user: AbstractBaseUser | None, writes: Writes) -> None:
    """Everything but the prerequisites, which may name flags created later in the file."""
    instance = Feature.objects.filter(key=item["key"]).first()
    if instance is None:
        data = {f: v for f, v in item.items() if f != "prerequisites"}
        fields = _feature_service_fields(_valid(FeatureSerializer(data=data)))
        writes.feature(None, user, lambda: feature_create(user=user, **fields))
        return
    fields = _changed(change) - {"prerequisites"}
    if not fields:
        return
    data = {f: item[f] for f in fields}
    if "environments" in data:  # only the environments that change: the others keep their rules
        changed_envs = {f.field.split(".")[1] for f in change.fields if f.field.startswith("environments.")}
        data["environments"] = {env: item["environments"][env] for env in changed_envs}
    fields = _feature_service_fields(_valid(FeatureSerializer(instance, data=data, partial=True)))
    writes.feature(instance, user, lambda: feature_update(feature=instance, user=user, **fields))


def _feature_prerequisites(
    item: dict[str, Any], change: Change, user: AbstractBaseUser | None, writes: Writes
) -> None:
    if "prerequisites" not in item or (change.action == "change" and "prerequisites" not in _changed(change)):
        return
    instance = Feature.objects.filter(key=item["key"]).first()
    if instance is None:  # its creation is held for approval: the change request carries no prerequisites yet
        return
    serializer = FeatureSerializer(instance, data={"prerequisites": item["prerequisites"]}, partial=True)
    fields = _feature_service_fields(_valid(serializer))
    writes.feature(instance, user, lambda: feature_update(feature=instance, user=user, **fields))


def _holdout(item: dict[str, Any], change: Change, user: AbstractBaseUser | None, writes: Writes) -> None:
    """Created or changed through the holdouts' services, then started or stopped at the times the
    file records (its internal experiment is created by the start, with the same times)."""
    instance = Holdout.objects.filter(key=item["key"]).first()
    if instance is None:
        writable = {f: v for f, v in item.items() if f not in HOLDOUT_READ_ONLY}
        # A new holdout is a draft, which serves nothing: its creation never waits for approval.
        instance = holdout_create(user=user, **_valid(HoldoutSerializer(data=writable)))
    else:
        fields = _changed(change) - HOLDOUT_READ_ONLY
        if fields:
            serializer = HoldoutSerializer(instance, data={f: item[f] for f in fields}, partial=True)
            data = _valid(serializer)
            current = instance
            instance = writes.holdout(
                current, "update", user, lambda: holdout_update(holdout=current, user=user, **data)
            )
    target = item.get("status", instance.status)
    if target == instance.status:
        return
    path = HOLDOUT_PATHS.get((instance.status, target))
    if path is None:
        raise ConfigFileError(
            f"cannot go from {instance.status} to {target}: a holdout goes from draft to running to stopped",
            kind="holdouts",
            key=item["key"],
            field="status",
        )
    services = {"start": holdout_start, "stop": holdout_stop}
    for action, record in path:
        now = canonical("holdouts", record, item.get(record))
        current = instance
        instance = writes.holdout(
            current,
            action,
            user,
            lambda action=action, current=current, now=now: services[action](
                holdout=current, user=user, now=now
            ),
        )


def _delete(kind: str, key: str, user: AbstractBaseUser | None, writes: Writes) -> None:
    if kind == "features":
        writes.feature_delete(Feature.objects.get(key=key), user)
    elif kind == "experiments":
        experiment_delete(experiment=Experiment.objects.get(key=key))
    elif kind == "holdouts":
        writes.holdout(
            Holdout.objects.get(key=key),
            "delete",
            user,
            lambda: holdout_delete(holdout=Holdout.objects.get(key=key)),
        )
    elif kind == "metrics":
        metric_delete(metric=Metric.objects.get(key=key))
    else:
        environment_delete(environment=Environment.objects.get(key=key))


STEPS = (
    ("environments", _environment),
    ("metrics", _metric),
    ("experiments", _experiment),
    ("features", _feature),
    ("features", _feature_prerequisites),
    ("holdouts", _holdout),
)


def _ordered(kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if kind == "metrics":  # a ratio's denominator first
        return sorted(items, key=lambda item: bool(item.get("denominator")))
    if kind == "experiments":
        # Experiments that end up holding a slice of their layer last: a stopped one is started (and
        # takes a slice) on its way to stopped, which must not find the layer already full.
        return sorted(items, key=lambda item: item.get("status") in LAYER_HOLDING_STATUSES)
    return items


def _step(writes: Writes, kind: str, key: str, run: Any) -> None:
    """One object's writes in a savepoint: a refusal names the object; a write held for approval is
    listed, its change request kept (caught inside the savepoint, which would otherwise undo it)."""
    try:
        with transaction.atomic():
            try:
                run()
            except ApprovalRequired as held:
                writes.held.append({"kind": SINGULAR[kind], "key": key, "change_request": held.payload})
    except (serializers.ValidationError, DjangoValidationError, DomainError) as exc:
        raise _refusal(exc, kind=kind, key=key) from None


def _apply(
    objects: dict[str, list[dict[str, Any]]], plan: Plan, user: AbstractBaseUser | None, writes: Writes
) -> None:
    changes = {(change.kind, change.key): change for change in plan.changes if change.action != "delete"}
    for kind, step in STEPS:
        for item in _ordered(kind, objects[kind]):
            change = changes.get((kind, item["key"]))
            if change is not None:
                _step(
                    writes,
                    kind,
                    item["key"],
                    lambda step=step, item=item, change=change: step(item, change, user, writes),
                )
    deletions = [change for change in plan.changes if change.action == "delete"]
    for kind in DELETE_ORDER:
        for change in deletions:
            if change.kind == kind:
                _step(
                    writes,
                    kind,
                    change.key,
                    lambda kind=kind, change=change: _delete(kind, change.key, user, writes),
                )


def config_import(
    document: Any,
    *,
    user: AbstractBaseUser | None = None,
    dry_run: bool = False,
    prune: bool = False,
    hold_protected: bool = False,
) -> ImportResult:
    """Make the database match ``document`` (all or nothing) and return what changed; with
    ``dry_run``, check everything and write nothing. ``ConfigFileError`` names the first object that
    cannot be imported and why; nothing is written then. With ``hold_protected`` (the API), changes
    to environments that require approval become change requests, listed in ``held``."""
    objects = document_validate(document)
    writes = Writes(hold_protected=hold_protected)
    with transaction.atomic():
        plan = config_plan(objects, prune=prune)
        _apply(objects, plan, user, writes)
        if dry_run:
            transaction.set_rollback(True)
    return ImportResult(plan=plan, held=tuple(writes.held))


@dataclasses.dataclass(frozen=True)
class ImportResult:
    plan: Plan
    held: tuple[dict[str, Any], ...] = ()
