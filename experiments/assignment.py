"""Which variant of an experiment a unit gets: targeting, layer slice, traffic, weighted variant.

Pure functions over plain data (no ORM, no I/O); they run on every ``/api/v1/assign`` call and on
every evaluation of a flag with an experiment rule, so an experiment is compiled once per
configuration load (``experiment_compile``) and ``assign`` only reads attributes.

The steps, in order, each with the reason given when the unit stops there:

1. the experiment must be running (``NOT_RUNNING``: draft, paused, stopped or archived -- a paused
   experiment assigns nobody, and units come back to the same variant when it resumes);
2. the unit's attributes must match the targeting condition (``TARGETING_MISS``);
3. the unit must have a hash value: its ``hash_attribute`` (``id``, the default, is the unit id),
   else its ``fallback_attribute`` (``bucketing.unit_hash``; ``HASH_ATTRIBUTE_MISSING``) -- as in
   GrowthBook's SDKs, a unit that nothing identifies is in no experiment;
4. the unit must fall in the experiment's traffic: in a layer, in the experiment's GrowthBook
   namespace ``[layer, layer_slice_start, layer_slice_start + traffic_allocation)``, else its bucket
   (GrowthBook's hash, version 2, seeded with the experiment's seed) in a variant's range at coverage
   ``traffic_allocation`` (``NOT_IN_TRAFFIC``), all hashing the hash value of step 3;
5. the weighted variant (``ASSIGNED``), with the attribute that was hashed and its value.

Steps 4 and 5 are ``experiments.bucketing.assign_variant``: raising ``traffic_allocation`` never
moves a unit that was in, and experiments sharing a layer never share a unit.

One experiment never fails a request for the others: an experiment whose stored configuration
cannot be compiled, or whose assignment raises (damaged data that saving would refuse, such as
weights whose sum overflows), answers ``ERROR`` for itself, and the failure is logged once per
process and experiment (``decision_failure_log``), not once per request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from experiments.bucketing import UNIT_ID_ATTRIBUTE, assign_variant, unit_hash
from experiments.conditions import Predicate, compile_condition

__all__ = [
    "Assignment",
    "AssignmentReason",
    "CompiledExperiment",
    "assign",
    "decision_failure_log",
    "experiment_compile",
    "not_found",
]

logger = logging.getLogger(__name__)

RUNNING = "running"


class AssignmentReason:
    """Why a unit is, or is not, in an experiment (the ``reason`` of ``/api/v1/assign``)."""

    ASSIGNED = "ASSIGNED"
    NOT_FOUND = "NOT_FOUND"  # no experiment with that key (or it was deleted)
    NOT_RUNNING = "NOT_RUNNING"
    TARGETING_MISS = "TARGETING_MISS"
    # neither the hash attribute nor the fallback attribute has a value that identifies the unit
    HASH_ATTRIBUTE_MISSING = "HASH_ATTRIBUTE_MISSING"
    NOT_IN_TRAFFIC = "NOT_IN_TRAFFIC"  # outside the traffic allocation (or the layer slice)
    ERROR = "ERROR"  # the experiment's stored configuration cannot be used (logged); nobody is in it
    HOLDOUT = "HOLDOUT"  # a holdout keeps the unit out of the experiment (features.holdouts)

    ALL = (
        ASSIGNED,
        NOT_FOUND,
        NOT_RUNNING,
        TARGETING_MISS,
        HASH_ATTRIBUTE_MISSING,
        NOT_IN_TRAFFIC,
        ERROR,
        HOLDOUT,
    )


_FAILURES_LOGGED_MAX = 1000
_failures_logged: set[tuple[str, str, str]] = set()


def decision_failure_log(kind: str, key: str, exc: BaseException) -> None:
    """Log that ``kind`` (``"experiment"``, ``"flag"``) ``key`` failed to compile or to decide.

    With its traceback the first time this process sees that failure, then at debug level: a damaged
    experiment fails every request that asks for it, and one line per request would flood the log.
    """
    seen = (kind, key, type(exc).__name__)
    if seen in _failures_logged:
        logger.debug("%s %s failed again: %s", kind, key, exc)
        return
    if len(_failures_logged) >= _FAILURES_LOGGED_MAX:
        _failures_logged.clear()
    _failures_logged.add(seen)
    logger.error(
        "The %s %s cannot be used; it answers ERROR until its configuration is fixed: %s",
        kind,
        key,
        exc,
        exc_info=exc,
    )


@dataclass(frozen=True, slots=True)
class Assignment:
    """One unit's assignment to one experiment; ``variant`` and ``payload`` are None when not in it.

    ``hash_attribute`` and ``hash_value`` say which id decided (the attribute hashed, ``id`` for the
    unit id, and the text hashed); None when the unit is not in the experiment. ``holdout``: for an
    experiment held out by a holdout, the unit's assignment to the holdout's internal experiment
    (decided first: ``features.evaluation.assign_unit``), an exposure of its own when in it."""

    experiment: str
    variant: str | None
    in_experiment: bool
    reason: str
    payload: Any = None
    hash_attribute: str | None = None
    hash_value: str | None = None
    holdout: Assignment | None = None


@dataclass(frozen=True, slots=True)
class CompiledExperiment:
    """An experiment as the decision plane sees it; built by ``experiment_compile``."""

    key: str
    status: str
    seed: str
    variant_keys: tuple[str, ...]
    weights: tuple[float, ...]
    payloads: tuple[Any, ...]
    traffic_allocation: float
    targeting: Predicate | None  # None: everyone is eligible (the common ``{}``)
    layer: str | None
    layer_slice_start: float | None
    hash_attribute: str  # "id": the unit id
    fallback_attribute: str | None
    # Precomputed answers for units that are not in: they are the same for every unit.
    not_running: Assignment
    targeting_miss: Assignment
    hash_missing: Assignment
    not_in_traffic: Assignment
    failed: Assignment
    # Why its stored configuration cannot be used (it then answers ``failed``); None when it can.
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.status == RUNNING


def experiment_compile(raw: Mapping[str, Any]) -> CompiledExperiment:
    """Compile an experiment's plain data for ``assign``.

    ``raw`` is ``{"key", "status", "seed", "variants": [{"key", "weight", "payload"}],
    "traffic_allocation", "targeting", "layer", "layer_slice_start", "hash_attribute",
    "fallback_attribute"}``; only ``key`` and ``status``
    are required (an experiment that is not running needs nothing else). Data that cannot be
    compiled (malformed targeting, which saving refuses) gives an experiment that answers ``ERROR``.
    """
    key = raw["key"]
    status = raw["status"]
    try:
        return _compile(key, status, raw)
    except Exception as exc:  # noqa: BLE001 - one damaged experiment must not fail the others
        decision_failure_log("experiment", key, exc)
        return _answers(key, status, error=f"{type(exc).__name__}: {exc}")


def _answers(key: str, status: str, **fields: Any) -> CompiledExperiment:
    fields = {
        "seed": key,
        "variant_keys": (),
        "weights": (),
        "payloads": (),
        "traffic_allocation": 0.0,
        "targeting": None,
        "layer": None,
        "layer_slice_start": None,
        "hash_attribute": UNIT_ID_ATTRIBUTE,
        "fallback_attribute": None,
        **fields,
    }
    return CompiledExperiment(
        key=key,
        status=status,
        not_running=Assignment(key, None, False, AssignmentReason.NOT_RUNNING),
        targeting_miss=Assignment(key, None, False, AssignmentReason.TARGETING_MISS),
        hash_missing=Assignment(key, None, False, AssignmentReason.HASH_ATTRIBUTE_MISSING),
        not_in_traffic=Assignment(key, None, False, AssignmentReason.NOT_IN_TRAFFIC),
        failed=Assignment(key, None, False, AssignmentReason.ERROR),
        **fields,
    )


def _compile(key: str, status: str, raw: Mapping[str, Any]) -> CompiledExperiment:
    variants = raw.get("variants") or ()
    targeting = raw.get("targeting") or {}
    layer = raw.get("layer") or None
    layer_slice_start = raw.get("layer_slice_start")
    if status == RUNNING and (len(variants) < 1 or (layer is not None and layer_slice_start is None)):
        # Starting an experiment validates both, so this is damaged data: serve nobody rather than fail.
        logger.error(
            "Experiment %s is running without variants or without its layer slice; assigning nobody.", key
        )
        status = "invalid"
    return _answers(
        key,
        status,
        seed=raw.get("seed") or key,
        variant_keys=tuple(v["key"] for v in variants),
        weights=tuple(float(v.get("weight", 1.0)) for v in variants),
        payloads=tuple(v.get("payload") for v in variants),
        traffic_allocation=float(raw.get("traffic_allocation", 1.0)),
        # Lenient, as GrowthBook's SDKs: a stored part saving would refuse today matches nobody.
        targeting=compile_condition(targeting, strict=False) if targeting else None,
        layer=layer,
        layer_slice_start=layer_slice_start if layer is not None else None,
        hash_attribute=raw.get("hash_attribute") or UNIT_ID_ATTRIBUTE,
        fallback_attribute=raw.get("fallback_attribute") or None,
    )


def assign(experiment: CompiledExperiment, unit_id: str, attributes: Mapping[str, Any]) -> Assignment:
    """The unit's assignment: deterministic for (experiment seed, hash value) and the attributes.

    Never raises: an experiment that cannot decide answers ``ERROR`` (and is logged).
    """
    if experiment.status != RUNNING:
        return experiment.not_running
    if experiment.error is not None:
        return experiment.failed
    try:
        if experiment.targeting is not None and not experiment.targeting(attributes):
            return experiment.targeting_miss
        if experiment.hash_attribute == UNIT_ID_ATTRIBUTE:  # the common case, without a lookup
            hash_attribute, hash_value = UNIT_ID_ATTRIBUTE, unit_id
        else:
            found = unit_hash(unit_id, attributes, experiment.hash_attribute, experiment.fallback_attribute)
            if found is None:
                return experiment.hash_missing
            hash_attribute, hash_value = found
        index = assign_variant(
            seed=experiment.seed,
            unit_id=hash_value,
            weights=experiment.weights,
            traffic_allocation=experiment.traffic_allocation,
            layer=experiment.layer,
            layer_slice_start=experiment.layer_slice_start,
        )
    except Exception as exc:  # noqa: BLE001 - one damaged experiment must not fail the others
        decision_failure_log("experiment", experiment.key, exc)
        return experiment.failed
    if index is None:
        return experiment.not_in_traffic
    return Assignment(
        experiment.key,
        experiment.variant_keys[index],
        True,
        AssignmentReason.ASSIGNED,
        experiment.payloads[index],
        hash_attribute,
        hash_value,
    )


def not_found(experiment_key: str) -> Assignment:
    """The answer for a key that names no experiment: SDKs keep working after an experiment is deleted."""
    return Assignment(experiment_key, None, False, AssignmentReason.NOT_FOUND)
