"""What an import would do: each object it would create, change or delete, with the fields that differ.

A document's object is compared with the same object as ``export`` shows it. A field the file leaves
out is left as it is (a hand-written file may name only what it sets); values are compared in one
canonical form (a variant's missing name is its key, tags in order, times as instants), so a file
that has been imported once shows no changes the second time.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from django.utils.dateparse import parse_datetime

from experiments.serializers import ExperimentSerializer
from features.config_file.export import (
    DOCUMENT_VERSION,
    KINDS,
    LEFT_OUT,
    environment_item,
    experiment_item,
    feature_item,
    holdout_item,
    holdouts_for_export,
    metric_item,
    ordinary_experiments,
)
from features.holdouts.serializers import HoldoutSerializer
from features.models import Environment, Feature, RuleType
from features.serializers import EnvironmentSerializer, FeatureSerializer
from metrics.serializers import MetricSerializer

SINGULAR = {
    "environments": "environment",
    "metrics": "metric",
    "experiments": "experiment",
    "features": "feature",
    "holdouts": "holdout",
}

# An experiment's record of its lifecycle: set by the transitions themselves, restored from the file
# only by an import that makes the transition (a new experiment, or a status that changes).
LIFECYCLE_RECORD = ("started_at", "stopped_at", "decision_variant", "decision_reason", "layer_slice_start")
# A holdout's: when it started and stopped, restored by the import that starts or stops it.
HOLDOUT_LIFECYCLE_RECORD = ("started_at", "stopped_at")
DATETIME_FIELDS = frozenset({"scheduled_start_at", "scheduled_stop_at", "started_at", "stopped_at"})


class ConfigFileError(ValueError):
    """A document that cannot be imported, naming the object and the reason."""

    def __init__(self, message: str, *, kind: str = "", key: str = "", field: str = "") -> None:
        where = " ".join(part for part in (SINGULAR.get(kind, kind), f"“{key}”" if key else "") if part)
        if field:
            where = f"{where}, {field}" if where else field
        super().__init__(f"{where}: {message}" if where else message)
        self.kind, self.key, self.field, self.reason = kind, key, field, message

    def to_dict(self) -> dict[str, str]:
        return {
            "kind": SINGULAR.get(self.kind, self.kind),
            "key": self.key,
            "field": self.field,
            "message": str(self),
        }


@dataclasses.dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any
    new: Any

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "old": self.old, "new": self.new}


@dataclasses.dataclass(frozen=True)
class Change:
    kind: str  # a kind of the document: environments, metrics, experiments, features
    key: str
    action: str  # create | change | delete
    fields: tuple[FieldChange, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": SINGULAR[self.kind],
            "key": self.key,
            "action": self.action,
            "fields": [field.to_dict() for field in self.fields],
        }

    def lines(self) -> list[str]:
        head = f"{self.action} {SINGULAR[self.kind]} {self.key}"
        if self.action != "change":
            return [head]
        return [head, *(f"    {f.field}: {_short(f.old)} -> {_short(f.new)}" for f in self.fields)]


@dataclasses.dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]

    @property
    def summary(self) -> dict[str, int]:
        counts = {"create": 0, "change": 0, "delete": 0}
        for change in self.changes:
            counts[change.action] += 1
        return counts

    def text(self) -> str:
        if not self.changes:
            return "No changes: the database already matches the file."
        lines = [line for change in self.changes for line in change.lines()]
        counts = self.summary
        lines.append(
            f"{counts['create']} to create, {counts['change']} to change, {counts['delete']} to delete."
        )
        return "\n".join(lines)


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- the document's structure ---------------------------------------------------------------------
# What each kind's objects may hold: the API's fields, less the records left out of exports, plus the
# lifecycle record of experiments.
def _fields(serializer_class: type) -> frozenset[str]:
    return frozenset(serializer_class.Meta.fields) - LEFT_OUT


ALLOWED_FIELDS = {
    "environments": _fields(EnvironmentSerializer),
    "metrics": _fields(MetricSerializer),
    "experiments": _fields(ExperimentSerializer) | {"layer_slice_start"},
    "features": _fields(FeatureSerializer),
    "holdouts": _fields(HoldoutSerializer) - {"experiment", "coverage"},
}


def document_validate(document: Any) -> dict[str, list[dict[str, Any]]]:
    """The document's objects by kind; ``ConfigFileError`` for a document of the wrong shape."""
    if not isinstance(document, Mapping):
        raise ConfigFileError(
            "the file must hold a mapping with version, environments, metrics, experiments, features, holdouts"
        )
    if document.get("version") != DOCUMENT_VERSION:
        raise ConfigFileError(f"version must be {DOCUMENT_VERSION} (this platform's configuration format)")
    unknown = sorted(set(document) - {"version", *KINDS})
    if unknown:
        raise ConfigFileError(f"unknown section {', '.join(unknown)}; the sections are {', '.join(KINDS)}")
    objects: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        items = document.get(kind) or []
        if not isinstance(items, list):
            raise ConfigFileError("must be a list of objects", kind=kind)
        seen: set[str] = set()
        for index, item in enumerate(items, start=1):
            if not isinstance(item, Mapping) or not isinstance(item.get("key"), str) or not item["key"]:
                raise ConfigFileError(f"object {index} must be a mapping with a key", kind=kind)
            key = item["key"]
            if key in seen:
                raise ConfigFileError("appears twice in the file", kind=kind, key=key)
            seen.add(key)
            extra = sorted(set(item) - ALLOWED_FIELDS[kind])
            if extra:
                raise ConfigFileError(
                    f"unknown field {', '.join(extra)}; known: {', '.join(sorted(ALLOWED_FIELDS[kind]))}",
                    kind=kind,
                    key=key,
                )
        objects[kind] = [dict(item) for item in items]
    return objects


