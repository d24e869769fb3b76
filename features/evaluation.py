"""Flag evaluation: the value of a feature for one unit, and why. Pure: no ORM, no I/O.

``features.config`` builds an environment's *snapshot* from the database (plain JSON-able data,
shared through the cache); ``config_compile`` turns it into a ``CompiledConfig`` once per process
and version (conditions compiled to predicates); ``evaluate_feature`` then answers in a few
microseconds.

Evaluation order (the contract's "Feature" and "OFREP" sections):

1. The environment is off for the feature: ``default_value``, reason ``DISABLED``.
1b. Holdout (``features.holdouts.models``): a flag held out by a running holdout serving the
   environment hashes the unit into the holdout's internal experiment (``config.holdouts``: seed,
   hash attribute, coverage 2 × percentage, two equal variants ``holdout`` and ``general``); a unit
   in ``holdout`` gets ``default_value``, reason ``HOLDOUT``, variant ``holdout`` (OFREP: ``DEFAULT``);
   a unit in either variant is exposed to it. This comes before prerequisites, as GrowthBook's
   payload puts the holdout's rule first (``features.growthbook``).
2. Prerequisites: each prerequisite flag is evaluated for the same unit and attributes (its own
   environment switch, prerequisites and rules apply); if any value differs from the required one,
   ``default_value`` with reason ``PREREQUISITE_FAILED``. Saving refuses cycles; a depth limit
   (``MAX_PREREQUISITE_DEPTH``) guards against one anyway and fails the prerequisite.
   OpenFeature's reasons are a closed list, so OFREP answers ``DEFAULT`` for it (``ofrep_reason``);
   ``/api/v1/evaluate`` keeps the precise reason.
3. Rules in order, the first that applies wins:
   ``force`` -- the condition matches: its value, ``TARGETING_MATCH``;
   ``rollout`` -- the condition matches and the unit is in ``bucketing.in_rollout(feature_key,
   hash value, coverage)`` (GrowthBook's ``isIncludedInRollout`` with the feature key as seed, hash
   version 2; the hash value is the rule's ``hash_attribute``, ``id`` = the unit id by default, else
   its ``fallback_attribute``: ``bucketing.unit_hash``; a unit without one is not in): its value,
   ``SPLIT``. A rollout under a safe rollout (snapshot key ``monitor``: its internal experiment,
   ``features.models.SafeRollout``) also exposes every matching unit to that experiment,
   ``treatment`` inside the rollout and ``control`` outside (the unit then falls through and its
   exposure rides on whatever answers it);
   ``experiment`` -- the condition matches and the experiment assigns the unit
   (``experiments.assignment.assign``; only a running experiment assigns anyone, hashing the
   experiment's hash attribute): the variant's value, ``SPLIT``, ``variant`` = the variant key. A
   unit outside the experiment falls through. An experiment held out by a holdout first decides the
   holdout (before the rule's condition, as the SDK checks a rule's parent conditions first): a
   held-out unit falls through, as if outside the experiment.
4. No rules at all: ``default_value``, ``STATIC``. Rules, none applied: ``default_value``, ``DEFAULT``.

Conditions are compiled leniently (``experiments.conditions``): a stored part that saving refuses
today, such as a pattern RE2 cannot run, matches nobody, as GrowthBook's specification says.

One flag never fails a request for the others: a flag whose stored rules cannot be compiled, or
whose evaluation raises (damaged data that saving would refuse), answers ``default_value`` with
reason ``ERROR`` and variant ``error``; an experiment rule whose experiment cannot decide
(``experiments.assignment``: reason ``ERROR``) does not apply, like one the unit is not in. Failures
are logged once per process and flag (``decision_failure_log``).

``variant`` is always set: the experiment's variant key, else ``rule-N`` (N counts the
environment's rules from 1, in order), ``default``, ``disabled`` or ``prerequisite-failed``.

Values are served exactly as stored (JSON), so a number keeps its kind: ``0.25`` and ``1.0`` stay
floats, ``3`` stays an integer. The number type does not record whether the author meant an
integer or a float; what was saved is what is served, and an SDK should ask for the same kind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from experiments.assignment import (
    Assignment,
    AssignmentReason,
    CompiledExperiment,
    assign,
    decision_failure_log,
    experiment_compile,
    not_found,
)
from experiments.bucketing import UNIT_ID_ATTRIBUTE, in_rollout, unit_hash
from experiments.conditions import Predicate, compile_condition

__all__ = [
    "MAX_PREREQUISITE_DEPTH",
    "CompiledConfig",
    "CompiledFeature",
    "CompiledRule",
    "GENERAL",
    "HELD_OUT",
    "assign_unit",
    "Evaluation",
    "Reason",
    "config_compile",
    "holdout_compile",
    "evaluate_all",
    "evaluate_feature",
    "ofrep_reason",
    "snapshot_version",
]

MAX_PREREQUISITE_DEPTH = 10

FORCE, ROLLOUT, EXPERIMENT = "force", "rollout", "experiment"
# The variants of a holdout's internal experiment, in order: the held-out units are the control, the
# others in its coverage are the measurement sample of the general population.
HELD_OUT, GENERAL = "holdout", "general"


class Reason:
    STATIC = "STATIC"
    TARGETING_MATCH = "TARGETING_MATCH"
    SPLIT = "SPLIT"
    DEFAULT = "DEFAULT"
    DISABLED = "DISABLED"
    PREREQUISITE_FAILED = "PREREQUISITE_FAILED"
    ERROR = "ERROR"  # the flag's stored configuration cannot be used (logged): its default value
    HOLDOUT = "HOLDOUT"  # the unit is held out of the flag by a holdout: its default value

    ALL = (STATIC, TARGETING_MATCH, SPLIT, DEFAULT, DISABLED, PREREQUISITE_FAILED, ERROR, HOLDOUT)


_OFREP_REASONS = {Reason.PREREQUISITE_FAILED: Reason.DEFAULT, Reason.HOLDOUT: Reason.DEFAULT}


def ofrep_reason(reason: str) -> str:
    """The OpenFeature reason for ours: OpenFeature has no PREREQUISITE_FAILED or HOLDOUT, so DEFAULT."""
    return _OFREP_REASONS.get(reason, reason)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A flag's value for one unit. ``experiment`` is set when an experiment rule served the value:
    the unit was exposed to (``experiment``, ``variant``); ``exposures`` lists every exposure of the
    evaluation as ``(experiment, variant, hash attribute used)``, including those of prerequisite
    flags served by an experiment."""

    key: str
    value: Any
    variant: str
    reason: str
    experiment: str | None = None
    exposures: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CompiledRule:
    kind: str
    label: str  # "rule-N"
    condition: Predicate | None  # None: everyone
    coverage: float = 0.0
    experiment: str | None = None
    hash_attribute: str = UNIT_ID_ATTRIBUTE  # rollout rules: the attribute hashed ("id": the unit id)
    fallback_attribute: str | None = None
    # The answers, made once: ``hit`` for force and rollout rules, ``hits`` by variant key for experiments.
    hit: Evaluation | None = None
    hits: Mapping[str, Evaluation] | None = None


