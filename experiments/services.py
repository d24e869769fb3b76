"""Writes to experiments. The admin and the API both call these, so a rule holds everywhere."""

import datetime
import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction
from django.utils import timezone

from config.exceptions import Conflict, DomainError, LockedWhileRunning, StaleVersion, TransitionNotAllowed
from experiments import bucketing
from experiments.models import (
    DELETABLE_STATUSES,
    LOCKED_FIELDS,
    MAX_VARIANT_WEIGHT,
    TRANSITIONS,
    Experiment,
    ExperimentMetric,
    ExperimentStatus,
    MetricRole,
    Variant,
)
from experiments.signals import experiment_started, experiment_stopped
from metrics.models import Metric

logger = logging.getLogger(__name__)

LAYER_HOLDING_STATUSES = (ExperimentStatus.RUNNING, ExperimentStatus.PAUSED)


# --- validation shared by the admin and the API -----------------------------------------------------


def variants_validate(variants: Sequence[Mapping[str, Any]]) -> None:
    """At least two variants, unique slug keys, weights greater than 0 and at most ``MAX_VARIANT_WEIGHT``."""
    if len(variants) < 2:
        raise ValidationError(
            {"variants": "An experiment needs at least two variants: a control and a treatment."}
        )
    seen: set[str] = set()
    for index, variant in enumerate(variants):
        key = variant.get("key") or ""
        try:
            validate_slug(key)
        except ValidationError:
            raise ValidationError(
                {"variants": f"Variant {index + 1}: the key “{key}” must be letters, digits, - or _."}
            ) from None
        if key in seen:
            raise ValidationError({"variants": f"Variant keys must be unique; “{key}” appears twice."})
        seen.add(key)
        weight = variant.get("weight", 1.0)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not math.isfinite(weight)
            or not 0 < weight <= MAX_VARIANT_WEIGHT
        ):
            raise ValidationError(
                {
                    "variants": f"Variant “{key}”: the weight must be a number greater than 0 and at most "
                    f"{MAX_VARIANT_WEIGHT:,} (weights are relative: 1 and 1 split evenly), not {weight!r}."
                }
            )


def metric_links_validate(links: Sequence[Mapping[str, Any]]) -> None:
    seen: set[int] = set()
    for link in links:
        metric = link["metric"]
        if metric.pk in seen:
            raise ValidationError({"metrics": f"The metric “{metric.key}” is attached twice."})
        seen.add(metric.pk)
        if link.get("role", MetricRole.PRIMARY) not in MetricRole.values:
            raise ValidationError(
                {"metrics": f"Role “{link.get('role')}” is not one of {', '.join(MetricRole.values)}."}
            )


def _variant_as_stored(variant: Mapping[str, Any]) -> dict[str, Any]:
    """A variant as ``_replace_variants`` stores it: an empty name is the key, the weight defaults to 1."""
    return {
        "key": variant["key"],
        "name": variant.get("name") or variant["key"],
        "weight": float(variant.get("weight", 1.0)),
        # Canonical JSON, so that 1 and true (equal in Python) or 1 and 1.0 count as different payloads.
        "payload": json.dumps(variant.get("payload"), sort_keys=True),
    }


def _variants_difference(
    current: Sequence[Mapping[str, Any]], proposed: Sequence[Mapping[str, Any]]
) -> str | None:
    """The first way ``proposed`` differs from ``current`` as stored, in words, or None when it does not."""
    if len(proposed) != len(current):
        return f"there would be {len(proposed)} variants instead of {len(current)}"
    for position, (old, new) in enumerate(
        zip(map(_variant_as_stored, current), map(_variant_as_stored, proposed), strict=True), start=1
    ):
        if new["key"] != old["key"]:
            return f"variant {position} would be “{new['key']}” instead of “{old['key']}”"
        for field in ("name", "weight", "payload"):
            if new[field] != old[field]:
                return f"the {field} of variant “{old['key']}” would change"
    return None


