from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.serializers import TagsField, WholeItemSerializer
from features.models import Environment, Feature, cors_origin_error, cors_origins_parse
from features.safe_rollouts import ALPHA_MAX, ALPHA_MIN, FINISH_AFTER_HOURS_MAX
from features.services import feature_environments_as_dict


class EnvironmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Environment
        fields = [
            "key",
            "name",
            "description",
            "position",
            "cors_allowed_origins",
            "requires_approval",
            "created_at",
        ]
        read_only_fields = ["created_at"]

    def validate_cors_allowed_origins(self, value: str) -> str:
        errors = [error for error in map(cors_origin_error, cors_origins_parse(value)) if error]
        if errors:
            raise serializers.ValidationError(errors)
        return value


class PrerequisiteSerializer(WholeItemSerializer):
    feature = serializers.SlugRelatedField(
        slug_field="key", queryset=Feature.objects.all(), source="prerequisite"
    )
    value = serializers.JSONField(help_text="The value the prerequisite flag must evaluate to, e.g. true.")


SAFE_ROLLOUT_SCHEMA = {
    "type": "object",
    "nullable": True,
    "description": "A rollout rule watched by guardrail metrics (docs/analysis.md, Safe rollouts): after each "
    "results refresh a guardrail significantly worse inside the rollout rolls it back (coverage 0), and "
    "`finish_after_hours` without one finishes it (coverage 1). Write the settings to start it; a rule "
    "written back with the same settings keeps its monitoring, other settings start a new one, and a rule "
    "written without `safe_rollout` stops it. The other fields are read-only (accepted back and ignored).",
    "required": ["metrics"],
    "properties": {
        "metrics": {"type": "array", "items": {"type": "string"}, "description": "Guardrail metric keys."},
        "alpha": {
            "type": "number",
            "default": 0.05,
            "minimum": ALPHA_MIN,
            "maximum": ALPHA_MAX,
            "description": "Shared by the guardrails (Bonferroni).",
        },
        "finish_after_hours": {
            "type": "integer",
            "nullable": True,
            "minimum": 1,
            "maximum": FINISH_AFTER_HOURS_MAX,
            "description": "Finish (coverage 1) after this many hours without a regression; null: never.",
        },
        "status": {"type": "string", "enum": ["monitoring", "rolled_back", "finished"], "readOnly": True},
        "experiment": {"type": "string", "readOnly": True, "description": "The internal experiment's key."},
        "started_at": {"type": "string", "format": "date-time", "readOnly": True},
        "decided_at": {"type": "string", "format": "date-time", "nullable": True, "readOnly": True},
        "evidence": {
            "type": "object",
            "additionalProperties": True,
            "readOnly": True,
            "description": "The latest check, or the decision's: each guardrail's units, relative change "
            "and interval, sequential p-value and whether it regressed; the threshold (alpha / k) and SRM.",
        },
    },
}
RULE_SCHEMA = {
    "type": "object",
    "additionalProperties": True,
    "properties": {
        "type": {"type": "string", "enum": ["force", "rollout", "experiment"]},
        "condition": {"type": "object", "additionalProperties": True},
        "value": {"description": "force and rollout rules: the value served."},
        "coverage": {"type": "number", "minimum": 0, "maximum": 1, "description": "rollout rules."},
        "safe_rollout": SAFE_ROLLOUT_SCHEMA,
    },
}


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "properties": {
                "enabled": {"type": "boolean"},
                "rules": {"type": "array", "items": RULE_SCHEMA},
            },
        },
        "example": {
            "production": {
                "enabled": True,
                "rules": [
                    {"type": "force", "condition": {"email": {"$regex": "@example\\.com$"}}, "value": True},
                    {"type": "rollout", "condition": {}, "value": True, "coverage": 0.2},
                    {
                        "type": "rollout",
                        "condition": {"country": "US"},
                        "value": True,
                        "coverage": 0.1,
                        "safe_rollout": {
                            "metrics": ["checkout_errors"],
                            "alpha": 0.05,
                            "finish_after_hours": 72,
                        },
                    },
                ],
            }
        },
    }
)
class EnvironmentsField(serializers.DictField):
    """The contract's `{env_key: {"enabled": bool, "rules": [...]}}`; checked in depth by the service."""

    child = serializers.DictField()

    def get_attribute(self, instance):
        return instance

    def to_representation(self, instance):
        # A safe rollout's status and evidence change by themselves: configuration files (their
        # export, context safe_rollout_state False) carry its settings only.
        shown = self.context.get("safe_rollout_state", True)
        return feature_environments_as_dict(instance, safe_rollout_state_shown=shown)


class FeatureSerializer(serializers.ModelSerializer):
    default_value = serializers.JSONField(help_text="Served when no rule applies or the environment is off.")
    environments = EnvironmentsField(required=False, help_text="Per environment: on/off and ordered rules.")
    prerequisites = PrerequisiteSerializer(many=True, required=False)
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    tags = TagsField()

    class Meta:
        model = Feature
        fields = [
            "key",
            "name",
            "description",
            "type",
            "default_value",
            "environments",
            "prerequisites",
            "owner",
            "tags",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
