"""The workspace as a document: what the API shows of each object, less what is not configuration.

Internal experiments (a holdout's ``holdout-<key>``, a safe rollout's) are not exported as
experiments: they belong to their holdout or flag rule, which recreate them when imported.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from experiments.models import Experiment
from experiments.serializers import ExperimentSerializer
from features.holdouts.models import Holdout
from features.holdouts.serializers import HoldoutSerializer
from features.models import Environment, Feature
from features.serializers import EnvironmentSerializer, FeatureSerializer
from metrics.models import Metric
from metrics.serializers import MetricSerializer

DOCUMENT_VERSION = 1
# In the order an import creates them: each kind refers only to kinds before it.
KINDS = ("environments", "metrics", "experiments", "features", "holdouts")

# Records of who and when, and the optimistic-lock counter: they describe a database, not the
# configuration, and would make two exports of the same configuration differ.
LEFT_OUT = frozenset({"owner", "created_at", "updated_at", "version"})


def _item(data: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in data.items() if name not in LEFT_OUT}


def environment_item(environment: Environment) -> dict[str, Any]:
    return _item(EnvironmentSerializer(environment).data)


def metric_item(metric: Metric) -> dict[str, Any]:
    return _item(MetricSerializer(metric).data)


def experiment_item(experiment: Experiment) -> dict[str, Any]:
    item = _item(ExperimentSerializer(experiment).data)
    # Where a started experiment sits in its layer decides who is in it: restored with its status.
    item["layer_slice_start"] = experiment.layer_slice_start
    return item


# A holdout's internal experiment and its share of units follow from the rest of the holdout.
HOLDOUT_DERIVED = frozenset({"experiment", "coverage"})


def holdout_item(holdout: Holdout) -> dict[str, Any]:
    return {
        name: value
        for name, value in _item(HoldoutSerializer(holdout).data).items()
        if name not in HOLDOUT_DERIVED
    }


def ordinary_experiments() -> QuerySet[Experiment]:
    """The experiments a document holds: not the internal ones, which come back with their owner."""
    return Experiment.objects.filter(managed_by="")


def holdouts_for_export() -> QuerySet[Holdout]:
    return Holdout.objects.prefetch_related("features", "experiments", "metrics")


def feature_item(feature: Feature) -> dict[str, Any]:
    return _item(FeatureSerializer(feature, context={"safe_rollout_state": False}).data)


def config_export() -> dict[str, Any]:
    """Every environment, metric, experiment, flag and holdout, each kind in a stable order (by key, ratio
    metrics after the metrics they divide by), so the same configuration exports the same text."""
    metrics = sorted(
        Metric.objects.select_related("denominator").prefetch_related("tags"),
        key=lambda metric: (metric.denominator_id is not None, metric.key),
    )
    experiments = ordinary_experiments().prefetch_related("variants", "metric_links__metric", "tags")
    features = Feature.objects.prefetch_related(
        "tags",
        "environment_settings__environment",
        "rules__environment",
        "rules__experiment",
        "prerequisites__prerequisite",
    ).order_by("key")
    return {
        "version": DOCUMENT_VERSION,
        "environments": [environment_item(env) for env in Environment.objects.order_by("position", "key")],
        "metrics": [metric_item(metric) for metric in metrics],
        "experiments": [experiment_item(experiment) for experiment in experiments.order_by("key")],
        "features": [feature_item(feature) for feature in features],
        "holdouts": [holdout_item(holdout) for holdout in holdouts_for_export().order_by("key")],
    }
