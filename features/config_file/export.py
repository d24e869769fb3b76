"""The workspace as a document: what the API shows of each object, less what is not configuration."""

from __future__ import annotations

from typing import Any

from experiments.models import Experiment
from experiments.serializers import ExperimentSerializer
from features.models import Environment, Feature
from features.serializers import EnvironmentSerializer, FeatureSerializer
from metrics.models import Metric
from metrics.serializers import MetricSerializer

DOCUMENT_VERSION = 1
KINDS = ("environments", "metrics", "experiments", "features")

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


def feature_item(feature: Feature) -> dict[str, Any]:
    return _item(FeatureSerializer(feature, context={"safe_rollout_state": False}).data)


def config_export() -> dict[str, Any]:
    """Every environment, metric, experiment and flag, each kind in a stable order (by key, ratio
    metrics after the metrics they divide by), so the same configuration exports the same text."""
    metrics = sorted(
        Metric.objects.select_related("denominator").prefetch_related("tags"),
        key=lambda metric: (metric.denominator_id is not None, metric.key),
    )
    experiments = Experiment.objects.prefetch_related("variants", "metric_links__metric", "tags").order_by(
        "key"
    )
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
        "experiments": [experiment_item(experiment) for experiment in experiments],
        "features": [feature_item(feature) for feature in features],
    }
