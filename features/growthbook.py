"""An environment's flags as GrowthBook's SDK payload (``GET /api/features/{client_key}``). Pure: no ORM.

GrowthBook's SDKs (``build-your-own-sdk.mdx``) download ``{"features": {key: {"defaultValue",
"rules"}}}`` once and evaluate it locally. ``features_payload`` writes an environment's snapshot
(``features.config.snapshot_build``'s plain data) so that an SDK evaluating it gives, for a unit
whose attribute ``id`` is its unit id, exactly what ``features.evaluation`` gives:

- an environment switched off, or a flag whose stored rules cannot be compiled: ``defaultValue``
  alone (our ``DISABLED`` / ``ERROR`` answer the default);
- ``force``: ``{"condition", "force"}``;
- ``rollout``: ``{"condition", "force", "coverage", "hashAttribute", "seed": <flag key>,
  "hashVersion": 2}`` (``bucketing.in_rollout``), ``hashAttribute`` the rule's (``id`` by default);
- ``experiment``: the rule only while its experiment is running (a paused, stopped or unknown
  experiment assigns nobody, so the rule falls through, as if absent), with ``key``, ``variations``
  (the rule's value per variant, in variant order), ``weights`` (normalised, as ``variant_ranges``
  does), ``coverage`` (the traffic allocation; 1 in a layer, whose slice is the ``namespace``
  ``[layer, start, end]``: ``bucketing.assign_variant``), ``hashAttribute`` (the experiment's),
  ``hashVersion: 2``,
  ``seed``, ``meta`` (variant keys and names: the only way variant keys reach an SDK), ``name``,
  ``phase: "0"``, and as ``condition`` the rule's condition and the experiment's targeting together;
- prerequisites: ``parentConditions`` ``[{"id": parent, "condition": {"value": required}}]`` on
  every rule, without ``gate``. A gate answers ``null`` when it fails (the specification's
  ``getFeatureResult(null, "prerequisite")``), while our evaluation answers the default value; a
  failed non-gating parent condition skips the rule, so with every rule skipped the SDK answers
  ``defaultValue``, as we do. A flag left without rules here never evaluates its prerequisites in the
  SDK, so tracks none of their exposures: our evaluation skips them too (``_serves_nobody``).

Holdouts (``features.holdouts.models``), as GrowthBook's back-end writes them: each running holdout
serving the environment that holds something out is a feature ``$holdout:<holdout key>`` with
``defaultValue: "genpop"`` and one experiment rule (``key``: the holdout's internal experiment,
``variations: ["holdoutcontrol", "holdouttreatment"]``, ``weights: [0.5, 0.5]``, ``coverage``: 2 ×
its percentage, its ``hashAttribute`` and ``seed``, ``hashVersion: 2``, ``meta`` keys ``holdout`` and
``general``: our variant keys, so the SDK's tracking callback names them); a held-out flag's first
rule is ``{"parentConditions": [{"id": "$holdout:<key>", "condition": {"value": "holdoutcontrol"}}],
"force": <default value>}`` (not a gate: other units skip it), and an experiment rule of a held-out
experiment carries ``{"id": "$holdout:<key>", "condition": {"value": {"$ne": "holdoutcontrol"}}}``
after its prerequisites' parent conditions, so held-out units skip it. Evaluating the parent runs the
holdout's experiment rule, which fires the tracking callback for units in either variant: the
holdout's exposures, exactly where ``features.evaluation`` logs them.

A fallback attribute (``bucketing.unit_hash``) is written as ``fallbackAttribute`` on the rule and as
a second copy of the rule right after it, hashing the fallback attribute, for units whose hash
attribute identifies nobody (the condition ``_unidentified``: not a non-empty string, not a non-zero
number). GrowthBook's JavaScript SDK reads ``fallbackAttribute`` only with sticky bucketing, and its
Python SDK only in rollouts; the copy makes every SDK, with or without sticky bucketing, hash the same
id as our server. Both copies of an experiment rule have the experiment's key, so tracking sees one
experiment; the SDK's ``result.hashAttribute`` says which id decided.

Not expressible, so left out (our evaluation then falls through too, except as noted): an
experiment rule lacking a value for one of its variants (saving refuses it; we fall through only for
that variant, the payload drops the whole rule).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from experiments.bucketing import layer_namespace
from features.evaluation import GENERAL, HELD_OUT

__all__ = ["HOLDOUT_FEATURE_PREFIX", "feature_payload", "features_payload", "holdout_payload"]

HASH_ATTRIBUTE = "id"  # the unit id, GrowthBook's default
HASH_VERSION = 2
RUNNING = "running"
# GrowthBook's names: the holdout's feature id prefix, its default value and its two variations.
HOLDOUT_FEATURE_PREFIX = "$holdout:"
HOLDOUT_GENPOP, HOLDOUT_CONTROL, HOLDOUT_TREATMENT = "genpop", "holdoutcontrol", "holdouttreatment"
# Our variant keys for those two variations (``features.evaluation.HELD_OUT``, ``GENERAL``).
HOLDOUT_META = ({"key": HELD_OUT, "name": "Held out"}, {"key": GENERAL, "name": "General population"})


def _holdout_parent(holdout_key: str, *, held_out: bool) -> dict[str, Any]:
    """The parent condition "the unit is (``held_out``) / is not held out by ``holdout_key``"."""
    value: Any = HOLDOUT_CONTROL if held_out else {"$ne": HOLDOUT_CONTROL}
    return {"id": HOLDOUT_FEATURE_PREFIX + holdout_key, "condition": {"value": value}}


def holdout_payload(key: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """A snapshot's running holdout as GrowthBook's ``$holdout:<key>`` feature definition."""
    return {
        "defaultValue": HOLDOUT_GENPOP,
        "rules": [
            {
                "key": raw.get("experiment") or key,
                "variations": [HOLDOUT_CONTROL, HOLDOUT_TREATMENT],
                "weights": [0.5, 0.5],
                "coverage": float(raw.get("coverage") or 0.0),
                "hashAttribute": raw.get("hash_attribute") or HASH_ATTRIBUTE,
                "hashVersion": HASH_VERSION,
                "seed": raw.get("seed") or key,
                "meta": [dict(meta) for meta in HOLDOUT_META],
                "name": f"Holdout {key}",
                "phase": "0",
            }
        ],
    }


def _both(first: Mapping[str, Any] | None, second: Mapping[str, Any] | None) -> dict[str, Any] | None:
    conditions = [dict(c) for c in (first, second) if c]
    if not conditions:
        return None
    if len(conditions) == 1:
        return conditions[0]
    return {"$and": conditions}


def _unidentified(attribute: str) -> dict[str, Any]:
    """The condition "``attribute`` identifies nobody" (``bucketing.hash_text`` gives ``""``)."""
    usable = [{attribute: {"$type": "string", "$ne": ""}}, {attribute: {"$type": "number", "$ne": 0}}]
    return {"$not": {"$or": usable}}


def _with_fallback(rule: dict[str, Any]) -> list[dict[str, Any]]:
    """The rule, and when it has a ``fallbackAttribute``, its copy hashing that for unidentified units."""
    fallback = rule.get("fallbackAttribute")
    if not fallback:
        return [rule]
    copy = {name: value for name, value in rule.items() if name != "fallbackAttribute"}
    copy["condition"] = _both(rule.get("condition"), _unidentified(rule["hashAttribute"]))
    copy["hashAttribute"] = fallback
    return [rule, copy]


def _hash_attributes(raw: Mapping[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {"hashAttribute": raw.get("hash_attribute") or HASH_ATTRIBUTE}
    if raw.get("fallback_attribute"):
        attributes["fallbackAttribute"] = raw["fallback_attribute"]
    return attributes


def _experiment_rule(
    raw_rule: Mapping[str, Any], experiment_key: str, experiment: Mapping[str, Any]
) -> dict[str, Any] | None:
    variants = experiment.get("variants") or []
    values = raw_rule.get("values") or {}
    if not variants or any(v["key"] not in values for v in variants):
        return None
    weights = [float(v.get("weight", 1.0)) for v in variants]
    total = math.fsum(weights)
    if total <= 0 or not math.isfinite(total):
        return None
    traffic = float(experiment.get("traffic_allocation", 1.0))
    rule: dict[str, Any] = {}
    condition = _both(raw_rule.get("condition"), experiment.get("targeting"))
    if condition:
        rule["condition"] = condition
    rule.update(
        {
            "key": experiment_key,
            "variations": [values[v["key"]] for v in variants],
            "weights": [w / total for w in weights],
            "coverage": traffic,
            **_hash_attributes(experiment),
            "hashVersion": HASH_VERSION,
            "seed": experiment.get("seed") or experiment_key,
            "meta": [{"key": v["key"], "name": v.get("name") or v["key"]} for v in variants],
            "name": experiment.get("name") or experiment_key,
            "phase": "0",
        }
    )
    layer = experiment.get("layer")
    if layer:
        start = experiment.get("layer_slice_start")
        if start is None:
            return None  # damaged: our evaluation assigns nobody
        rule["coverage"] = 1.0
        rule["namespace"] = list(layer_namespace(layer, float(start), traffic))
    return rule


def feature_payload(
    key: str,
    raw: Mapping[str, Any],
    experiments: Mapping[str, Mapping[str, Any]],
    *,
    running: Collection[str] | None = None,
    broken: bool = False,
    holdouts: Collection[str] = (),
) -> dict[str, Any]:
    """One flag of a snapshot as a GrowthBook feature definition.

    ``experiments`` is the snapshot's experiments; ``running`` the keys of those that assign units
    (default: status ``running``); ``broken`` a flag whose stored rules cannot be compiled;
    ``holdouts`` the keys of the running holdouts (the snapshot's ``holdouts``).
    """
    definition: dict[str, Any] = {"defaultValue": raw.get("default")}
    if not raw.get("enabled") or broken:
        return definition
    parents = [
        {"id": p["feature"], "condition": {"value": p["value"]}} for p in raw.get("prerequisites") or ()
    ]
    rules: list[dict[str, Any]] = []
    if raw.get("holdout") in holdouts:
        rules.append(
            {
                "parentConditions": [_holdout_parent(raw["holdout"], held_out=True)],
                "force": definition["defaultValue"],
            }
        )
    for raw_rule in raw.get("rules") or ():
        kind = raw_rule["type"]
        if kind == "experiment":
            experiment_key = raw_rule.get("experiment")
            experiment = experiments.get(experiment_key) if experiment_key else None
            is_running = (
                experiment_key in running
                if running is not None
                else experiment is not None and experiment.get("status") == RUNNING
            )
            if experiment is None or not is_running:
                continue
            rule = _experiment_rule(raw_rule, experiment_key, experiment)
            if rule is None:
                continue
            held_by = experiment.get("holdout")
            rule_parents = parents
            if held_by in holdouts:
                rule_parents = [*parents, _holdout_parent(held_by, held_out=False)]
        else:
            rule_parents = parents
            rule = {}
            if raw_rule.get("condition"):
                rule["condition"] = raw_rule["condition"]
            rule["force"] = raw_rule.get("value")
            if kind == "rollout":
                rule.update(
                    {
                        "coverage": float(raw_rule.get("coverage") or 0.0),
                        **_hash_attributes(raw_rule),
                        "seed": key,
                        "hashVersion": HASH_VERSION,
                    }
                )
        for each in _with_fallback(rule):
            if rule_parents:
                each["parentConditions"] = rule_parents
            rules.append(each)
    if rules:
        definition["rules"] = rules
    return definition


def features_payload(
    snapshot: Mapping[str, Any],
    *,
    running: Collection[str] | None = None,
    broken: Collection[str] = (),
) -> dict[str, dict[str, Any]]:
    """Every flag of a snapshot (``features.config.snapshot_build``) as GrowthBook's ``features``,
    then each holdout that some flag's rule refers to as ``$holdout:<key>``."""
    experiments = snapshot.get("experiments") or {}
    holdouts = snapshot.get("holdouts") or {}
    features = {
        key: feature_payload(key, raw, experiments, running=running, broken=key in broken, holdouts=holdouts)
        for key, raw in (snapshot.get("features") or {}).items()
    }
    referenced = {
        parent["id"]
        for definition in features.values()
        for rule in definition.get("rules") or ()
        for parent in rule.get("parentConditions") or ()
        if parent["id"].startswith(HOLDOUT_FEATURE_PREFIX)
    }
    for key, raw in holdouts.items():
        if HOLDOUT_FEATURE_PREFIX + key in referenced:
            features[HOLDOUT_FEATURE_PREFIX + key] = holdout_payload(key, raw)
    return features
