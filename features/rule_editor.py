"""What the flag editor (``features/static/features/rule_editor.js``) needs besides the rules formset.

The editor shows a flag's rules as cards per environment and writes every edit back into the rules
formset's fields, so saving goes through the same form validation and services as before. It only
needs names the formset does not carry: the environments (tabs), the experiments an experiment rule
can pick with their variants and weights, and the attribute names already used in conditions (as
suggestions in the condition builder). This module reads them, as JSON-able data for ``json_script``.

It also lets "try it" evaluate the rules as edited, before they are saved (``draft_rules_clean``,
``draft_config``): the same validation as a save, the same evaluator as the SDKs, over the saved
configuration with this flag's rules in one environment replaced by the editor's.
"""

import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q

from experiments.models import Experiment, ExperimentStatus, Variant
from features.config import snapshot_build
from features.evaluation import CompiledConfig, config_compile
from features.models import Environment, Feature, FeatureRule, RuleType
from features.services import rule_validate

LOGICAL_KEYS = ("$and", "$or", "$nor")
MAX_ATTRIBUTES = 200  # suggestions, not a schema: enough for a workspace, small for the page
MAX_EXPERIMENTS = 500
MAX_CONDITIONS_READ = 5000  # the newest conditions, for the suggestions
MAX_DRAFT_RULES = 200  # rules of one environment that "try it" evaluates unsaved
# Running experiments first: they are the ones a rule serves; archived ones only when a rule uses them.
STATUS_ORDER = [
    ExperimentStatus.RUNNING,
    ExperimentStatus.PAUSED,
    ExperimentStatus.DRAFT,
    ExperimentStatus.STOPPED,
    ExperimentStatus.ARCHIVED,
]


def condition_attributes(condition: Any) -> Iterator[str]:
    """The attribute names a condition document tests, through ``$and``/``$or``/``$nor``/``$not``."""
    if not isinstance(condition, dict):
        return
    for key, value in condition.items():
        if key in LOGICAL_KEYS and isinstance(value, list):
            for part in value:
                yield from condition_attributes(part)
        elif key == "$not":
            yield from condition_attributes(value)
        elif isinstance(key, str) and key and not key.startswith("$"):
            yield key


def attribute_suggestions(conditions: Iterable[Any]) -> list[str]:
    """Distinct attribute names of ``conditions``, sorted, at most ``MAX_ATTRIBUTES``."""
    names = {name for condition in conditions for name in condition_attributes(condition)}
    return sorted(names, key=lambda name: (name.casefold(), name))[:MAX_ATTRIBUTES]


def rule_editor_data(feature: Feature | None) -> dict[str, Any]:
    """The editor's data for ``feature``'s page (``None``: the add page)."""
    used = set()
    if feature is not None and feature.pk is not None:
        used = set(feature.rules.exclude(experiment=None).values_list("experiment_id", flat=True))
    experiments = Experiment.objects.filter(~Q(status=ExperimentStatus.ARCHIVED) | Q(pk__in=used))
    rows = list(experiments.order_by("-created_at")[:MAX_EXPERIMENTS])
    variants: dict[int, list[dict[str, Any]]] = {}
    for variant in Variant.objects.filter(experiment_id__in=[e.pk for e in rows]).order_by(
        "experiment_id", "position", "id"
    ):
        variants.setdefault(variant.experiment_id, []).append(
            {"key": variant.key, "name": variant.name, "weight": variant.weight}
        )
    rows.sort(key=lambda e: STATUS_ORDER.index(e.status) if e.status in STATUS_ORDER else len(STATUS_ORDER))
    conditions = [
        *FeatureRule.objects.order_by("-id").values_list("condition", flat=True)[:MAX_CONDITIONS_READ],
        *Experiment.objects.order_by("-id").values_list("targeting", flat=True)[:MAX_CONDITIONS_READ],
    ]
    return {
        "feature_type": feature.type if feature is not None else Feature._meta.get_field("type").default,
        "environments": [
            {"id": env.pk, "key": env.key, "name": env.name}
            for env in Environment.objects.order_by("position", "key")
        ],
        "experiments": [
            {
                "id": e.pk,
                "key": e.key,
                "name": e.name,
                "label": str(e),
                "status": e.status,
                "variants": variants.get(e.pk, []),
            }
            for e in rows
        ],
        "attributes": attribute_suggestions(conditions),
    }


def draft_rules_clean(text: str, *, feature: Feature, environment: Environment) -> list[dict[str, Any]]:
    """The editor's unsaved rules for one environment (a JSON list of ``{"type", "condition", "value",
    "coverage", "experiment" (a key), "values"}``), validated as a save validates them, in the shape of
    the configuration snapshot; ``ValidationError`` naming the rule otherwise."""
    try:
        rules = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
    if not isinstance(rules, list):
        raise ValidationError("The rules must be a JSON list.")
    if len(rules) > MAX_DRAFT_RULES:
        raise ValidationError(f"At most {MAX_DRAFT_RULES} rules in one environment.")
    cleaned = []
    for number, rule in enumerate(rules, start=1):
        where = f"{environment.name} rule {number}: "
        if not isinstance(rule, dict):
            raise ValidationError(f"{where}a rule is a JSON object.")
        try:
            rule_validate(rule, feature_type=feature.type, where=where)
        except ValidationError as exc:
            raise ValidationError([m for messages in exc.message_dict.values() for m in messages]) from None
        experiment = rule.get("experiment") if rule["type"] == RuleType.EXPERIMENT else None
        cleaned.append(
            {
                "type": rule["type"],
                "condition": rule.get("condition") or {},
                "value": rule.get("value") if rule["type"] != RuleType.EXPERIMENT else None,
                "coverage": rule.get("coverage") if rule["type"] == RuleType.ROLLOUT else None,
                "experiment": experiment.key if isinstance(experiment, Experiment) else experiment,
                "values": rule.get("values") if rule["type"] == RuleType.EXPERIMENT else None,
            }
        )
    return cleaned


def draft_config(
    *, feature: Feature, environment: Environment, rules: list[dict[str, Any]]
) -> CompiledConfig:
    """The environment's configuration as saved, except ``feature``'s rules there: ``rules``
    (``draft_rules_clean``'s). Built from the database, not the cache: it is one person's question."""
    snapshot = snapshot_build(environment.pk)
    snapshot["features"][feature.key]["rules"] = rules
    return config_compile(snapshot)
