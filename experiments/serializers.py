from rest_framework import serializers

from config.serializers import TagsField, WholeItemSerializer
from experiments.models import MAX_VARIANT_WEIGHT, Experiment, MetricRole, validate_analysis_environments
from metrics.models import Metric


class VariantSerializer(WholeItemSerializer):
    key = serializers.SlugField(max_length=100)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    weight = serializers.FloatField(
        default=1.0,
        max_value=MAX_VARIANT_WEIGHT,
        help_text=f"Relative share of traffic; greater than 0 and at most {MAX_VARIANT_WEIGHT:,}.",
    )
    payload = serializers.JSONField(
        required=False, allow_null=True, help_text="Returned with the assignment."
    )


class MetricLinkSerializer(WholeItemSerializer):
    metric = serializers.SlugRelatedField(
        slug_field="key", queryset=Metric.objects.all(), help_text="A metric's key."
    )
    role = serializers.ChoiceField(choices=MetricRole.choices, default=MetricRole.PRIMARY)


class ExperimentSerializer(serializers.ModelSerializer):
    variants = VariantSerializer(many=True, help_text="The first is the control; at least two.")
    metrics = MetricLinkSerializer(many=True, required=False, source="metric_links")
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    tags = TagsField()
    version = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="Send the version you read; a stale one is refused with 409 so no change is lost.",
    )
    analysis_environments = serializers.ListField(
        child=serializers.CharField(max_length=50),
        required=False,
        validators=[validate_analysis_environments],
        help_text='Environment keys whose exposures and events the results count; default ["production"]. '
        "Each must exist; may change at any time (the next refresh recomputes the results).",
    )

    class Meta:
        model = Experiment
        fields = [
            "key",
            "name",
            "description",
            "hypothesis",
            "status",
            "owner",
            "tags",
            "variants",
            "traffic_allocation",
            "targeting",
            "layer",
            "hash_seed",
            "hash_attribute",
            "fallback_attribute",
            "metrics",
            "engine",
            "alpha",
            "sequential",
            "sequential_tuning",
            "correction",
            "srm_threshold",
            "prior_mean",
            "prior_stddev",
            "minimum_detectable_effect",
            "analysis_environments",
            "scheduled_start_at",
            "scheduled_stop_at",
            "started_at",
            "stopped_at",
            "decision_variant",
            "decision_reason",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "status",
            "started_at",
            "stopped_at",
            "decision_variant",
            "decision_reason",
            "created_at",
            "updated_at",
        ]


class LifecycleSerializer(serializers.Serializer):
    version = serializers.IntegerField(
        required=False, min_value=1, help_text="Optional optimistic-lock check."
    )


class StopSerializer(LifecycleSerializer):
    decision_variant = serializers.SlugField(
        required=False, allow_blank=True, allow_null=True, help_text="The variant shipped; empty for none."
    )
    reason = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Why, for the record."
    )
