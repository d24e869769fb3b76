"""The compiled flag configuration of an environment, cached so that serving a flag reads no table.

Three layers, each keyed so that a stale entry can never be mistaken for a fresh one:

1. **The generation**: a random token in Django's cache (``GENERATION_KEY``). Every committed change
   to features, rules, environment switches, prerequisites, experiments, variants, environments and
   SDK keys replaces it (``config_invalidate``, wired to model signals in ``features.signals``).
   A process reads it at most once a second (``FLAGS_GENERATION_CHECK_SECONDS``): that read is the
   only cache round trip of a warm SDK request, and a change made through another process is served
   here within that second (one made through this process, at once).
2. **The snapshot**: plain JSON-able data built from the database by ``snapshot_build`` (7 queries),
   stored in the cache under the generation and the environment, shared by every process.
   Its ``version`` is a hash of its content: the ETag of OFREP bulk answers. An unrelated change (an
   SDK key) makes a new generation but the same version, so clients' caches stay valid.
3. **The process memo**: the compiled snapshot (``features.evaluation.CompiledConfig``) per
   environment, valid while the generation is unchanged; a new generation with the same version
   reuses the compiled object.

Safety nets:

- Writes that bypass model signals (``QuerySet.update()``, raw SQL) are picked up after at most
  ``FLAGS_CONFIG_MAX_AGE`` seconds (default 60): snapshots are rebuilt from the database once they are
  that old.
- The cache (Redis) down: evaluation keeps answering from the process memo, or from a database build
  when the memo is older than the max age. After a cache error the cache is left alone for
  ``CACHE_RETRY_SECONDS``, so a dead Redis costs one timeout, not one per request. A change made while
  the cache is down reaches other processes within the max age.
- Without Redis (the local-memory cache) each process has its own generation; run one process
  (the embedded default), or set ``REDIS_URL`` when running several, or changes made through one
  process reach the others only after the max age.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed
from django.db import DatabaseError
from django.dispatch import receiver

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

__all__ = [
    "CACHE_ERRORS",
    "cache_call",
    "config_get",
    "config_invalidate",
    "current_generation",
    "generation_refresh",
    "max_age",
    "memo_clear",
    "on_change",
    "snapshot_build",
]

logger = logging.getLogger(__name__)

GENERATION_KEY = "flags:generation"
SNAPSHOT_FORMAT = 3  # bump when the snapshot's shape changes, so old cached snapshots are ignored
CACHE_RETRY_SECONDS = 5.0


def _cache_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]  # OSError subclasses from sockets
    try:
        from redis.exceptions import RedisError

        errors.append(RedisError)
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    try:
        from django_redis.exceptions import ConnectionInterrupted

        errors.append(ConnectionInterrupted)
    except ImportError:  # pragma: no cover - django-redis is a dependency
        pass
    return tuple(errors)


# What a cache backend raises when its server is unreachable: anything else is a bug and propagates.
CACHE_ERRORS = _cache_errors()

_MISSING = object()
_cache_down_until = 0.0
_memo: dict[int, CompiledConfig] = {}
_generation_seen: tuple[str | None, float] = (None, 0.0)  # (generation, monotonic time it was read)
_invalidation_listeners: list[Callable[[], None]] = []
_change_listeners: list[Callable[[], None]] = []

T = TypeVar("T")


# Optional settings, read on every SDK request: kept here and refreshed when a test changes them.
_TUNING_DEFAULTS = {"FLAGS_CONFIG_MAX_AGE": 60.0, "FLAGS_GENERATION_CHECK_SECONDS": 1.0}
_tuning: dict[str, float] = {}


def _tuning_value(name: str) -> float:
    value = _tuning.get(name)
    if value is None:
        value = _tuning[name] = float(getattr(settings, name, _TUNING_DEFAULTS[name]))
    return value


@receiver(setting_changed)
def _tuning_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in _TUNING_DEFAULTS:
        _tuning.pop(setting, None)


def max_age() -> float:
    """Seconds a snapshot may be served before it is rebuilt from the database (``FLAGS_CONFIG_MAX_AGE``)."""
    return _tuning_value("FLAGS_CONFIG_MAX_AGE")


def cache_call(operation: Callable[..., T], *args: Any, **kwargs: Any) -> T | object:
    """Run one cache operation; ``_MISSING`` when the cache is unreachable (then skipped for a few seconds)."""
    global _cache_down_until
    if _cache_down_until and time.monotonic() < _cache_down_until:
        return _MISSING
    try:
        result = operation(*args, **kwargs)
    except CACHE_ERRORS as exc:
        if not _cache_down_until:
            logger.warning("Flag cache unavailable (%s); serving from memory and the database.", exc)
        _cache_down_until = time.monotonic() + CACHE_RETRY_SECONDS
        return _MISSING
    if _cache_down_until:
        logger.info("Flag cache available again.")
        _cache_down_until = 0.0
    return result


def cache_missing(value: object) -> bool:
    return value is _MISSING


def generation_check_seconds() -> float:
    return _tuning_value("FLAGS_GENERATION_CHECK_SECONDS")


def _read_generation() -> str | None:
    generation = cache_call(cache.get, GENERATION_KEY)
    if generation is _MISSING:
        return None
    if generation is None:
        cache_call(cache.add, GENERATION_KEY, uuid.uuid4().hex, None)
        generation = cache_call(cache.get, GENERATION_KEY)
        if generation is _MISSING or generation is None:
            return None
    return generation


def current_generation() -> str | None:
    """The cache generation, or None when the cache is unreachable.

    Read from the cache at most every ``FLAGS_GENERATION_CHECK_SECONDS`` (default 1) per process: a
    round trip to Redis costs more than the rest of an OFREP request, and a change made through
    another process may take that long to be seen here (one made here is seen at once).
    """
    global _generation_seen
    generation, read_at = _generation_seen
    now = time.monotonic()
    if read_at and now - read_at < generation_check_seconds():
        return generation
    generation = _read_generation()
    _generation_seen = (generation, now)
    return generation


def generation_refresh() -> str | None:
    """The cache generation read now, past the once-a-second throttle of ``current_generation``.

    For the stream server (``features.streaming``): told that something changed, it must not rebuild
    under the generation it read up to a second ago.
    """
    global _generation_seen
    _generation_seen = (None, 0.0)
    return current_generation()


def config_invalidate() -> None:
    """Make every process reload its configuration: a new generation, which all memos compare with.

    When the cache is unreachable only this process can be told: its memos are dropped, and other
    processes see the change within the max age. Then the change listeners run (``on_change``: the
    streaming notification, in this process and through Redis to the others).
    """
    global _generation_seen
    generation = uuid.uuid4().hex
    if not cache_missing(cache_call(cache.set, GENERATION_KEY, generation, None)):
        _generation_seen = (generation, time.monotonic())
    else:
        _generation_seen = (None, 0.0)
        memo_clear()
        logger.warning(
            "Flag configuration changed while the cache is unavailable; other processes "
            "will see the change within %s seconds.",
            max_age(),
        )
    for listener in list(_change_listeners):
        try:
            listener()
        except Exception:  # noqa: BLE001 - a listener must never fail the write that invalidated
            logger.exception("A flag configuration change listener failed.")


def on_change(listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener`` after every invalidation made in this process; returns its removal.

    Every committed change to what the configuration is built from comes through
    ``config_invalidate``, so this is where streaming learns of changes (``features.streaming``).
    """
    _change_listeners.append(listener)

    def remove() -> None:
        if listener in _change_listeners:
            _change_listeners.remove(listener)

    return remove