def variants_unchanged_validate(*, experiment: Experiment, variants: Sequence[Mapping[str, Any]]) -> None:
    """Once an experiment has started its variants are fixed: keys, names, weights, payloads, count and
    order (409). Sending them unchanged is allowed, so a full object can be written back to ramp up."""
    if not experiment.is_locked:
        return
    difference = _variants_difference(_current_variants(experiment), variants)
    if difference is not None:
        raise LockedWhileRunning(
            f"variants cannot change once the experiment has started (it is {experiment.status}): "
            f"{difference}. Stop it and create a new experiment instead.",
            field="variants",
        )


def _current_variants(experiment: Experiment) -> list[dict[str, Any]]:
    return [
        {"key": v.key, "name": v.name, "weight": v.weight, "payload": v.payload}
        for v in experiment.variants.all()
    ]


def _replace_variants(experiment: Experiment, variants: Sequence[Mapping[str, Any]]) -> None:
    experiment.variants.all().delete()
    Variant.objects.bulk_create(
        Variant(
            experiment=experiment,
            key=v["key"],
            name=v.get("name") or v["key"],
            weight=float(v.get("weight", 1.0)),
            payload=v.get("payload"),
            position=index,
        )
        for index, v in enumerate(variants)
    )


def _replace_metric_links(experiment: Experiment, links: Sequence[Mapping[str, Any]]) -> None:
    experiment.metric_links.all().delete()
    ExperimentMetric.objects.bulk_create(
        ExperimentMetric(
            experiment=experiment, metric=link["metric"], role=link.get("role", MetricRole.PRIMARY)
        )
        for link in links
    )


def _save(experiment: Experiment, user: AbstractBaseUser | None) -> None:
    if user is not None and user.is_authenticated:
        experiment._history_user = user
    experiment.save()


