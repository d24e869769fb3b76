"""Writes to features, environments and SDK keys, shared by the admin and the API."""

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone

from config.exceptions import Conflict
from experiments.conditions import ConditionError, validate_condition
from experiments.models import (
    UNIT_ID_ATTRIBUTE,
    Experiment,
    hash_attributes_problem,
    validate_hash_attribute,
)
from features.encryption import encryption_key_generate
from features.models import (
    Environment,
    Feature,
    FeatureEnvironment,
    FeaturePrerequisite,
    FeatureRule,
    FeatureType,
    RuleType,
    SafeRollout,
    SafeRolloutStatus,
    SdkKey,
    SdkKeyKind,
    generate_sdk_key,
    hash_sdk_key,
)
from features.safe_rollouts import (
    safe_rollout_settings,
    safe_rollout_settings_clean,
    safe_rollout_start,
    safe_rollout_state,
    safe_rollouts_dropped,
    safe_rollouts_match,
)
from features.sdk.cache import cache_call
from features.webhooks.events import flag_changed_data
from features.webhooks.models import EventType
from features.webhooks.services import event_emit
from metrics.models import Metric

logger = logging.getLogger(__name__)

# --- validation ------------------------------------------------------------------------------------


def value_matches_type(value: Any, feature_type: str) -> bool:
    if feature_type == FeatureType.BOOLEAN:
        return isinstance(value, bool)
    if feature_type == FeatureType.STRING:
        return isinstance(value, str)
    if feature_type == FeatureType.NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if feature_type == FeatureType.JSON:
        return isinstance(value, dict)
    return False


TYPE_HINTS = {
    FeatureType.BOOLEAN: "true or false",
    FeatureType.STRING: "a string",
    FeatureType.NUMBER: "a finite number",
    FeatureType.JSON: "a JSON object",
}


def feature_value_validate(value: Any, feature_type: str, *, field: str, where: str = "") -> None:
    if not value_matches_type(value, feature_type):
        raise ValidationError(
            {
                field: f"{where}{value!r} is not {TYPE_HINTS[feature_type]}, as this {feature_type} feature needs."
            }
        )


def rule_validate(rule: Mapping[str, Any], *, feature_type: str, where: str) -> None:
    """One rule as the contract shapes it; `where` prefixes messages (e.g. "production rule 2: ")."""
    rule_type = rule.get("type")
    if rule_type not in RuleType.values:
        raise ValidationError({"environments": f"{where}type must be one of {', '.join(RuleType.values)}."})
    try:
        validate_condition(rule.get("condition") or {})
    except ConditionError as exc:
        raise ValidationError({"environments": f"{where}condition: {exc}"}) from None
    if rule_type in (RuleType.FORCE, RuleType.ROLLOUT):
        if "value" not in rule:
            raise ValidationError({"environments": f"{where}a {rule_type} rule needs a value."})
        feature_value_validate(rule["value"], feature_type, field="environments", where=where)
    if rule_type == RuleType.ROLLOUT:
        coverage = rule.get("coverage")
        if isinstance(coverage, bool) or not isinstance(coverage, int | float) or not 0 <= coverage <= 1:
            raise ValidationError({"environments": f"{where}coverage must be a number from 0 to 1."})
    hash_attributes_validate(rule, rule_type=rule_type, where=where)
    if rule.get("safe_rollout") is not None:
        safe_rollout_settings_clean(rule["safe_rollout"], rule=rule, where=where)
    if rule_type == RuleType.EXPERIMENT:
        experiment = rule.get("experiment")
        if isinstance(experiment, str):
            experiment = Experiment.objects.filter(key=experiment).first()
        if experiment is None:
            raise ValidationError(
                {"environments": f"{where}there is no experiment “{rule.get('experiment')}”."}
            )
        values = rule.get("values")
        if not isinstance(values, dict):
            raise ValidationError({"environments": f"{where}values must map each variant key to a value."})
        variant_keys = list(experiment.variants.values_list("key", flat=True))
        missing = [key for key in variant_keys if key not in values]
        unknown = [key for key in values if key not in variant_keys]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing a value for {', '.join(missing)}")
            if unknown:
                parts.append(f"{', '.join(unknown)} not a variant of {experiment.key}")
            raise ValidationError(
                {"environments": f"{where}values must cover every variant ({'; '.join(parts)})."}
            )
        for key, value in values.items():
            feature_value_validate(value, feature_type, field="environments", where=f"{where}variant {key}: ")


