"""Holdouts' writes: create, change, start and stop (``features.holdouts.models``).

The API and the admin both come here, so the rules hold everywhere: who is held out (percentage,
seed, hash attribute, key) is locked once started; a flag or an experiment is in one holdout at most
(the links' unique constraints, reported as a field error here); starting creates the internal
experiment the results are computed on, stopping stops it. Model signals invalidate the flag
configuration on every write (``features.signals``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from config.exceptions import Conflict, LockedWhileRunning, TransitionNotAllowed
from experiments.models import (
    Experiment,
    ExperimentMetric,
    ExperimentStatus,
    ManagedBy,
    MetricRole,
    Variant,
)
from features.holdouts.models import (
    GENERAL,
    HELD_OUT,
    HOLDOUT_LOCKED_FIELDS,
    HOLDOUT_TRANSITIONS,
    Holdout,
    HoldoutExperiment,
    HoldoutFeature,
    HoldoutStatus,
    holdout_experiment_key,
)
from features.models import Feature
from metrics.models import Metric

__all__ = [
    "holdout_create",
    "holdout_delete",
    "holdout_delete_validate",
    "holdout_links_validate",
    "holdout_start",
    "holdout_stop",
    "holdout_update",
]

EDITABLE_FIELDS = ("key", "name", "description", "percentage", "hash_seed", "hash_attribute", "environments")


def _save(holdout: Holdout, user: AbstractBaseUser | None) -> None:
    if user is not None and user.is_authenticated:
        holdout._history_user = user
    holdout.save()


def holdout_links_validate(
    holdout: Holdout, features: Sequence[Feature], experiments: Sequence[Experiment]
) -> None:
    """A flag or an experiment is in one holdout at most; an internal experiment (a holdout's own, a
    safe rollout's) is in none."""
    errors: dict[str, str] = {}
    other = {"holdout_id": holdout.pk} if holdout.pk is not None else {}
    taken = HoldoutFeature.objects.filter(feature__in=features).exclude(**other)
    if names := sorted(taken.values_list("feature__key", flat=True)):
        errors["features"] = f"Already in another holdout (a flag is in one at most): {', '.join(names)}."
    taken = HoldoutExperiment.objects.filter(experiment__in=experiments).exclude(**other)
    if names := sorted(taken.values_list("experiment__key", flat=True)):
        errors["experiments"] = (
            f"Already in another holdout (an experiment is in one at most): {', '.join(names)}."
        )
    # An internal experiment (a holdout's, a safe rollout's) is analysed but never assigns anyone through
    # an experiment rule, so holding it out would hold nobody out.
    internal = sorted(e.key for e in experiments if e.managed_by)
    if internal:
        errors["experiments"] = (
            "An internal experiment (a holdout's or a safe rollout's) cannot be held out; nobody would "
            f"be: {', '.join(internal)}."
        )
    if errors:
        raise ValidationError(errors)


def _links_replace(
    holdout: Holdout, features: Iterable[Feature] | None, experiments: Iterable[Experiment] | None
) -> None:
    # Rows are deleted and created one by one (not in bulk) so that the model signals invalidate the
    # flag configuration (features.signals).
    if features is not None:
        wanted = {f.pk: f for f in features}
        for link in holdout.feature_links.exclude(feature_id__in=list(wanted)):
            link.delete()
        have = set(holdout.feature_links.values_list("feature_id", flat=True))
        for pk, feature in wanted.items():
            if pk not in have:
                HoldoutFeature.objects.create(holdout=holdout, feature=feature)
    if experiments is not None:
        wanted_experiments = {e.pk: e for e in experiments}
        for link in holdout.experiment_links.exclude(experiment_id__in=list(wanted_experiments)):
            link.delete()
        have = set(holdout.experiment_links.values_list("experiment_id", flat=True))
        for pk, experiment in wanted_experiments.items():
            if pk not in have:
                HoldoutExperiment.objects.create(holdout=holdout, experiment=experiment)


def _internal_experiment_sync(holdout: Holdout) -> None:
    """The running holdout's internal experiment follows its metrics, environments and name."""
    experiment = holdout.experiment
    if experiment is None:
        return
    experiment.name = f"Holdout {holdout.name}"[:200]
    experiment.analysis_environments = list(holdout.environments)
    experiment.save(update_fields=["name", "analysis_environments", "updated_at"])
    wanted = {m.pk for m in holdout.metrics.all()}
    experiment.metric_links.exclude(metric_id__in=wanted).delete()
    have = set(experiment.metric_links.values_list("metric_id", flat=True))
    ExperimentMetric.objects.bulk_create(
        ExperimentMetric(experiment=experiment, metric_id=pk, role=MetricRole.PRIMARY)
        for pk in sorted(wanted - have)
    )


@transaction.atomic
def holdout_create(
    *,
    user: AbstractBaseUser | None,
    key: str,
    name: str,
    features: Sequence[Feature] = (),
    experiments: Sequence[Experiment] = (),
    metrics: Sequence[Metric] = (),
    **fields: Any,
) -> Holdout:
    """A new holdout, as a draft: nobody is held out until it starts."""
    holdout = Holdout(key=key, name=name, **fields)
    holdout.full_clean()
    holdout_links_validate(holdout, features, experiments)
    _save(holdout, user)
    holdout.metrics.set(metrics)
    _links_replace(holdout, features, experiments)
    return holdout


@transaction.atomic
def holdout_update(
    *,
    holdout: Holdout,
    user: AbstractBaseUser | None,
    features: Sequence[Feature] | None = None,
    experiments: Sequence[Experiment] | None = None,
    metrics: Sequence[Metric] | None = None,
    **fields: Any,
) -> Holdout:
    """Change a holdout. Its key, percentage, seed and hash attribute are locked once started (409):
    changing them would move units between the held-out and the measured groups."""
    locked = Holdout.objects.select_for_update().get(pk=holdout.pk)
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError({name: "This field cannot be changed here." for name in sorted(unknown)})
    if locked.status != HoldoutStatus.DRAFT:
        changed = [
            name for name in HOLDOUT_LOCKED_FIELDS if name in fields and fields[name] != getattr(locked, name)
        ]
        if changed:
            raise LockedWhileRunning(
                f"{', '.join(changed)} cannot change once the holdout has started: units would change group.",
                field=changed[0],
            )
    for name, value in fields.items():
        setattr(locked, name, value)
    locked.full_clean()
    holdout_links_validate(locked, features or [], experiments or [])
    _save(locked, user)
    if metrics is not None:
        locked.metrics.set(metrics)
    _links_replace(locked, features, experiments)
    if locked.status == HoldoutStatus.RUNNING:
        _internal_experiment_sync(locked)
    return locked


def holdout_delete_validate(*, holdout: Holdout) -> None:
    """Only a draft may be deleted (409 otherwise: a started holdout's results are kept; stop it)."""
    if holdout.status != HoldoutStatus.DRAFT:
        raise Conflict(f"Only a draft holdout can be deleted; this one is {holdout.status}. Stop it instead.")


@transaction.atomic
def holdout_delete(*, holdout: Holdout) -> None:
    """Delete a draft holdout (``holdout_delete_validate``)."""
    locked = Holdout.objects.select_for_update().get(pk=holdout.pk)
    holdout_delete_validate(holdout=locked)
    for link in [*locked.feature_links.all(), *locked.experiment_links.all()]:
        link.delete()  # one by one: the model signals invalidate the flag configuration
    locked.delete()


def _transition(holdout: Holdout, action: str) -> Holdout:
    allowed_from, target = HOLDOUT_TRANSITIONS[action]
    locked = Holdout.objects.select_for_update().get(pk=holdout.pk)
    if locked.status not in allowed_from:
        raise TransitionNotAllowed(
            f"Cannot {action} a holdout that is {locked.status}; {action} works from "
            f"{' or '.join(sorted(allowed_from))}."
        )
    locked.status = target
    return locked


@transaction.atomic
def holdout_start(
    *, holdout: Holdout, user: AbstractBaseUser | None, now: dt.datetime | None = None
) -> Holdout:
    """Draft → running: creates the internal experiment (running; variants ``holdout`` and
    ``general``, 1:1; traffic 2 × percentage; the holdout's seed, hash attribute, metrics and
    environments) and from then on holds units out."""
    now = now or timezone.now()
    locked = _transition(holdout, "start")
    experiment_key = holdout_experiment_key(locked.key)
    if Experiment.objects.filter(key=experiment_key).exists():
        raise ValidationError(
            {"key": f"An experiment is already called “{experiment_key}”: rename the holdout."}
        )
    experiment = Experiment.objects.create(
        key=experiment_key,
        name=f"Holdout {locked.name}"[:200],
        description="Internal: created by a holdout; its results compare the held-out units with an "
        "equal-size sample of everyone else.",
        status=ExperimentStatus.RUNNING,
        owner=user if user is not None and user.is_authenticated else None,
        traffic_allocation=locked.coverage,
        hash_seed=locked.seed,
        hash_attribute=locked.hash_attribute,
        analysis_environments=list(locked.environments),
        started_at=now,
        managed_by=ManagedBy.HOLDOUT,
        managed_by_name=locked.key,
    )
    Variant.objects.create(experiment=experiment, key=HELD_OUT, name="Held out", weight=1.0, position=0)
    Variant.objects.create(
        experiment=experiment, key=GENERAL, name="General population", weight=1.0, position=1
    )
    locked.experiment = experiment
    locked.started_at = now
    _save(locked, user)
    _internal_experiment_sync(locked)
    return locked


@transaction.atomic
def holdout_stop(
    *, holdout: Holdout, user: AbstractBaseUser | None, now: dt.datetime | None = None
) -> Holdout:
    """Running → stopped: nobody is held out any more (held-out flags and experiments serve everyone
    again); the results stay, computed up to the stop."""
    now = now or timezone.now()
    locked = _transition(holdout, "stop")
    locked.stopped_at = now
    _save(locked, user)
    experiment = locked.experiment
    if experiment is not None and experiment.status != ExperimentStatus.STOPPED:
        experiment.status = ExperimentStatus.STOPPED
        experiment.stopped_at = now
        experiment.save(update_fields=["status", "stopped_at", "updated_at"])
    return locked


LIFECYCLE_SERVICES = {"start": holdout_start, "stop": holdout_stop}
