from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.serializers import TagsField
from features.models import Environment, Feature, cors_origin_error, cors_origins_parse
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


class PrerequisiteSerializer(serializers.Serializer):
    feature = serializers.SlugRelatedField(
        slug_field="key", queryset=Feature.objects.all(), source="prerequisite"
    )
    value = serializers.JSONField(help_text="The value the prerequisite flag must evaluate to, e.g. true.")


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "properties": {
                "enabled": {"type": "boolean"},
                "rules": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
            },
        },
        "example": {
            "production": {
                "enabled": True,
                "rules": [
                    {"type": "force", "condition": {"email": {"$regex": "@example\\.com$"}}, "value": True},
                    {"type": "rollout", "condition": {}, "value": True, "coverage": 0.2},
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
        return feature_environments_as_dict(instance)


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