def hash_attributes_validate(rule: Mapping[str, Any], *, rule_type: str, where: str) -> None:
    """A rollout rule's optional ``hash_attribute`` and ``fallback_attribute``; other rules hash nothing
    of their own (an experiment rule uses its experiment's), so they may only carry the defaults."""
    hash_attribute = rule.get("hash_attribute")
    fallback_attribute = rule.get("fallback_attribute")
    if rule_type != RuleType.ROLLOUT:
        if hash_attribute not in (None, "", UNIT_ID_ATTRIBUTE) or fallback_attribute not in (None, ""):
            raise ValidationError(
                {
                    "environments": f"{where}hash_attribute and fallback_attribute are for rollout rules; "
                    "an experiment rule hashes its experiment's hash attribute."
                }
            )
        return
    for name, value in (("hash_attribute", hash_attribute), ("fallback_attribute", fallback_attribute)):
        if value in (None, ""):
            continue
        try:
            validate_hash_attribute(value)
        except ValidationError as exc:
            raise ValidationError({"environments": f"{where}{name}: {exc.messages[0]}"}) from None
    problem = hash_attributes_problem(hash_attribute or UNIT_ID_ATTRIBUTE, fallback_attribute or "")
    if problem:
        raise ValidationError({"environments": f"{where}fallback_attribute: {problem}"})


def prerequisites_validate(feature: Feature | None, prerequisites: Sequence[Mapping[str, Any]]) -> None:
    """Prerequisites exist and form no cycle (a feature may not depend on itself, even indirectly)."""
    targets = []
    for item in prerequisites:
        target = item["feature"]
        if isinstance(target, str):
            found = Feature.objects.filter(key=target).first()
            if found is None:
                raise ValidationError({"prerequisites": f"There is no feature “{target}”."})
            target = found
        if feature is not None and target.pk == feature.pk:
            raise ValidationError({"prerequisites": "A feature cannot be its own prerequisite."})
        feature_value_validate(
            item.get("value", True), target.type, field="prerequisites", where=f"{target.key}: "
        )
        targets.append(target)
    if feature is None or feature.pk is None:
        return
    edges: dict[int, list[int]] = {}
    for src, dst in FeaturePrerequisite.objects.exclude(feature=feature).values_list(
        "feature_id", "prerequisite_id"
    ):
        edges.setdefault(src, []).append(dst)
    edges[feature.pk] = [t.pk for t in targets]
    # Depth-first search from the edited feature: reaching it again is a cycle.
    stack, seen = list(edges[feature.pk]), set()
    while stack:
        node = stack.pop()
        if node == feature.pk:
            raise ValidationError(
                {"prerequisites": "These prerequisites would form a cycle back to this feature."}
            )
        if node not in seen:
            seen.add(node)
            stack.extend(edges.get(node, []))


# --- writes --------------------------------------------------------------------------------------


def _environment_map() -> dict[str, Environment]:
    return {env.key: env for env in Environment.objects.all()}


def _environments_validate(environments: Mapping[str, Any], feature_type: str) -> dict[str, Environment]:
    known = _environment_map()
    for env_key, settings in environments.items():
        if env_key not in known:
            raise ValidationError(
                {"environments": f"There is no environment “{env_key}”; known: {', '.join(known)}."}
            )
        if not isinstance(settings, Mapping):
            raise ValidationError(
                {"environments": f'{env_key}: expected {{"enabled": bool, "rules": [...]}}.'}
            )
        if "enabled" in settings and not isinstance(settings["enabled"], bool):
            raise ValidationError({"environments": f"{env_key}: enabled must be true or false."})
        rules = settings.get("rules", [])
        if not isinstance(rules, list):
            raise ValidationError({"environments": f"{env_key}: rules must be a list."})
        for index, rule in enumerate(rules):
            if not isinstance(rule, Mapping):
                raise ValidationError({"environments": f"{env_key} rule {index + 1}: must be an object."})
            rule_validate(rule, feature_type=feature_type, where=f"{env_key} rule {index + 1}: ")
    return known


def _write_environments(
    feature: Feature,
    environments: Mapping[str, Any],
    known: dict[str, Environment],
    user: AbstractBaseUser | None = None,
) -> None:
    for env_key, settings in environments.items():
        env = known[env_key]
        if "enabled" in settings:
            FeatureEnvironment.objects.update_or_create(
                feature=feature, environment=env, defaults={"enabled": settings["enabled"]}
            )
        else:
            FeatureEnvironment.objects.get_or_create(feature=feature, environment=env)
        if "rules" in settings:
            _write_rules(feature, env, settings["rules"], user=user)


