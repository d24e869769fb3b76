from rest_framework import serializers

from experiments.models import Experiment
from features.holdouts.models import Holdout
from features.models import Feature
from metrics.models import Metric


class HoldoutSerializer(serializers.ModelSerializer):
    """A holdout; flags, experiments and metrics by key. ``experiment``: the key of its internal
    experiment (set once started), whose results are the holdout's (``/api/v1/experiments/{key}/results/``)."""

    features = serializers.SlugRelatedField(
        many=True, slug_field="key", queryset=Feature.objects.all(), required=False
    )
    experiments = serializers.SlugRelatedField(
        many=True,
        slug_field="key",
        # All of them: the service refuses internal experiments with a message saying why.
        queryset=Experiment.objects.all(),
        required=False,
    )
    metrics = serializers.SlugRelatedField(
        many=True, slug_field="key", queryset=Metric.objects.all(), required=False
    )
    environments = serializers.ListField(child=serializers.CharField(max_length=50), required=False)
    experiment = serializers.SlugRelatedField(slug_field="key", read_only=True, allow_null=True)
    coverage = serializers.FloatField(
        read_only=True, help_text="Share of units hashed into the holdout or its measurement sample."
    )

    class Meta:
        model = Holdout
        fields = [
            "key",
            "name",
            "description",
            "status",
            "percentage",
            "hash_seed",
            "hash_attribute",
            "environments",
            "features",
            "experiments",
            "metrics",
            "experiment",
            "coverage",
            "started_at",
            "stopped_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["status", "started_at", "stopped_at", "created_at", "updated_at"]
        # The key's uniqueness is the model's; full_clean in the service reports it too.
        extra_kwargs = {"key": {"validators": []}}
