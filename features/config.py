"""The compiled flag configuration of an environment, cached so that serving a flag reads no table.

Read through the SDK edge's one cache mechanism (``features.sdk.cache.GenerationMemo``): the
configuration generation, which every committed change replaces; the *snapshot*, plain JSON-able
data built from the database by ``snapshot_build`` (7 queries), shared by every process in Django's
cache under the generation and the environment; and the compiled snapshot
(``features.evaluation.CompiledConfig``) in the process memo. The snapshot's ``version`` is a hash of
its content: the ETag of OFREP bulk answers. An unrelated change (an SDK key) makes a new generation
but the same version, so clients' caches stay valid, and the compiled object is reused.
The safety nets (writes that bypass signals, the cache or the database down) are the memo's.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from experiments.models import UNIT_ID_ATTRIBUTE, Experiment, ExperimentStatus, Variant
from features.evaluation import CompiledConfig, config_compile, snapshot_version
from features.models import (
    Environment,
    Feature,
    FeatureEnvironment,
    FeaturePrerequisite,
    FeatureRule,
    Holdout,
    HoldoutExperiment,
    HoldoutFeature,
    HoldoutStatus,
    RuleType,
    SafeRolloutStatus,
)
from features.sdk.cache import MISSING, GenerationMemo

__all__ = ["config_get", "snapshot_build"]

SNAPSHOT_FORMAT = 4  # bump when the snapshot's shape changes, so old cached snapshots are ignored

_configs: GenerationMemo[CompiledConfig] = GenerationMemo(
    f"flags:snapshot:{SNAPSHOT_FORMAT}", what="the flag configuration"
)


def _compiled(
    snapshot: dict[str, Any], previous: CompiledConfig | None, generation: str | None
) -> CompiledConfig:
    if previous is not None and previous.version == snapshot["version"]:
        # Same content under a new generation: keep the compiled predicates.
        return dataclasses.replace(previous, built_at=snapshot["built_at"], generation=generation)
    return config_compile(snapshot, generation=generation)


def config_get(environment_id: int, *, generation: str | None | object = MISSING) -> CompiledConfig:
    """The compiled configuration of an environment: from memory, the cache or the database.

    ``generation`` may be passed when the caller has just read it (the SDK-key lookup does), to save
    a round trip. Raises ``Environment.DoesNotExist`` for an unknown environment.
    """
    return _configs.get(
        environment_id, lambda: snapshot_build(environment_id), generation=generation, build=_compiled
    )


def snapshot_build(environment_id: int) -> dict[str, Any]:
    """Read one environment's flags and the experiments from the database as plain data.

    Shape: ``{"environment": {"id", "key"}, "features": {key: {"type", "default", "enabled",
    "rules": [{"type", "condition", "value", "coverage", "experiment", "values"[, "monitor"]} (rollouts
    also "hash_attribute", "fallback_attribute")], "prerequisites": [{"feature", "value"}]}}, "experiments":
    {key: {"status", "name", "seed", "variants", "traffic_allocation", "targeting", "layer",
    "layer_slice_start", "hash_attribute", "fallback_attribute"[, "holdout"]}}, "holdouts": {key:
    {"experiment", "seed", "coverage", "hash_attribute"}}, "version", "built_at"}``.
    Running and paused experiments come whole; drafts and stopped ones only with their status.
    Only running holdouts serving this environment are listed; a flag or experiment they hold out
    names its holdout (``"holdout"``). Holdouts' internal experiments are not experiments here: they
    are decided through their holdout (``features.holdouts.models``).
    """
    built_at = time.time()
    environment = Environment.objects.values("id", "key").get(pk=environment_id)
    features: dict[str, dict[str, Any]] = {}
    by_id: dict[int, dict[str, Any]] = {}
    for row in Feature.objects.order_by("key").values("id", "key", "type", "default_value"):
        item = {
            "type": row["type"],
            "default": row["default_value"],
            "enabled": False,
            "rules": [],
            "prerequisites": [],
        }
        features[row["key"]] = item
        by_id[row["id"]] = item
    for row in FeatureEnvironment.objects.filter(environment_id=environment_id).values(
        "feature_id", "enabled"
    ):
        if row["feature_id"] in by_id:
            by_id[row["feature_id"]]["enabled"] = row["enabled"]
    rules = (
        FeatureRule.objects.filter(environment_id=environment_id)
        .order_by("feature_id", "position", "id")
        .values(
            "feature_id",
            "type",
            "condition",
            "value",
            "coverage",
            "hash_attribute",
            "fallback_attribute",
            "experiment__key",
            "variant_values",
            "safe_rollout__status",
            "safe_rollout__experiment__key",
        )
    )
    for row in rules:
        if row["feature_id"] in by_id:
            rule = {
                "type": row["type"],
                "condition": row["condition"] or {},
                "value": row["value"],
                "coverage": row["coverage"],
                "experiment": row["experiment__key"],
                "values": row["variant_values"],
            }
            if row["safe_rollout__status"] == SafeRolloutStatus.MONITORING:
                # A monitored rollout logs its matching units' exposures (features.models.SafeRollout).
                rule["monitor"] = row["safe_rollout__experiment__key"]
            if row["type"] == RuleType.ROLLOUT:
                rule["hash_attribute"] = row["hash_attribute"] or UNIT_ID_ATTRIBUTE
                rule["fallback_attribute"] = row["fallback_attribute"] or None
            by_id[row["feature_id"]]["rules"].append(rule)
    prerequisites = FeaturePrerequisite.objects.order_by("feature_id", "id").values(
        "feature_id", "prerequisite__key", "value"
    )
    for row in prerequisites:
        if row["feature_id"] in by_id:
            by_id[row["feature_id"]]["prerequisites"].append(
                {"feature": row["prerequisite__key"], "value": row["value"]}
            )

    experiments: dict[str, dict[str, Any]] = {}
    live: dict[int, dict[str, Any]] = {}
    live_statuses = (ExperimentStatus.RUNNING, ExperimentStatus.PAUSED)
    rows = (
        Experiment.objects.exclude(status=ExperimentStatus.ARCHIVED)
        .filter(holdout__isnull=True)
        .order_by("key")
        .values(
            "id",
            "key",
            "name",
            "status",
            "hash_seed",
            "traffic_allocation",
            "targeting",
            "layer",
            "layer_slice_start",
            "hash_attribute",
            "fallback_attribute",
        )
    )
    for row in rows:
        if row["status"] not in live_statuses:
            experiments[row["key"]] = {"status": row["status"]}
            continue
        item = {
            "status": row["status"],
            "name": row["name"],
            "seed": row["hash_seed"] or row["key"],
            "variants": [],
            "traffic_allocation": row["traffic_allocation"],
            "targeting": row["targeting"] or {},
            "layer": row["layer"] or None,
            "layer_slice_start": row["layer_slice_start"],
            "hash_attribute": row["hash_attribute"] or UNIT_ID_ATTRIBUTE,
            "fallback_attribute": row["fallback_attribute"] or None,
        }
        experiments[row["key"]] = item
        live[row["id"]] = item
    if live:
        variants = (
            Variant.objects.filter(experiment_id__in=list(live))
            .order_by("experiment_id", "position", "id")
            .values("experiment_id", "key", "name", "weight", "payload")
        )
        for row in variants:
            live[row["experiment_id"]]["variants"].append(
                {"key": row["key"], "name": row["name"], "weight": row["weight"], "payload": row["payload"]}
            )

    holdouts = _holdouts_build(environment["key"], features, experiments)
    snapshot: dict[str, Any] = {
        "environment": environment,
        "features": features,
        "experiments": experiments,
        "holdouts": holdouts,
    }
    snapshot["version"] = snapshot_version(snapshot)
    snapshot["built_at"] = built_at
    return snapshot


def _holdouts_build(
    environment_key: str, features: dict[str, dict[str, Any]], experiments: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The running holdouts serving ``environment_key``; marks the flags and experiments they hold out."""
    holdouts: dict[str, dict[str, Any]] = {}
    ids: dict[int, str] = {}
    rows = (
        Holdout.objects.filter(status=HoldoutStatus.RUNNING, experiment__isnull=False)
        .order_by("key")
        .values("id", "key", "hash_seed", "percentage", "hash_attribute", "environments", "experiment__key")
    )
    for row in rows:
        if environment_key not in (row["environments"] or ()):
            continue
        holdouts[row["key"]] = {
            "experiment": row["experiment__key"],
            "seed": row["hash_seed"] or row["key"],
            "coverage": 2.0 * row["percentage"] / 100.0,
            "hash_attribute": row["hash_attribute"] or UNIT_ID_ATTRIBUTE,
        }
        ids[row["id"]] = row["key"]
    if not ids:
        return holdouts
    for row in HoldoutFeature.objects.filter(holdout_id__in=list(ids)).values("holdout_id", "feature__key"):
        if row["feature__key"] in features:
            features[row["feature__key"]]["holdout"] = ids[row["holdout_id"]]
    links = HoldoutExperiment.objects.filter(holdout_id__in=list(ids)).values("holdout_id", "experiment__key")
    for row in links:
        experiment = experiments.get(row["experiment__key"])
        if experiment is not None and "variants" in experiment:  # running or paused: whole
            experiment["holdout"] = ids[row["holdout_id"]]
    return holdouts