def _write_rules(
    feature: Feature, env: Environment, rules: Sequence[Mapping[str, Any]], *, user: AbstractBaseUser | None
) -> None:
    """Replace the rules of ``feature`` in ``env``. A rule written as one already there (the same
    condition, value and hash attributes) with the same ``safe_rollout`` settings keeps that rule's row
    and its monitoring (features.safe_rollouts ``safe_rollouts_match``); others are made anew, starting
    their monitoring when they carry one."""
    wanted = [safe_rollout_settings_clean(rule.get("safe_rollout"), rule=rule, where="") for rule in rules]
    existing = list(
        SafeRollout.objects.filter(rule__feature=feature, rule__environment=env)
        .select_related("rule", "experiment")
        .prefetch_related("experiment__metric_links__metric")
        .order_by("rule__position", "rule_id")
    )
    fields_list = [_rule_fields(rule, position) for position, rule in enumerate(rules)]
    kept = safe_rollouts_match(existing, fields_list, wanted)
    kept_rule_ids = [safe.rule_id for safe in kept if safe is not None]
    safe_rollouts_dropped([safe for safe in existing if safe.rule_id not in kept_rule_ids])
    FeatureRule.objects.filter(feature=feature, environment=env).exclude(pk__in=kept_rule_ids).delete()
    for position, (fields, settings, safe) in enumerate(zip(fields_list, wanted, kept, strict=True)):
        if safe is None:
            created = FeatureRule.objects.create(feature=feature, environment=env, **fields)
            if settings is not None:
                if not 0 < (created.coverage or 0) < 1:
                    raise ValidationError(
                        {
                            "environments": f"{env.key} rule {position + 1}: coverage must be between 0 and 1 "
                            "(exclusive) to start a safe rollout, which compares the units inside it with "
                            "those outside."
                        }
                    )
                safe_rollout_start(
                    rule=created,
                    metrics=[Metric.objects.get(key=key) for key in settings["metrics"]],
                    alpha=settings["alpha"],
                    finish_after_hours=settings["finish_after_hours"],
                    user=user,
                )
            continue
        if safe.status == SafeRolloutStatus.MONITORING and fields["coverage"] != safe.rule.coverage:
            raise ValidationError(
                {
                    "environments": f"{env.key} rule {position + 1}: coverage cannot change while its safe "
                    f"rollout is monitoring (its comparison holds the split at {safe.rule.coverage:g}); "
                    "remove safe_rollout to stop monitoring first."
                }
            )
        for name, value in fields.items():
            setattr(safe.rule, name, value)
        safe.rule.save()


def _rule_fields(rule: Mapping[str, Any], position: int) -> dict[str, Any]:
    """A rule as written to the API, as its FeatureRule row stores it."""
    experiment = rule.get("experiment")
    if isinstance(experiment, str):
        experiment = Experiment.objects.get(key=experiment)
    return {
        "position": position,
        "type": rule["type"],
        "condition": rule.get("condition") or {},
        "value": rule.get("value"),
        "coverage": rule.get("coverage"),
        "hash_attribute": rule.get("hash_attribute") or UNIT_ID_ATTRIBUTE,
        "fallback_attribute": rule.get("fallback_attribute") or "",
        "experiment": experiment,
        "variant_values": rule.get("values"),
    }


def _write_prerequisites(feature: Feature, prerequisites: Sequence[Mapping[str, Any]]) -> None:
    feature.prerequisites.all().delete()
    for item in prerequisites:
        target = item["feature"]
        if isinstance(target, str):
            target = Feature.objects.get(key=target)
        FeaturePrerequisite.objects.create(
            feature=feature, prerequisite=target, value=item.get("value", True)
        )


def _save(feature: Feature, user: AbstractBaseUser | None) -> None:
    if user is not None and user.is_authenticated:
        feature._history_user = user
    feature.save()


def feature_clean(feature: Feature) -> None:
    feature.full_clean()
    feature_value_validate(feature.default_value, feature.type, field="default_value")