def resolve_metrics(links: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Turn `[{"metric": key, "role": ...}]` into links holding Metric instances (400 for an unknown key)."""
    keys = [link["metric"] for link in links if isinstance(link["metric"], str)]
    found = {m.key: m for m in Metric.objects.filter(key__in=keys)}
    resolved = []
    for link in links:
        metric = link["metric"]
        if isinstance(metric, str):
            if metric not in found:
                raise ValidationError({"metrics": f"There is no metric “{metric}”."})
            metric = found[metric]
        resolved.append({"metric": metric, "role": link.get("role", MetricRole.PRIMARY)})
    return resolved


# --- create and update ---------------------------------------------------------------------------


@transaction.atomic
def experiment_create(
    *,
    user: AbstractBaseUser | None,
    variants: Sequence[Mapping[str, Any]],
    metrics: Sequence[Mapping[str, Any]] = (),
    tags: Sequence[str] = (),
    **fields: Any,
) -> Experiment:
    variants_validate(variants)
    links = resolve_metrics(metrics)
    metric_links_validate(links)
    experiment = Experiment(**fields)
    if experiment.owner_id is None and user is not None and user.is_authenticated:
        experiment.owner = user
    experiment.full_clean()
    _save(experiment, user)
    _replace_variants(experiment, variants)
    _replace_metric_links(experiment, links)
    if tags:
        experiment.tags.set(list(tags))
    return experiment


def _layer_slices(layer: str, *, exclude_pk: int | None) -> list[tuple[float, float]]:
    others = Experiment.objects.filter(
        layer=layer, status__in=LAYER_HOLDING_STATUSES, layer_slice_start__isnull=False
    )
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    return [(e.layer_slice_start, e.traffic_allocation) for e in others]


def traffic_allocation_validate(*, experiment: Experiment, traffic_allocation: float) -> None:
    """While an experiment runs or is paused its traffic allocation can only be raised (409): lowering
    it would drop units already assigned, whose exposures and events would stop midway and bias the
    comparison. A ramp-up of an experiment holding a layer slice must fit next to the other slices (409).
    """
    if traffic_allocation is None or experiment.status not in LAYER_HOLDING_STATUSES:
        return
    if traffic_allocation < experiment.traffic_allocation:
        raise LockedWhileRunning(
            f"The traffic allocation of a {experiment.status} experiment can only be raised: lowering it "
            f"from {experiment.traffic_allocation * 100:g}% to {traffic_allocation * 100:g}% would drop "
            "users who are already in it and bias its results. To reach fewer users, stop this "
            "experiment and start a new one with the smaller allocation.",
            field="traffic_allocation",
        )
    if not experiment.layer or experiment.layer_slice_start is None:
        return
    others = _layer_slices(experiment.layer, exclude_pk=experiment.pk)
    if not bucketing.can_grow(others, experiment.layer_slice_start, traffic_allocation):
        raise Conflict(
            f"Traffic allocation {traffic_allocation:g} does not fit in layer “{experiment.layer}”: other "
            "experiments hold that part of its traffic. Stop one of them or choose a smaller allocation.",
            field="traffic_allocation",
        )


def experiment_unmanaged_validate(*, experiment: Experiment) -> None:
    """An internal experiment (a holdout's or a safe rollout's, ``Experiment.managed_by``) changes only
    through its owner (409 naming it): stopping, re-weighting or deleting it here would break the
    holdout or the safe rollout that relies on it."""
    if problem := experiment.managed_problem:
        raise Conflict(problem)


def _lock(experiment: Experiment, version: int | None) -> Experiment:
    """The row, locked for this transaction; refused when stale (``version``) or internal."""
    locked = Experiment.objects.select_for_update().get(pk=experiment.pk)
    experiment_unmanaged_validate(experiment=locked)
    if version is not None and version != locked.version:
        raise StaleVersion(
            f"This experiment was changed by someone else (version {locked.version}, you sent {version}). "
            "Reload it and apply your change again.",
            field="version",
        )
    return locked


@transaction.atomic
def experiment_update(
    *,
    experiment: Experiment,
    user: AbstractBaseUser | None,
    version: int | None = None,
    variants: Sequence[Mapping[str, Any]] | None = None,
    metrics: Sequence[Mapping[str, Any]] | None = None,
    tags: Sequence[str] | None = None,
    **fields: Any,
) -> Experiment:
    """Apply a partial update. A stale `version` is a 409; so is touching a locked field after start."""
    locked = _lock(experiment, version)
    if locked.is_locked:
        changed = [name for name in LOCKED_FIELDS if name in fields and fields[name] != getattr(locked, name)]
        if changed:
            raise LockedWhileRunning(
                f"{', '.join(sorted(set(changed)))} cannot change once the experiment has started "
                f"(it is {locked.status}). Stop it and create a new experiment instead.",
                field=changed[0],
            )
        if variants is not None:
            variants_unchanged_validate(experiment=locked, variants=variants)
    if variants is not None:
        variants_validate(variants)
    links = None
    if metrics is not None:
        links = resolve_metrics(metrics)
        metric_links_validate(links)
    if "traffic_allocation" in fields:
        traffic_allocation_validate(experiment=locked, traffic_allocation=fields["traffic_allocation"])
    for name, value in fields.items():
        setattr(locked, name, value)
    locked.full_clean(exclude=["key"] if "key" not in fields else None)
    locked.version += 1
    _save(locked, user)
    if variants is not None and not locked.is_locked:
        _replace_variants(locked, variants)
    if links is not None:
        _replace_metric_links(locked, links)
    if tags is not None:
        locked.tags.set(list(tags))
    return locked


def experiment_delete_validate(*, experiment: Experiment) -> None:
    """Only drafts and archived experiments can be deleted (409): a running, paused or stopped one
    holds results and decisions someone may still need. The admin asks this before it confirms."""
    experiment_unmanaged_validate(experiment=experiment)
    if experiment.status not in DELETABLE_STATUSES:
        raise TransitionNotAllowed(
            f"Only draft or archived experiments can be deleted; this one is {experiment.status}. "
            "Stop and archive it first."
        )
    # Flag rules hold the experiment (their foreign key protects it): name them, so the refusal says
    # what to change instead of failing on the protected reference.
    flags = sorted(set(experiment.feature_rules.values_list("feature__key", flat=True)))
    if flags:
        raise Conflict(
            f"Feature flag rules use this experiment ({', '.join(flags)}); "
            "remove those experiment rules first."
        )


@transaction.atomic
def experiment_delete(*, experiment: Experiment) -> None:
    # Checked on the row as locked now: it may have been started since the caller read it.
    experiment_delete_validate(experiment=_lock(experiment, None))
    experiment.delete()


# --- lifecycle -----------------------------------------------------------------------------------


def _transition(experiment: Experiment, action: str, version: int | None) -> Experiment:
    allowed_from, target = TRANSITIONS[action]
    locked = _lock(experiment, version)
    if locked.status not in allowed_from:
        raise TransitionNotAllowed(
            f"Cannot {action} an experiment that is {locked.status}; "
            f"{action} works from {' or '.join(sorted(allowed_from))}."
        )
    locked.status = target
    locked.version += 1
    return locked


@transaction.atomic
def experiment_start(
    *, experiment: Experiment, user: AbstractBaseUser | None, version: int | None = None
) -> Experiment:
    locked = _transition(experiment, "start", version)
    variants_validate(_current_variants(locked))
    if locked.layer:
        start = bucketing.allocate_slice(
            _layer_slices(locked.layer, exclude_pk=locked.pk), locked.traffic_allocation
        )
        if start is None:
            raise Conflict(
                f"Layer “{locked.layer}” has no free {locked.traffic_allocation:.0%} of traffic left; "
                "lower the traffic allocation or stop another experiment in the layer.",
                field="traffic_allocation",
            )
        locked.layer_slice_start = start
    locked.started_at = timezone.now()
    _save(locked, user)
    transaction.on_commit(lambda: experiment_started.send(sender=Experiment, experiment=locked, user=user))
    return locked


@transaction.atomic
def experiment_pause(
    *, experiment: Experiment, user: AbstractBaseUser | None, version: int | None = None
) -> Experiment:
    locked = _transition(experiment, "pause", version)
    _save(locked, user)
    return locked


@transaction.atomic
def experiment_resume(
    *, experiment: Experiment, user: AbstractBaseUser | None, version: int | None = None
) -> Experiment:
    locked = _transition(experiment, "resume", version)
    _save(locked, user)
    return locked


@transaction.atomic
def experiment_stop(
    *,
    experiment: Experiment,
    user: AbstractBaseUser | None,
    decision_variant: str | None = None,
    reason: str = "",
    version: int | None = None,
) -> Experiment:
    """Stop for good, recording the decision: the variant shipped (or none) and why."""
    locked = _transition(experiment, "stop", version)
    if decision_variant and not locked.variants.filter(key=decision_variant).exists():
        keys = ", ".join(locked.variants.values_list("key", flat=True))
        raise ValidationError(
            {"decision_variant": f"“{decision_variant}” is not a variant; choose one of {keys}, or none."}
        )
    locked.decision_variant = decision_variant or ""
    locked.decision_reason = reason
    locked.stopped_at = timezone.now()
    _save(locked, user)
    transaction.on_commit(lambda: experiment_stopped.send(sender=Experiment, experiment=locked, user=user))
    return locked


@transaction.atomic
def experiment_archive(
    *, experiment: Experiment, user: AbstractBaseUser | None, version: int | None = None
) -> Experiment:
    locked = _transition(experiment, "archive", version)
    _save(locked, user)
    return locked


@transaction.atomic
def experiment_lifecycle_restore(
    *,
    experiment: Experiment,
    user: AbstractBaseUser | None,
    started_at: datetime.datetime | None = None,
    stopped_at: datetime.datetime | None = None,
    decision_variant: str | None = None,
    decision_reason: str | None = None,
    layer_slice_start: float | None = None,
) -> Experiment:
    """Put back the record of an experiment's lifecycle as it was elsewhere (``import_config``
    restoring an exported workspace, after the import has made the transitions through the services
    above): when it started and stopped, the decision, and where it sits in its layer. Only what is
    given changes. A layer slice must fit next to the other experiments' slices (409 otherwise):
    where an experiment sits in its layer decides who is in it."""
    locked = _lock(experiment, None)
    if started_at is not None:
        locked.started_at = started_at
    if stopped_at is not None:
        locked.stopped_at = stopped_at
    if decision_variant is not None:
        if decision_variant and not locked.variants.filter(key=decision_variant).exists():
            raise ValidationError(
                {"decision_variant": f"“{decision_variant}” is not a variant of {locked.key}."}
            )
        locked.decision_variant = decision_variant
    if decision_reason is not None:
        locked.decision_reason = decision_reason
    if layer_slice_start is not None and locked.status not in LAYER_HOLDING_STATUSES:
        if not 0 <= layer_slice_start <= 1:
            raise ValidationError({"layer_slice_start": "A layer slice starts between 0 and 1."})
        locked.layer_slice_start = layer_slice_start  # holds nothing: kept as the record of where it was
    elif layer_slice_start is not None and locked.layer:
        others = _layer_slices(locked.layer, exclude_pk=locked.pk)
        try:
            fits = bucketing.can_grow(others, layer_slice_start, locked.traffic_allocation)
        except ValueError as exc:
            raise ValidationError({"layer_slice_start": str(exc)}) from None
        if not fits:
            raise Conflict(
                f"The slice from {layer_slice_start:g} of layer “{locked.layer}” overlaps another "
                "experiment's slice.",
                field="layer_slice_start",
            )
        locked.layer_slice_start = layer_slice_start
    if locked.started_at and locked.stopped_at and locked.stopped_at < locked.started_at:
        raise ValidationError({"stopped_at": "An experiment cannot stop before it started."})
    _save(locked, user)
    return locked


def lifecycle_path(current: str, target: str) -> list[str] | None:
    """The actions that lead from status ``current`` to ``target`` (shortest first; ``[]`` when
    they are the same), or None when no sequence of transitions does (a stopped experiment never
    runs again)."""
    paths: dict[str, list[str]] = {current: []}
    queue = [current]
    while queue:
        status = queue.pop(0)
        if status == target:
            return paths[status]
        for action, (allowed_from, leads_to) in TRANSITIONS.items():
            if status in allowed_from and leads_to not in paths:
                paths[leads_to] = [*paths[status], action]
                queue.append(leads_to)
    return None


LIFECYCLE_SERVICES = {
    "start": experiment_start,
    "pause": experiment_pause,
    "resume": experiment_resume,
    "stop": experiment_stop,
    "archive": experiment_archive,
}


# --- schedules -----------------------------------------------------------------------------------


def experiments_apply_schedules(*, now: datetime.datetime) -> tuple[list[str], list[str]]:
    """Start drafts whose ``scheduled_start_at`` has passed and stop running or paused experiments whose
    ``scheduled_stop_at`` has passed (no decision, reason "scheduled stop"). Returns the keys
    (started, stopped).

    Each transition goes through its lifecycle service, so the same rules hold as for a person: a
    start that does not fit in its layer is refused, logged and tried again at the next run. A draft
    whose whole window has already passed is left alone. Running it twice is harmless: an experiment
    already moved no longer matches, and a concurrent transition is refused by the lifecycle table.
    """
    started: list[str] = []
    stopped: list[str] = []
    due_start = Experiment.objects.filter(
        status=ExperimentStatus.DRAFT, scheduled_start_at__isnull=False, scheduled_start_at__lte=now
    ).order_by("scheduled_start_at", "pk")
    for experiment in due_start:
        if experiment.scheduled_stop_at is not None and experiment.scheduled_stop_at <= now:
            continue  # its whole window has passed: starting it now would only stop it again
        try:
            experiment_start(experiment=experiment, user=None)
        except (DomainError, ValidationError) as exc:
            logger.warning("Scheduled start of %s refused: %s", experiment.key, exc)
            continue
        started.append(experiment.key)
    due_stop = Experiment.objects.filter(
        status__in=LAYER_HOLDING_STATUSES, scheduled_stop_at__isnull=False, scheduled_stop_at__lte=now
    ).order_by("scheduled_stop_at", "pk")
    for experiment in due_stop:
        try:
            experiment_stop(experiment=experiment, user=None, decision_variant=None, reason="scheduled stop")
        except (DomainError, ValidationError) as exc:
            logger.warning("Scheduled stop of %s refused: %s", experiment.key, exc)
            continue
        stopped.append(experiment.key)
    return started, stopped
