from typing import Any

from rest_framework import serializers

from features.governance.models import (
    ChangeOperation,
    ChangeRequest,
    ChangeRequestStatus,
    ScheduledAction,
    ScheduledChange,
    ScheduledChangeStatus,
)
from features.governance.selectors import change_request_data, scheduled_change_data
from features.models import Environment, Feature


class TargetSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["feature", "experiment", "holdout"])
    key = serializers.CharField()


class DiffEntrySerializer(serializers.Serializer):
    path = serializers.CharField(help_text="e.g. environments.production.rules[2], traffic_allocation")
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)


class ChangeRequestSerializer(serializers.Serializer):
    """Read only: the change request (``features.governance.selectors.change_request_data``)."""

    id = serializers.IntegerField()
    url = serializers.CharField()
    status = serializers.ChoiceField(choices=ChangeRequestStatus.choices)
    operation = serializers.ChoiceField(choices=ChangeOperation.choices)
    title = serializers.CharField()
    target = TargetSerializer()
    environments = serializers.ListField(child=serializers.CharField())
    diff = DiffEntrySerializer(many=True, help_text="Against the state when it was proposed.")
    params = serializers.DictField(help_text="What approving passes to the service that applies it.")
    outdated = serializers.BooleanField(
        help_text="Open, but its target changed since it was proposed: approving it answers 409."
    )
    comment = serializers.CharField()
    created_by = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    reviewed_by = serializers.CharField(allow_null=True)
    reviewed_at = serializers.DateTimeField(allow_null=True)
    review_comment = serializers.CharField()
    applied_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, instance: ChangeRequest) -> dict[str, Any]:
        return change_request_data(instance)


class ReviewSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class ScheduledChangeSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    feature = serializers.SlugRelatedField(slug_field="key", queryset=Feature.objects.all())
    environment = serializers.SlugRelatedField(slug_field="key", queryset=Environment.objects.all())
    action = serializers.ChoiceField(choices=ScheduledAction.choices)
    rule_position = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="set_coverage: the rule, counting from 1."
    )
    coverage = serializers.FloatField(
        required=False, allow_null=True, min_value=0, max_value=1, help_text="set_coverage: 0 to 1."
    )
    run_at = serializers.DateTimeField(help_text="When (ISO 8601, to the minute; seconds are dropped).")
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    status = serializers.ChoiceField(choices=ScheduledChangeStatus.choices, read_only=True)
    description = serializers.CharField(read_only=True)
    result = serializers.CharField(read_only=True)
    change_request = serializers.IntegerField(read_only=True, allow_null=True)
    created_by = serializers.CharField(read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    cancelled_by = serializers.CharField(read_only=True, allow_null=True)
    fired_at = serializers.DateTimeField(read_only=True, allow_null=True)

    def to_representation(self, instance: ScheduledChange) -> dict[str, Any]:
        return scheduled_change_data(instance)