def memo_clear() -> None:
    """Drop this process's compiled configurations and SDK-key lookups (they reload on next use)."""
    _memo.clear()
    for listener in _invalidation_listeners:
        listener()


def on_invalidate(listener: Callable[[], None]) -> None:
    """Call ``listener`` when an invalidation cannot reach the cache (the SDK-key memo drops itself)."""
    _invalidation_listeners.append(listener)


def _snapshot_key(generation: str, environment_id: int) -> str:
    return f"flags:snapshot:{SNAPSHOT_FORMAT}:{generation}:{environment_id}"


def config_get(environment_id: int, *, generation: str | None | object = _MISSING) -> CompiledConfig:
    """The compiled configuration of an environment: from memory, the cache or the database.

    ``generation`` may be passed when the caller has just read it (the SDK-key lookup does), to save
    a round trip. Raises ``Environment.DoesNotExist`` for an unknown environment.
    """
    if generation is _MISSING:
        generation = current_generation()
    now = time.time()
    limit = max_age()
    compiled = _memo.get(environment_id)
    if compiled is not None and (generation is None or compiled.generation == generation):
        if now - compiled.built_at < limit:
            return compiled
    snapshot = None
    if generation is not None:
        cached = cache_call(cache.get, _snapshot_key(generation, environment_id))
        if isinstance(cached, dict) and now - cached.get("built_at", 0.0) < limit:
            snapshot = cached
    if snapshot is None:
        try:
            snapshot = snapshot_build(environment_id)
        except DatabaseError:
            if compiled is None:
                raise
            # Better a configuration a minute old than no answer: the next request tries again.
            logger.exception("Could not rebuild the flag configuration; serving the one in memory.")
            return compiled
        if generation is not None:
            cache_call(cache.set, _snapshot_key(generation, environment_id), snapshot, limit)
    if compiled is not None and compiled.version == snapshot["version"]:
        # Same content under a new generation: keep the compiled predicates.
        fresh = dataclasses.replace(compiled, built_at=snapshot["built_at"], generation=generation)
    else:
        fresh = config_compile(snapshot, generation=generation)
    _memo[environment_id] = fresh
    return fresh


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