@transaction.atomic
def feature_create(
    *,
    user: AbstractBaseUser | None,
    environments: Mapping[str, Any] | None = None,
    prerequisites: Sequence[Mapping[str, Any]] = (),
    tags: Sequence[str] = (),
    **fields: Any,
) -> Feature:
    feature = Feature(**fields)
    if feature.owner_id is None and user is not None and user.is_authenticated:
        feature.owner = user
    feature_clean(feature)
    known = _environments_validate(environments or {}, feature.type)
    prerequisites_validate(None, prerequisites)
    _save(feature, user)
    for env in known.values():
        FeatureEnvironment.objects.get_or_create(feature=feature, environment=env)
    _write_environments(feature, environments or {}, known, user=user)
    _write_prerequisites(feature, prerequisites)
    if tags:
        feature.tags.set(list(tags))
    feature_changed_emit(feature=feature, action="created", user=user)
    return feature


@transaction.atomic
def feature_update(
    *,
    feature: Feature,
    user: AbstractBaseUser | None,
    environments: Mapping[str, Any] | None = None,
    prerequisites: Sequence[Mapping[str, Any]] | None = None,
    tags: Sequence[str] | None = None,
    **fields: Any,
) -> Feature:
    feature = Feature.objects.select_for_update().get(pk=feature.pk)
    for name, value in fields.items():
        setattr(feature, name, value)
    feature_clean(feature)
    known = _environments_validate(environments or {}, feature.type)
    if "type" in fields and environments is None:
        # A type change must still fit the rules already stored.
        _environments_validate(feature_environments_as_dict(feature), feature.type)
    if prerequisites is not None:
        prerequisites_validate(feature, prerequisites)
    _save(feature, user)
    _write_environments(feature, environments or {}, known, user=user)
    if prerequisites is not None:
        _write_prerequisites(feature, prerequisites)
    if tags is not None:
        feature.tags.set(list(tags))
    feature_changed_emit(feature=feature, action="updated", user=user)
    return feature


@transaction.atomic
def feature_delete(*, feature: Feature, user: AbstractBaseUser | None) -> None:
    key = feature.key
    if user is not None and user.is_authenticated:
        feature._history_user = user
    feature.delete()
    feature_changed_emit(feature=None, key=key, action="deleted", user=user)


def feature_as_dict(feature: Feature) -> dict[str, Any]:
    """The flag as the API shows it (without its owner and dates), for webhook events."""
    return {
        "key": feature.key,
        "name": feature.name,
        "type": feature.type,
        "default_value": feature.default_value,
        "environments": feature_environments_as_dict(feature),
        "prerequisites": [
            {"feature": item.prerequisite.key, "value": item.value}
            for item in feature.prerequisites.select_related("prerequisite")
        ],
    }


def feature_changed_emit(
    *, feature: Feature | None, action: str, user: AbstractBaseUser | None, key: str = ""
) -> None:
    """The ``flag.changed`` webhook event, sent once the current transaction commits. Every write of
    a flag calls it: these services, and the admin's save and delete."""
    event_emit(
        EventType.FLAG_CHANGED,
        lambda: flag_changed_data(
            key=feature.key if feature is not None else key,
            action=action,
            user=user,
            feature=feature_as_dict(feature) if feature is not None else None,
        ),
    )


def feature_environments_as_dict(
    feature: Feature, *, safe_rollout_state_shown: bool = False
) -> dict[str, dict[str, Any]]:
    """The contract's `environments` shape: {env_key: {"enabled": bool, "rules": [...]}}.

    A monitored rollout rule carries ``safe_rollout``: its settings (part of the flag's configuration),
    and with ``safe_rollout_state_shown`` (the API) also its status and evidence, which change by
    themselves and so stay out of change requests' diffs and configuration files."""
    result: dict[str, dict[str, Any]] = {
        fe.environment.key: {"enabled": fe.enabled, "rules": []} for fe in feature.environment_settings.all()
    }
    rules = list(feature.rules.all())
    safe_rollouts: dict[int, SafeRollout] = {}
    if any(rule.type == RuleType.ROLLOUT for rule in rules):  # no query for flags without one
        safe_rollouts = {
            safe.rule_id: safe
            for safe in SafeRollout.objects.filter(rule__feature=feature)
            .select_related("experiment")
            .prefetch_related("experiment__metric_links__metric")
        }
    for rule in rules:
        item: dict[str, Any] = {"type": rule.type, "condition": rule.condition or {}}
        if rule.type in (RuleType.FORCE, RuleType.ROLLOUT):
            item["value"] = rule.value
        if rule.type == RuleType.ROLLOUT:
            item["coverage"] = rule.coverage
            # The randomization unit only when it is not the default (the unit id), so that rules
            # written before it existed read back unchanged.
            if rule.hash_attribute and rule.hash_attribute != UNIT_ID_ATTRIBUTE:
                item["hash_attribute"] = rule.hash_attribute
            if rule.fallback_attribute:
                item["fallback_attribute"] = rule.fallback_attribute
            safe = safe_rollouts.get(rule.pk)
            if safe is not None:
                item["safe_rollout"] = safe_rollout_settings(safe)
                if safe_rollout_state_shown:
                    item["safe_rollout"].update(safe_rollout_state(safe))
        if rule.type == RuleType.EXPERIMENT:
            item["experiment"] = rule.experiment.key if rule.experiment else None
            item["values"] = rule.variant_values
        result.setdefault(rule.environment.key, {"enabled": False, "rules": []})["rules"].append(item)
    return result