@dataclass(frozen=True, slots=True)
class CompiledFeature:
    key: str
    type: str
    default: Any
    enabled: bool
    rules: tuple[CompiledRule, ...]
    prerequisites: tuple[tuple[str, Any], ...]
    # The answers that do not depend on the unit, made once.
    disabled: Evaluation
    static: Evaluation
    fallthrough: Evaluation
    prerequisite_failed: Evaluation
    failed: Evaluation
    # Why its stored configuration cannot be used (it then answers ``failed``); None when it can.
    error: str | None = None
    holdout: str | None = None  # the running holdout that holds the flag out here, if any
    held_out: Evaluation | None = None


@dataclass(frozen=True, slots=True)
class CompiledConfig:
    """One environment's flags and experiments, ready to evaluate; ``version`` is the ETag."""

    environment_id: int
    environment: str
    version: str
    features: Mapping[str, CompiledFeature]
    experiments: Mapping[str, CompiledExperiment]
    built_at: float  # wall-clock time the snapshot was read from the database
    generation: str | None = None  # the cache generation it was loaded under (features.config)
    # The plain snapshot it was compiled from (``features.growthbook`` writes the SDK payload from it).
    snapshot: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    # Running holdouts by key, as their internal experiments; and experiment key -> its holdout's key.
    holdouts: Mapping[str, CompiledExperiment] = field(default_factory=dict)
    experiment_holdouts: Mapping[str, str] = field(default_factory=dict)


