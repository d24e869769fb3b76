"""Request validation and response shapes of the SDK endpoints (assign, evaluate, OFREP)."""

from rest_framework import serializers

from experiments.assignment import AssignmentReason
from features.evaluation import Reason

# The one unit id limit of every SDK endpoint (assign, evaluate, OFREP, events, exposures), so that a
# unit that can send events can also be assigned. Long enough for URNs and emails. It lives here
# because `analytics` may read `features`, not the other way round.
UNIT_ID_MAX_LENGTH = 256
EXPERIMENTS_MAX = 200  # experiment keys per assign request


class UnitRequestSerializer(serializers.Serializer):
    unit_id = serializers.CharField(
        max_length=UNIT_ID_MAX_LENGTH,
        trim_whitespace=False,
        help_text="Whom to decide for: a user, device or account id. Bucketing hashes it with each "
        "experiment's seed, so the same id always gets the same answer.",
    )
    attributes = serializers.DictField(
        required=False,
        default=dict,
        help_text='What targeting conditions read, e.g. {"country": "US", "plan": "pro", "age": 31}.',
    )


class AssignRequestSerializer(UnitRequestSerializer):
    experiments = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        max_length=EXPERIMENTS_MAX,
        help_text="Experiment keys to answer for; leave out for every running experiment.",
    )
    log_exposure = serializers.BooleanField(
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
        "stopped), TARGETING_MISS (attributes do not match), NOT_IN_TRAFFIC (outside the traffic "
        "allocation or the layer slice).",
    )
    payload = serializers.JSONField(allow_null=True, help_text="The variant's payload, if any.")


class AssignResponseSerializer(serializers.Serializer):
    assignments = AssignmentSerializer(many=True)


class FlagEvaluationSerializer(serializers.Serializer):
    value = serializers.JSONField(
        help_text="Typed as the feature: boolean, string, number (integer or float) or object."
    )
    variant = serializers.CharField(
        help_text="The experiment's variant key, else rule-N, default, disabled or prerequisite-failed."
    )
    reason = serializers.ChoiceField(choices=Reason.ALL)


class EvaluateResponseSerializer(serializers.Serializer):
    flags = serializers.DictField(child=FlagEvaluationSerializer(), help_text="Every flag, by key.")
    version = serializers.CharField(help_text="The configuration version these values come from.")


# --- OFREP (OpenFeature Remote Evaluation Protocol): shapes for the schema -----------------------------


class OfrepContextSerializer(serializers.Serializer):
    context = serializers.DictField(
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
    flags = OfrepEvaluationSuccessSerializer(many=True)
    metadata = serializers.DictField(help_text="`version` of the configuration.")


class OfrepBulkFailureSerializer(serializers.Serializer):
    errorCode = serializers.ChoiceField(  # noqa: N815
        choices=["PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "GENERAL"]
    )
    errorDetails = serializers.CharField()  # noqa: N815