# --- canonical values -----------------------------------------------------------------------------
def _instant(value: Any) -> Any:
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is not None:
            return parsed
    return value


def _variant(variant: Any) -> Any:
    if not isinstance(variant, Mapping):
        return variant
    weight = variant.get("weight", 1.0)
    return {
        "key": variant.get("key"),
        "name": variant.get("name") or variant.get("key"),
        "weight": float(weight)
        if isinstance(weight, int | float) and not isinstance(weight, bool)
        else weight,
        "payload": variant.get("payload"),
    }


def _metric_link(link: Any) -> Any:
    if not isinstance(link, Mapping):
        return link
    return {"metric": link.get("metric"), "role": link.get("role") or "primary"}


def rule_canonical(rule: Any) -> Any:
    """A rule as ``features.services.feature_environments_as_dict`` shows it."""
    if not isinstance(rule, Mapping):
        return rule
    item: dict[str, Any] = {"type": rule.get("type"), "condition": rule.get("condition") or {}}
    if rule.get("type") in (RuleType.FORCE, RuleType.ROLLOUT):
        item["value"] = rule.get("value")
    if rule.get("type") == RuleType.ROLLOUT:
        item["coverage"] = rule.get("coverage")
    if rule.get("type") == RuleType.EXPERIMENT:
        item["experiment"] = rule.get("experiment")
        item["values"] = rule.get("values")
    # Fields other helpers' rules may carry (a hash attribute, ...) compare as they are.
    item.update({name: value for name, value in rule.items() if name not in item})
    return item


def canonical(kind: str, field: str, value: Any) -> Any:
    if field == "tags" and isinstance(value, list):
        return sorted(str(tag) for tag in value)
    if field in DATETIME_FIELDS:
        return _instant(value)
    if kind == "experiments" and field == "variants" and isinstance(value, list):
        return [_variant(variant) for variant in value]
    if kind == "holdouts" and field in ("features", "experiments", "metrics") and isinstance(value, list):
        return sorted(str(key) for key in value)
    if kind == "experiments" and field == "metrics" and isinstance(value, list):
        return [_metric_link(link) for link in value]
    if kind == "features" and field == "prerequisites" and isinstance(value, list):
        return [
            {"feature": item.get("feature"), "value": item.get("value", True)}
            if isinstance(item, Mapping)
            else item
            for item in value
        ]
    return value