def snapshot_version(snapshot: Mapping[str, Any]) -> str:
    """A content hash of a snapshot's flags and experiments: equal content, equal version (ETag).

    JSON keeps ``1`` and ``1.0`` apart, so a value changing kind changes the version too.
    """
    content = {
        "environment": snapshot["environment"],
        "features": snapshot["features"],
        "experiments": snapshot["experiments"],
        "holdouts": snapshot.get("holdouts") or {},
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _predicate(condition: Any) -> Predicate | None:
    # Lenient, as GrowthBook's SDKs evaluate the same stored condition: a part that saving would have
    # refused (a pattern RE2 cannot run, an unknown operator) matches nobody instead of failing the flag.
    return compile_condition(condition, strict=False) if condition else None


def _compile_rule(feature_key: str, index: int, raw: Mapping[str, Any]) -> CompiledRule:
    kind = raw["type"]
    label = f"rule-{index + 1}"
    condition = _predicate(raw.get("condition"))
    if kind == FORCE:
        return CompiledRule(
            FORCE,
            label,
            condition,
            hit=Evaluation(feature_key, raw.get("value"), label, Reason.TARGETING_MATCH),
        )
    if kind == ROLLOUT:
        monitor = raw.get("monitor")
        hash_attribute = raw.get("hash_attribute") or UNIT_ID_ATTRIBUTE
        exposed = ((monitor, "treatment", hash_attribute),) if monitor else ()
        return CompiledRule(
            ROLLOUT,
            label,
            condition,
            coverage=float(raw.get("coverage") or 0.0),
            experiment=monitor,
            hash_attribute=hash_attribute,
            fallback_attribute=raw.get("fallback_attribute") or None,
            hit=Evaluation(feature_key, raw.get("value"), label, Reason.SPLIT, None, exposed),
        )
    if kind == EXPERIMENT:
        experiment = raw.get("experiment")
        hits = {
            variant: Evaluation(
                feature_key,
                value,
                variant,
                Reason.SPLIT,
                experiment,
                ((experiment, variant, UNIT_ID_ATTRIBUTE),),
            )
            for variant, value in (raw.get("values") or {}).items()
        }
        return CompiledRule(EXPERIMENT, label, condition, experiment=experiment, hits=hits)
    raise ValueError(f"unknown rule type {kind!r}")


def _compile_feature(key: str, raw: Mapping[str, Any]) -> CompiledFeature:
    default = raw.get("default")
    answers = {
        "key": key,
        "type": raw.get("type", ""),
        "default": default,
        "disabled": Evaluation(key, default, "disabled", Reason.DISABLED),
        "static": Evaluation(key, default, "default", Reason.STATIC),
        "fallthrough": Evaluation(key, default, "default", Reason.DEFAULT),
        "prerequisite_failed": Evaluation(key, default, "prerequisite-failed", Reason.PREREQUISITE_FAILED),
        "failed": Evaluation(key, default, "error", Reason.ERROR),
        "holdout": raw.get("holdout") or None,
        "held_out": Evaluation(key, default, HELD_OUT, Reason.HOLDOUT),
    }
    try:
        return CompiledFeature(
            enabled=bool(raw.get("enabled")),
            rules=tuple(_compile_rule(key, i, rule) for i, rule in enumerate(raw.get("rules") or ())),
            prerequisites=tuple((p["feature"], p["value"]) for p in raw.get("prerequisites") or ()),
            **answers,
        )
    except Exception as exc:  # noqa: BLE001 - one damaged flag must not fail the others
        decision_failure_log("flag", key, exc)
        return CompiledFeature(
            enabled=bool(raw.get("enabled")),
            rules=(),
            prerequisites=(),
            error=f"{type(exc).__name__}: {exc}",
            **answers,
        )


def holdout_compile(key: str, raw: Mapping[str, Any]) -> CompiledExperiment:
    """A snapshot's running holdout as its internal experiment: two equal variants, ``holdout`` and
    ``general``, at coverage ``raw["coverage"]`` (2 × its percentage), hashing its hash attribute
    with its seed -- exactly the experiment rule of its ``$holdout:<key>`` payload feature."""
    return experiment_compile(
        {
            "key": raw.get("experiment") or key,
            "status": "running",
            "seed": raw.get("seed") or key,
            "variants": [{"key": HELD_OUT, "weight": 1.0}, {"key": GENERAL, "weight": 1.0}],
            "traffic_allocation": float(raw.get("coverage") or 0.0),
            "hash_attribute": raw.get("hash_attribute") or UNIT_ID_ATTRIBUTE,
        }
    )


def config_compile(snapshot: Mapping[str, Any], *, generation: str | None = None) -> CompiledConfig:
    """Compile a snapshot (``features.config.snapshot_build``'s plain data) for evaluation.

    Regexes are compiled and predicates built here, once per process and version.
    """
    holdouts = snapshot.get("holdouts") or {}
    return CompiledConfig(
        environment_id=snapshot["environment"]["id"],
        environment=snapshot["environment"]["key"],
        version=snapshot["version"],
        features={key: _compile_feature(key, raw) for key, raw in snapshot["features"].items()},
        experiments={
            key: experiment_compile({"key": key, **raw}) for key, raw in snapshot["experiments"].items()
        },
        built_at=snapshot.get("built_at", time.time()),
        generation=generation,
        snapshot=snapshot,
        holdouts={key: holdout_compile(key, raw) for key, raw in holdouts.items()},
        experiment_holdouts={
            key: raw["holdout"]
            for key, raw in snapshot["experiments"].items()
            if raw.get("holdout") in holdouts
        },
    )


def _holdout_assign(
    config: CompiledConfig, holdout_key: str | None, unit_id: str, attributes: Mapping[str, Any]
) -> Assignment | None:
    """The unit's assignment to a running holdout's internal experiment; None when there is none."""
    if holdout_key is None:
        return None
    holdout = config.holdouts.get(holdout_key)
    if holdout is None:
        return None
    return assign(holdout, unit_id, attributes)


def _holdout_exposure(assignment: Assignment | None) -> tuple[tuple[str, str, str], ...]:
    if assignment is None or not assignment.in_experiment:
        return ()
    return ((assignment.experiment, assignment.variant, assignment.hash_attribute),)


def _same_value(actual: Any, required: Any) -> bool:
    # JSON equality: True is not 1 (Python says it is), 1 equals 1.0.
    return actual == required and (actual is True or actual is False) == (
        required is True or required is False
    )


def _serves_nobody(config: CompiledConfig, rules: tuple[CompiledRule, ...]) -> bool:
    """No rule, or only experiment rules of experiments that are not running: rules that GrowthBook's
    payload leaves out (``features.growthbook``). Its SDKs then never evaluate the flag's prerequisites,
    which the payload writes as the rules' parent conditions, so they track none of the prerequisites'
    exposures; the flag's value is its default whether they pass or not, so neither do we."""
    for rule in rules:
        if rule.kind is not EXPERIMENT:
            return False
        experiment = config.experiments.get(rule.experiment)
        if experiment is not None and experiment.running:
            return False
    return True


def _evaluate_isolated(
    config: CompiledConfig, feature: CompiledFeature, unit_id: str, attributes: Mapping[str, Any]
) -> Evaluation:
    try:
        return _evaluate(config, feature, unit_id, attributes, 0)
    except Exception as exc:  # noqa: BLE001 - one damaged flag must not fail the others
        decision_failure_log("flag", feature.key, exc)
        return feature.failed


def _evaluate(
    config: CompiledConfig, feature: CompiledFeature, unit_id: str, attributes: Mapping[str, Any], depth: int
) -> Evaluation:
    if not feature.enabled:
        return feature.disabled
    if feature.error is not None:
        return feature.failed
    exposures: tuple[tuple[str, str, str], ...] = ()
    if feature.holdout is not None:
        held = _holdout_assign(config, feature.holdout, unit_id, attributes)
        exposures = _holdout_exposure(held)
        if held is not None and held.variant == HELD_OUT:
            return dataclasses.replace(feature.held_out, exposures=exposures)
    if feature.prerequisites and not _serves_nobody(config, feature.rules):
        for prerequisite_key, required in feature.prerequisites:
            prerequisite = config.features.get(prerequisite_key)
            if prerequisite is None or depth >= MAX_PREREQUISITE_DEPTH:
                return feature.prerequisite_failed
            result = _evaluate(config, prerequisite, unit_id, attributes, depth + 1)
            exposures += result.exposures
            if not _same_value(result.value, required):
                if exposures:
                    return Evaluation(
                        feature.key,
                        feature.default,
                        "prerequisite-failed",
                        Reason.PREREQUISITE_FAILED,
                        None,
                        exposures,
                    )
                return feature.prerequisite_failed
    rules = feature.rules
    if not rules:
        result = feature.static
    else:
        result = feature.fallthrough
        for rule in rules:
            if rule.experiment is not None and rule.kind is not ROLLOUT and config.experiment_holdouts:
                # The holdout first, as the SDK checks the rule's parent conditions before its condition
                # (also for an experiment rule that remote evaluation's forced variation made a force rule).
                experiment = config.experiments.get(rule.experiment)
                if experiment is not None and experiment.running and experiment.error is None:
                    holdout_key = config.experiment_holdouts.get(rule.experiment)
                    held = _holdout_assign(config, holdout_key, unit_id, attributes)
                    exposures += _holdout_exposure(held)
                    if held is not None and held.variant == HELD_OUT:
                        continue  # held out: not in the experiment
            if rule.condition is not None and not rule.condition(attributes):
                continue
            kind = rule.kind
            if kind is FORCE:
                result = rule.hit
                break
            if kind is ROLLOUT:
                used = UNIT_ID_ATTRIBUTE
                if rule.hash_attribute == UNIT_ID_ATTRIBUTE:  # the common case, without a lookup
                    hash_value = unit_id
                else:
                    found = unit_hash(unit_id, attributes, rule.hash_attribute, rule.fallback_attribute)
                    if found is None:
                        continue  # nothing identifies the unit: not in the rollout
                    used, hash_value = found
                if in_rollout(feature.key, hash_value, rule.coverage):
                    result = rule.hit
                    if rule.experiment is not None and used != rule.hash_attribute:  # by the fallback
                        result = Evaluation(
                            result.key, result.value, result.variant, result.reason, None,
                            ((rule.experiment, "treatment", used),),
                        )  # fmt: skip
                    break
                if rule.experiment is not None:  # a safe rollout's comparison group
                    exposures += ((rule.experiment, "control", used),)
                continue
            experiment = config.experiments.get(rule.experiment)
            if experiment is None:
                continue
            assignment = assign(experiment, unit_id, attributes)
            if assignment.in_experiment:
                hit = rule.hits.get(assignment.variant)
                if hit is not None:  # saving requires a value for every variant; a gap falls through
                    if assignment.hash_attribute != UNIT_ID_ATTRIBUTE:  # the exposure says which id
                        hit = Evaluation(
                            hit.key,
                            hit.value,
                            hit.variant,
                            hit.reason,
                            hit.experiment,
                            ((hit.experiment, hit.variant, assignment.hash_attribute),),
                        )
                    result = hit
                    break
    if exposures:
        return Evaluation(
            result.key,
            result.value,
            result.variant,
            result.reason,
            result.experiment,
            exposures + result.exposures,
        )
    return result


def evaluate_feature(
    config: CompiledConfig, feature_key: str, unit_id: str, attributes: Mapping[str, Any]
) -> Evaluation | None:
    """The value of ``feature_key`` for the unit, or None when the environment has no such flag.

    Never raises: a flag that cannot be evaluated answers its default with reason ``ERROR``.
    """
    feature = config.features.get(feature_key)
    if feature is None:
        return None
    return _evaluate_isolated(config, feature, unit_id, attributes)


def evaluate_all(config: CompiledConfig, unit_id: str, attributes: Mapping[str, Any]) -> list[Evaluation]:
    """Every flag of the environment for the unit, in key order; one failing flag answers ``ERROR``."""
    return [_evaluate_isolated(config, feature, unit_id, attributes) for feature in config.features.values()]


def assign_unit(
    config: CompiledConfig,
    unit_id: str,
    attributes: Mapping[str, Any],
    experiment_keys: list[str] | None = None,
) -> list[Assignment]:
    """The unit's assignments to ``experiment_keys`` (in that order), or to every running experiment.

    An experiment held out by a running holdout first decides the holdout: a held-out unit is not in
    it (reason ``HOLDOUT``); the answer's ``holdout`` is the unit's assignment to the holdout's
    internal experiment (an exposure to log when ``in_experiment``).
    """
    experiments = config.experiments
    if experiment_keys is None:
        return [
            _assign_held(config, experiment, unit_id, attributes)
            for experiment in experiments.values()
            if experiment.running
        ]
    return [
        _assign_held(config, experiments[key], unit_id, attributes) if key in experiments else not_found(key)
        for key in experiment_keys
    ]


def _assign_held(
    config: CompiledConfig, experiment: CompiledExperiment, unit_id: str, attributes: Mapping[str, Any]
) -> Assignment:
    holdout_key = config.experiment_holdouts.get(experiment.key)
    if holdout_key is None or not experiment.running or experiment.error is not None:
        return assign(experiment, unit_id, attributes)
    held = _holdout_assign(config, holdout_key, unit_id, attributes)
    if held is not None and held.variant == HELD_OUT:
        return Assignment(experiment.key, None, False, AssignmentReason.HOLDOUT, holdout=held)
    assignment = assign(experiment, unit_id, attributes)
    if held is not None and held.in_experiment:
        return dataclasses.replace(assignment, holdout=held)
    return assignment