# --- SDK keys ---------------------------------------------------------------------------------------


def sdk_key_assign_secret(key: SdkKey, *, user: AbstractBaseUser | None = None) -> str:
    """Give an unsaved key its secret: only the hash and a short prefix are kept; the raw key is returned."""
    raw = generate_sdk_key(key.kind)
    key.prefix = raw[: SdkKey._meta.get_field("prefix").max_length]
    key.hashed_key = hash_sdk_key(raw)
    if user is not None and user.is_authenticated:
        key.created_by = user
    return raw


@transaction.atomic
def sdk_key_create(
    *,
    environment: Environment,
    name: str = "",
    user: AbstractBaseUser | None = None,
    kind: str = SdkKeyKind.SECRET,
    encrypt: bool = False,
) -> tuple[SdkKey, str]:
    """Make a key (secret or client); the raw key is returned once and never stored. With ``encrypt``
    its GrowthBook payload is encrypted (``key.encryption_key`` is the SDK's decryption key)."""
    key = SdkKey(environment=environment, name=name, kind=kind)
    if encrypt:
        key.encryption_key = encryption_key_generate()
    raw = sdk_key_assign_secret(key, user=user)
    key.save()
    return key, raw


def environment_delete_validate(*, environment: Environment) -> None:
    """An environment with active SDK keys cannot be deleted (409): its keys would go with it."""
    if environment.sdk_keys.filter(revoked=False).exists():
        raise Conflict(
            f"The environment “{environment.key}” still has SDK keys; revoke or delete them first, "
            "or clients would lose their flags."
        )


@transaction.atomic
def environment_delete(*, environment: Environment) -> None:
    environment_delete_validate(environment=environment)
    environment.delete()


# --- SDK key usage ----------------------------------------------------------------------------------

LAST_USED_RESOLUTION_SECONDS = 60
_USAGE_MEMO_LIMIT = 10_000  # keys remembered per process; past that the memo starts again
# key tag -> monotonic time this process last recorded (or left to another process) a use of the key
_usage_recorded: dict[str, float] = {}


def sdk_key_mark_used(*, sdk_key_id: int, key_tag: str) -> None:
    """Record that an SDK request used a key, in ``SdkKey.last_used_at``, to the minute.

    Called on every SDK request, so it must cost nothing most of the time: each process remembers
    when it last recorded each key and does nothing else for the rest of the minute; then the shared
    cache decides which process writes (``cache.add`` succeeds for one of them a minute), so the
    database sees at most one ``UPDATE`` a minute per key, whatever the traffic and the number of
    processes. With the cache unreachable each process writes at most once a minute per key. The
    update bypasses ``save()``: no history row, no configuration invalidation. A failed write is
    logged and the request goes on: usage is informative, serving flags is not.

    ``key_tag`` (the start of the key's hash, ``SdkClient.key_tag``) names the key in the memo and
    the cache, because the ids of rolled-back rows can come again on SQLite and a random key's hash
    does not.
    """
    now = time.monotonic()
    last = _usage_recorded.get(key_tag)
    if last is not None and now - last < LAST_USED_RESOLUTION_SECONDS:
        return
    if len(_usage_recorded) >= _USAGE_MEMO_LIMIT:
        _usage_recorded.clear()
    _usage_recorded[key_tag] = now
    claimed = cache_call(cache.add, f"sdk-key:used:{key_tag}", 1, LAST_USED_RESOLUTION_SECONDS)
    if claimed is False:  # another process recorded it within the minute
        return
    try:
        with transaction.atomic():  # a savepoint when called inside a transaction: a failure stays here
            SdkKey.objects.filter(pk=sdk_key_id).update(last_used_at=timezone.now())
    except DatabaseError as exc:
        logger.warning("Could not record the use of SDK key %s: %s", sdk_key_id, exc)
