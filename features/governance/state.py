"""What a flag, an experiment or a holdout is, as plain JSON data, and the difference between two such states.

A change request shows its change as a diff of these states (before: when proposed; after: what
applying does) and remembers a fingerprint of the part of the state it touches, so applying can tell
whether that part changed in between.
"""

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from experiments.models import Experiment
from features.holdouts.models import Holdout
from features.models import Environment, Feature
from features.services import feature_environments_as_dict

# The fields of an experiment a write may change (as the API names them), and those read only.
EXPERIMENT_WRITABLE = (
    "name",
    "description",
    "hypothesis",
    "tags",
    "variants",
    "traffic_allocation",
    "targeting",
    "layer",
    "hash_seed",
    "metrics",
    "engine",
    "alpha",
    "sequential",
    "sequential_tuning",
    "correction",
    "srm_threshold",
    "prior_mean",
    "prior_stddev",
    "minimum_detectable_effect",
    "analysis_environments",
    "scheduled_start_at",
    "scheduled_stop_at",
)
# What changes who gets what in an experiment serving a protected environment: a start or a stop
# (status), a ramp-up (traffic allocation) and the schedule that starts or stops it later.
EXPERIMENT_GOVERNED = ("status", "traffic_allocation", "scheduled_start_at", "scheduled_stop_at")
# A flag's fields that change what every environment serves (name, description and tags do not).
FEATURE_SERVED_FIELDS = ("type", "default_value", "prerequisites")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def feature_state(feature: Feature) -> dict[str, Any]:
    """The flag as the API shows it (without owner and timestamps), read from the database."""
    feature = Feature.objects.prefetch_related(
        "environment_settings__environment", "rules__environment", "rules__experiment"
    ).get(pk=feature.pk)
    return _jsonable(
        {
            "key": feature.key,
            "name": feature.name,
            "description": feature.description,
            "type": feature.type,
            "default_value": feature.default_value,
            "environments": _every_environment(feature),
            "prerequisites": [
                {"feature": item.prerequisite.key, "value": item.value}
                for item in feature.prerequisites.select_related("prerequisite")
            ],
            "tags": sorted(feature.tags.names()),
        }
    )


def _every_environment(feature: Feature) -> dict[str, Any]:
    """The flag's settings in every environment: one without a row (made after the flag) serves the
    default value, as a switched-off one does, so both read the same and adding the row is no change."""
    settings = {
        key: {"enabled": False, "rules": []} for key in Environment.objects.values_list("key", flat=True)
    }
    settings.update(feature_environments_as_dict(feature))
    return settings


def experiment_state(experiment: Experiment) -> dict[str, Any]:
    """The experiment as the API shows it (the fields a write may change, the status and the version)."""
    experiment = Experiment.objects.get(pk=experiment.pk)
    state: dict[str, Any] = {
        name: getattr(experiment, name)
        for name in EXPERIMENT_WRITABLE
        if name not in ("tags", "variants", "metrics")
    }
    state.update(
        key=experiment.key,
        status=experiment.status,
        version=experiment.version,
        tags=sorted(experiment.tags.names()),
        variants=[
            {"key": v.key, "name": v.name, "weight": v.weight, "payload": v.payload}
            for v in experiment.variants.all()
        ],
        metrics=[
            {"metric": link.metric.key, "role": link.role}
            for link in experiment.metric_links.select_related("metric")
        ],
    )
    return _jsonable(state)


# What a running holdout serves (who is held out, where, of what): changing it needs approval where it
# serves an environment that requires approval. Its name, description and metrics only describe it.
HOLDOUT_SERVED_FIELDS = (
    "percentage",
    "hash_seed",
    "hash_attribute",
    "environments",
    "features",
    "experiments",
)


def holdout_state(holdout: Holdout) -> dict[str, Any]:
    """The holdout as the API shows it (flags, experiments and metrics by key), with its status."""
    holdout = Holdout.objects.get(pk=holdout.pk)
    return _jsonable(
        {
            "key": holdout.key,
            "name": holdout.name,
            "description": holdout.description,
            "status": holdout.status,
            "percentage": holdout.percentage,
            "hash_seed": holdout.hash_seed,
            "hash_attribute": holdout.hash_attribute,
            "environments": list(holdout.environments),
            "features": sorted(holdout.features.values_list("key", flat=True)),
            "experiments": sorted(holdout.experiments.values_list("key", flat=True)),
            "metrics": sorted(holdout.metrics.values_list("key", flat=True)),
        }
    )


def diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """Every difference between two JSON states: ``[{"path", "before", "after"}]``. Objects are
    compared key by key, lists of objects item by item (``rules[2]``, counting from 1); anything
    else as a whole. A key or item that is missing on one side is ``null`` there."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        changes: list[dict[str, Any]] = []
        for key in list(before) + [k for k in after if k not in before]:
            changes += diff(before.get(key), after.get(key), f"{path}.{key}" if path else str(key))
        return changes
    if (
        isinstance(before, list)
        and isinstance(after, list)
        and any(isinstance(item, Mapping) for item in before + after)
    ):
        changes = []
        for index in range(max(len(before), len(after))):
            old = before[index] if index < len(before) else None
            new = after[index] if index < len(after) else None
            if old != new:
                changes.append({"path": f"{path}[{index + 1}]", "before": old, "after": new})
        return changes
    if before != after:
        return [{"path": path, "before": before, "after": after}]
    return []


def scope_of(changes: Iterable[Mapping[str, Any]]) -> list[str]:
    """The parts of a state a diff touches: top-level fields, and ``environments.<key>`` per environment."""
    scope = set()
    for change in changes:
        head, _, rest = change["path"].partition(".")
        head = head.split("[")[0]
        scope.add(f"environments.{rest.split('.')[0].split('[')[0]}" if head == "environments" else head)
    return sorted(scope)


def part(state: Mapping[str, Any] | None, scope: Iterable[str]) -> dict[str, Any]:
    """The parts of ``state`` named by ``scope`` (missing ones as ``null``)."""
    result: dict[str, Any] = {}
    for name in scope:
        head, _, env = name.partition(".")
        if state is None:
            result[name] = None
        elif head == "environments":
            result[name] = state.get("environments", {}).get(env)
        else:
            result[name] = state.get(name)
    return result


def fingerprint(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value``: equal states, equal fingerprints."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, cls=DjangoJSONEncoder)
    return hashlib.sha256(text.encode()).hexdigest()
