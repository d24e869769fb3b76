from rest_framework import serializers

from features.webhooks.models import EventType, Webhook, WebhookDelivery, validate_receiver_url


class WebhookSerializer(serializers.ModelSerializer):
    url = serializers.CharField(
        max_length=2000,
        validators=[validate_receiver_url],
        help_text="Where the events are POSTed: http:// or https://, e.g. https://hooks.example.com/in or "
        "http://chat-bridge:8080/hook.",
    )
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices),
        allow_empty=False,
        help_text="The events sent to this receiver.",
    )
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Webhook
        fields = ["id", "name", "url", "event_types", "enabled", "description", "created_at", "created_by"]
        read_only_fields = ["id", "created_at", "created_by"]


class WebhookCreatedSerializer(WebhookSerializer):
    """The answer to a creation: the only read that includes the secret."""

    secret = serializers.CharField(read_only=True, help_text="Shown once: keep it to verify signatures.")

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]


class WebhookSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(read_only=True, help_text="The new secret, shown once.")


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "status",
            "attempts",
            "response_code",
            "response_body",
            "error",
            "duration_ms",
            "created_at",
            "last_attempt_at",
            "next_attempt_at",
            "body",
        ]
        read_only_fields = fields
