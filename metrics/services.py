"""Writes to metrics, shared by the admin and the API."""

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from config.exceptions import Conflict
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


@transaction.atomic
def metric_update(
    *, metric: Metric, user: AbstractBaseUser | None, tags: list[str] | None = None, **fields: Any
) -> Metric:
    _resolve_denominator(fields)
    for name, value in fields.items():
        setattr(metric, name, value)
    metric.full_clean()
    _save(metric, user)
    if tags is not None:
        metric.tags.set(tags)
    return metric


@transaction.atomic
def metric_delete(*, metric: Metric) -> None:
    if metric.experiment_links.exists():
        keys = ", ".join(sorted(metric.experiment_links.values_list("experiment__key", flat=True)))
        raise Conflict(f"The metric is used by experiments ({keys}); detach it from them first.")
    if metric.ratio_metrics.exists():
        keys = ", ".join(sorted(metric.ratio_metrics.values_list("key", flat=True)))
        raise Conflict(f"The metric is the denominator of {keys}; change those first.")
    metric.delete()
