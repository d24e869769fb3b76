from rest_framework import serializers

from config.serializers import TagsField
from metrics.models import Metric


class MetricSerializer(serializers.ModelSerializer):
    denominator = serializers.SlugRelatedField(
        slug_field="key",
        queryset=Metric.objects.all(),
        required=False,
        allow_null=True,
        help_text="Ratio metrics only: the key of the metric divided by.",
    )
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    tags = TagsField()

    class Meta:
        model = Metric
        fields = [
            "key",
            "name",
            "description",
            "type",
            "event",
            "denominator",
            "window_hours",
            "higher_is_better",
            "cap_value",
            "cap_percentile",
            "cap_ignore_zeros",
            "quantile",
            "quantile_scope",
            "cuped",
            "cuped_lookback_days",
            "owner",
            "tags",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
