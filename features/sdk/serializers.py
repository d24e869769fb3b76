"""Request validation and response shapes of the SDK endpoints (assign, evaluate, OFREP).

SDK input is taken as typed, never coerced: DRF's fields would turn ``"unit_id": 42`` into ``"42"``
and ``"log_exposure": "yes"`` into ``true``, so an SDK with a bug would be served as if it had none.
Here a wrong JSON type is a 400 naming the field, and numbers in attributes must be finite (JSON's
grammar allows ``1e400``, which Python reads as infinity).
"""

import math
from typing import Any

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from experiments.assignment import AssignmentReason
from features.evaluation import Reason

# The one unit id limit of every SDK endpoint (assign, evaluate, OFREP, events, exposures), so that a
# unit that can send events can also be assigned. Long enough for URNs and emails. It lives here
# because `analytics` may read `features`, not the other way round.
UNIT_ID_MAX_LENGTH = 256
EXPERIMENTS_MAX = 200  # experiment keys per assign request


def non_finite_number_path(value: Any, path: str) -> str | None:
    """Where a JSON value holds a number that is not finite (``path.a[2]``), or None.

    Iterative, so a deeply nested value cannot exhaust the stack.
    """
    pending = [(value, path)]
    while pending:
        item, where = pending.pop()
        if type(item) is float:
            if not math.isfinite(item):
                return where
        elif isinstance(item, dict):
            pending.extend((child, f"{where}.{key}") for key, child in item.items())
        elif isinstance(item, list):
            pending.extend((child, f"{where}[{index}]") for index, child in enumerate(item))
    return None


