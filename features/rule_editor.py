"""What the flag editor (``features/static/features/rule_editor.js``) needs besides the rules formset.

The editor shows a flag's rules as cards per environment and writes every edit back into the rules
formset's fields, so saving goes through the same form validation and services as before. It only
needs names the formset does not carry: the environments (tabs), the experiments an experiment rule
can pick with their variants and weights, and the attribute names already used in conditions (as
suggestions in the condition builder). This module reads them, as JSON-able data for ``json_script``.
"""

from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import Q

from experiments.models import Experiment, ExperimentStatus, Variant
from features.models import Environment, Feature, FeatureRule

LOGICAL_KEYS = ("$and", "$or", "$nor")
MAX_ATTRIBUTES = 200  # suggestions, not a schema: enough for a workspace, small for the page
MAX_EXPERIMENTS = 500
MAX_CONDITIONS_READ = 5000  # the newest conditions, for the suggestions
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
