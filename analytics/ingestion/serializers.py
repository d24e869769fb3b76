"""The shapes of the ingestion endpoints, for the OpenAPI document (validation is in
``validation.py``, which is faster per item)."""

from rest_framework import serializers

from analytics.ingestion.validation import MAX_ITEMS, MAX_NAME_LENGTH
from features.sdk.serializers import UNIT_ID_MAX_LENGTH


class EventSerializer(serializers.Serializer):
    event_id = serializers.UUIDField(
        required=False, help_text="Optional; replays with the same id count once."
    )
    name = serializers.CharField(
        max_length=MAX_NAME_LENGTH, help_text="The event name a metric counts, e.g. purchase."
    )
    unit_id = serializers.CharField(
        max_length=UNIT_ID_MAX_LENGTH, help_text="Who did it: the same id as in assignments."
    )
    value = serializers.FloatField(
        required=False,
        default=1.0,
        help_text="A finite number, at most EVENT_MAX_ABS_VALUE (default 1e12) in absolute value; default 1.",
    )
    timestamp = serializers.DateTimeField(
        required=False, help_text="ISO 8601; default now; accepted from 30 days ago to 1 hour ahead."
    )
    properties = serializers.DictField(
        child=serializers.CharField(), required=False, help_text="Flat str → str."
    )


class EventBatchSerializer(serializers.Serializer):
    events = EventSerializer(many=True, help_text=f"1 to {MAX_ITEMS} events; at most 1 MiB a request.")


class ExposureSerializer(serializers.Serializer):
    experiment = serializers.CharField(max_length=MAX_NAME_LENGTH, help_text="An experiment's key.")
    variant = serializers.CharField(max_length=MAX_NAME_LENGTH, help_text="One of its variant keys.")
    unit_id = serializers.CharField(max_length=UNIT_ID_MAX_LENGTH)
    timestamp = serializers.DateTimeField(
        required=False,
        help_text="ISO 8601; default now. Any time in the past (late sends count), at most 1 hour ahead.",
    )
    attributes = serializers.DictField(required=False, help_text="The unit's attributes at evaluation, flat.")


class ExposureBatchSerializer(serializers.Serializer):
    exposures = ExposureSerializer(
        many=True, help_text=f"1 to {MAX_ITEMS} exposures; at most 1 MiB a request."
    )


class RejectionSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the item in the request.")
    errors = serializers.DictField(child=serializers.CharField(), help_text="Field → reason.")


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(
        help_text="Items durably stored (a replayed item counts; it is stored once)."
    )
    rejected = RejectionSerializer(many=True)
