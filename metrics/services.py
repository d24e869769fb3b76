"""Writes to metrics, shared by the admin and the API."""

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from config.exceptions import Conflict, LockedWhileRunning
from metrics.models import Metric


def _resolve_denominator(fields: dict[str, Any]) -> None:
    denominator = fields.get("denominator")
    if isinstance(denominator, str):
        try:
            fields["denominator"] = Metric.objects.get(key=denominator)
        except Metric.DoesNotExist:
            raise ValidationError({"denominator": f"There is no metric “{denominator}”."}) from None


def _save(metric: Metric, user: AbstractBaseUser | None) -> None:
    if user is not None and user.is_authenticated:
        metric._history_user = user
    metric.save()


@transaction.atomic
def metric_create(*, user: AbstractBaseUser | None, tags: list[str] | None = None, **fields: Any) -> Metric:
    _resolve_denominator(fields)
    metric = Metric(**fields)
    if metric.owner_id is None and user is not None and user.is_authenticated:
        metric.owner = user
    metric.full_clean()
    _save(metric, user)
    if tags:
        metric.tags.set(tags)
    return metric


def metric_collecting_experiment_keys(metric: Metric) -> list[str]:
    """The experiments collecting data for ``metric`` now, directly or through a ratio metric that
    divides by it: started and not stopped (running or paused). Read from the experiments' dates, as
    this app does not import experiments (dependencies point one way)."""
    links = metric.experiment_links.model.objects.filter(
        Q(metric=metric) | Q(metric__denominator=metric),
        experiment__started_at__isnull=False,
        experiment__stopped_at__isnull=True,
    )
    return sorted(set(links.values_list("experiment__key", flat=True)))


def metric_type_change_validate(*, metric: Metric, new_type: str) -> None:
    """A metric keeps its type while experiments collect data for it (409): their results would mix
    values of two kinds (a 0/1 conversion becoming a count or a sum) from one day to the next."""
    if metric.pk is None:
        return
    stored = Metric.objects.filter(pk=metric.pk).values_list("type", flat=True).first()
    if stored is None or stored == new_type:
        return
    keys = metric_collecting_experiment_keys(metric)
    if keys:
        raise LockedWhileRunning(
            f"The type of “{metric.key}” cannot change from {stored} to {new_type} while running "
            f"experiments use it ({', '.join(keys)}): their results would mix both kinds of values. "
            "Create a new metric with the new type for new experiments, or stop those experiments first.",
            field="type",
        )


@transaction.atomic
def metric_update(
    *, metric: Metric, user: AbstractBaseUser | None, tags: list[str] | None = None, **fields: Any
) -> Metric:
    _resolve_denominator(fields)
    if "type" in fields:
        metric_type_change_validate(metric=metric, new_type=fields["type"])
    for name, value in fields.items():
        setattr(metric, name, value)
    metric.full_clean()
    _save(metric, user)
    if tags is not None:
        metric.tags.set(tags)
    return metric


def metric_delete_validate(*, metric: Metric) -> None:
    """A metric that experiments use or that ratio metrics divide by cannot be deleted (409)."""
    if metric.experiment_links.exists():
        keys = ", ".join(sorted(metric.experiment_links.values_list("experiment__key", flat=True)))
        raise Conflict(f"The metric is used by experiments ({keys}); detach it from them first.")
    if metric.ratio_metrics.exists():
        keys = ", ".join(sorted(metric.ratio_metrics.values_list("key", flat=True)))
        raise Conflict(f"The metric is the denominator of {keys}; change those first.")


@transaction.atomic
def metric_delete(*, metric: Metric) -> None:
    metric_delete_validate(metric=metric)
    metric.delete()