class StrictCharField(serializers.CharField):
    """A JSON string, and nothing else (DRF's ``CharField`` turns numbers into strings)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """JSON ``true`` or ``false``, and nothing else (DRF's accepts ``"yes"``, ``1``, ``"on"``...)."""

    default_error_messages = {"invalid": "Must be true or false (a JSON boolean)."}

    def to_internal_value(self, data: Any) -> bool:
        if data is True or data is False:
            return data
        self.fail("invalid")


class AttributesField(serializers.DictField):
    """A JSON object of attributes; any JSON values, but numbers must be finite."""

    def to_internal_value(self, data: Any) -> dict:
        value = super().to_internal_value(data)
        where = non_finite_number_path(value, "attributes")
        if where is not None:
            raise serializers.ValidationError(
                f"{where}: numbers must be finite (JSON like 1e400 reads as infinity)."
            )
        return value


class UnitRequestSerializer(serializers.Serializer):
    unit_id = StrictCharField(
        max_length=UNIT_ID_MAX_LENGTH,
        trim_whitespace=False,
        help_text="Whom to decide for: a user, device or account id. Bucketing hashes it with each "
        "experiment's seed, so the same id always gets the same answer.",
    )
    attributes = AttributesField(
        required=False,
        default=dict,
        help_text='What targeting conditions read, e.g. {"country": "US", "plan": "pro", "age": 31}. '
        "Numbers must be finite.",
    )


class AssignRequestSerializer(UnitRequestSerializer):
    experiments = serializers.ListField(
        # Not trimmed: a key is looked up as sent, and one that names no experiment answers NOT_FOUND.
        child=StrictCharField(max_length=100, trim_whitespace=False, allow_blank=True),
        required=False,
        max_length=EXPERIMENTS_MAX,
        help_text="Experiment keys to answer for; leave out for every running experiment.",
    )
    log_exposure = StrictBooleanField(
        default=True,
        help_text="Record an exposure for each experiment the unit is in. Set false when you only "
        "look, and send the exposure later through /api/v1/exposures when the unit sees the variant.",
    )


class EvaluateRequestSerializer(UnitRequestSerializer):
    pass


class AssignmentSerializer(serializers.Serializer):
    experiment = serializers.CharField()
    variant = serializers.CharField(
        allow_null=True, help_text="The variant key; null when not in the experiment."
    )
    in_experiment = serializers.BooleanField()
    reason = serializers.ChoiceField(
        choices=AssignmentReason.ALL,
        help_text="ASSIGNED; or why not: NOT_FOUND (no such experiment), NOT_RUNNING (draft, paused, "
        "stopped), TARGETING_MISS (attributes do not match), HASH_ATTRIBUTE_MISSING (neither the "
        "experiment's hash attribute nor its fallback attribute has a usable value: a non-empty string "
        "or a non-zero number), NOT_IN_TRAFFIC (outside the traffic allocation or the layer slice), ERROR (the experiment's stored configuration cannot be "
        "used; logged on the server).",
    )
    payload = serializers.JSONField(allow_null=True, help_text="The variant's payload, if any.")
    hash_attribute = serializers.CharField(
        allow_null=True,
        help_text="The attribute whose value decided the variant: the experiment's hash attribute, or its "
        "fallback attribute when the unit has no value for it; id is the unit id. Null when not in it.",
    )
    hash_value = serializers.CharField(
        allow_null=True,
        help_text="The value that was hashed (numbers as text, e.g. 42). Null when not in it.",
    )


class AssignResponseSerializer(serializers.Serializer):
    assignments = AssignmentSerializer(many=True)


class FlagEvaluationSerializer(serializers.Serializer):
    value = serializers.JSONField(
        help_text="Typed as the feature: boolean, string, number (integer or float) or object."
    )
    variant = serializers.CharField(
        help_text="The experiment's variant key, else rule-N, default, disabled, prerequisite-failed "
        "or error."
    )
    reason = serializers.ChoiceField(
        choices=Reason.ALL,
        help_text="ERROR: the flag's stored configuration cannot be used (logged on the server); "
        "the value is its default.",
    )


class EvaluateResponseSerializer(serializers.Serializer):
    flags = serializers.DictField(child=FlagEvaluationSerializer(), help_text="Every flag, by key.")
    version = serializers.CharField(help_text="The configuration version these values come from.")


# --- OFREP (OpenFeature Remote Evaluation Protocol): shapes for the schema -----------------------------


@extend_schema_field(
    {
        "type": "object",
        "required": ["targetingKey"],
        "properties": {"targetingKey": {"type": "string", "minLength": 1, "maxLength": 256}},
        "additionalProperties": True,
    }
)
class OfrepContextField(serializers.DictField):
    """The schema's view of an OFREP context: `targetingKey` is required (TARGETING_KEY_MISSING)."""


class OfrepContextSerializer(serializers.Serializer):
    context = OfrepContextField(
        help_text="The evaluation context: `targetingKey` (required) is the unit id; every other field "
        "is an attribute for targeting."
    )


class OfrepEvaluationSuccessSerializer(serializers.Serializer):
    key = serializers.CharField()
    value = serializers.JSONField()
    reason = serializers.ChoiceField(choices=["STATIC", "TARGETING_MATCH", "SPLIT", "DEFAULT", "DISABLED"])
    variant = serializers.CharField()
    metadata = serializers.DictField(
        help_text="`version` of the configuration; `experiment` when one served it."
    )


class OfrepEvaluationFailureSerializer(serializers.Serializer):
    key = serializers.CharField()
    errorCode = serializers.ChoiceField(  # noqa: N815 - OFREP's field name
        choices=["PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "GENERAL"]
    )
    errorDetails = serializers.CharField()  # noqa: N815


class OfrepFlagNotFoundSerializer(serializers.Serializer):
    key = serializers.CharField()
    # A plain string: a second one-value enum named errorCode would collide with the one above.
    errorCode = serializers.CharField(help_text="Always `FLAG_NOT_FOUND`.")  # noqa: N815
    errorDetails = serializers.CharField()  # noqa: N815


class OfrepBulkSuccessSerializer(serializers.Serializer):
    # OFREP: each flag is a success, or a failure (GENERAL) when that flag alone cannot be evaluated.
    flags = PolymorphicProxySerializer(
        component_name="OfrepBulkFlag",
        serializers=[OfrepEvaluationSuccessSerializer, OfrepEvaluationFailureSerializer],
        resource_type_field_name=None,
        many=True,
    )
    metadata = serializers.DictField(help_text="`version` of the configuration.")


class OfrepBulkFailureSerializer(serializers.Serializer):
    errorCode = serializers.ChoiceField(  # noqa: N815
        choices=["PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "GENERAL"]
    )
    errorDetails = serializers.CharField()  # noqa: N815