def _environment_changes(current: Mapping[str, Any], desired: Any) -> list[FieldChange]:
    """A flag's ``environments``: each environment's switch and rules, as far as the file gives them."""
    if not isinstance(desired, Mapping):
        return [FieldChange("environments", current, desired)]
    changes = []
    for env_key, settings in desired.items():
        now = current.get(env_key, {"enabled": False, "rules": []})
        if not isinstance(settings, Mapping):
            changes.append(FieldChange(f"environments.{env_key}", now, settings))
            continue
        if "enabled" in settings and settings["enabled"] != now.get("enabled"):
            changes.append(
                FieldChange(f"environments.{env_key}.enabled", now.get("enabled"), settings["enabled"])
            )
        if "rules" in settings:
            rules = settings["rules"]
            wanted = [rule_canonical(rule) for rule in rules] if isinstance(rules, list) else rules
            if wanted != now.get("rules", []):
                changes.append(FieldChange(f"environments.{env_key}.rules", now.get("rules", []), rules))
    return changes


def object_changes(
    kind: str, current: Mapping[str, Any] | None, desired: Mapping[str, Any]
) -> list[FieldChange]:
    """The fields of ``desired`` that differ from ``current`` (all of them for a new object)."""
    if current is None:
        return [FieldChange(field, None, value) for field, value in desired.items() if field != "key"]
    changes: list[FieldChange] = []
    record = {"experiments": LIFECYCLE_RECORD, "holdouts": HOLDOUT_LIFECYCLE_RECORD}.get(kind, ())
    for field, value in desired.items():
        if field == "key" or field in record:
            continue
        if kind == "features" and field == "environments":
            changes.extend(_environment_changes(current.get("environments") or {}, value))
            continue
        if canonical(kind, field, value) != canonical(kind, field, current.get(field)):
            changes.append(FieldChange(field, current.get(field), value))
    if record and any(change.field == "status" for change in changes):
        changes.extend(
            FieldChange(field, current.get(field), desired[field])
            for field in record
            if field in desired
            and canonical(kind, field, desired[field]) != canonical(kind, field, current.get(field))
        )
    return changes


def current_items(kind: str) -> dict[str, dict[str, Any]]:
    """The database's objects of ``kind`` as the export shows them, by key."""
    from metrics.models import Metric

    if kind == "environments":
        return {env.key: environment_item(env) for env in Environment.objects.all()}
    if kind == "metrics":
        return {
            m.key: metric_item(m)
            for m in Metric.objects.select_related("denominator").prefetch_related("tags")
        }
    if kind == "experiments":
        experiments = ordinary_experiments().prefetch_related("variants", "metric_links__metric", "tags")
        return {e.key: experiment_item(e) for e in experiments}
    if kind == "holdouts":
        return {h.key: holdout_item(h) for h in holdouts_for_export()}
    features = Feature.objects.prefetch_related(
        "tags",
        "environment_settings__environment",
        "rules__environment",
        "rules__experiment",
        "prerequisites__prerequisite",
    )
    return {f.key: feature_item(f) for f in features}


DELETE_ORDER = ("holdouts", "features", "experiments", "metrics", "environments")


def config_plan(objects: Mapping[str, Iterable[Mapping[str, Any]]], *, prune: bool = False) -> Plan:
    """The changes that importing ``objects`` (from ``document_validate``) would make; with ``prune``,
    the deletion of every object the file does not name."""
    changes: list[Change] = []
    currents = {kind: current_items(kind) for kind in KINDS}
    for kind in KINDS:
        for item in objects.get(kind, ()):
            current = currents[kind].get(item["key"])
            fields = object_changes(kind, current, item)
            if current is None:
                changes.append(Change(kind, item["key"], "create", tuple(fields)))
            elif fields:
                changes.append(Change(kind, item["key"], "change", tuple(fields)))
    if prune:
        for kind in DELETE_ORDER:
            named = {item["key"] for item in objects.get(kind, ())}
            changes.extend(Change(kind, key, "delete") for key in sorted(set(currents[kind]) - named))
    return Plan(tuple(changes))
