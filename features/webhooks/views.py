from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import DjangoModelPermissions
from rest_framework.response import Response

from features.webhooks.models import Webhook
from features.webhooks.serializers import (
    WebhookCreatedSerializer,
    WebhookDeliverySerializer,
    WebhookSecretSerializer,
    WebhookSerializer,
)
from features.webhooks.services import (
    webhook_create,
    webhook_secret_rotate,
    webhook_send_test,
    webhook_update,
)

DELIVERY_EXAMPLE = OpenApiExample(
    "A delivered test event",
    value={
        "id": 12,
        "event_id": "6f1c1f8e-2b1a-4f0e-9a51-8d1f2c3b4a5e",
        "event_type": "webhook.test",
        "status": "delivered",
        "attempts": 1,
        "response_code": 200,
        "response_body": "ok",
        "error": "",
        "duration_ms": 84,
        "created_at": "2026-12-07T10:00:00Z",
        "last_attempt_at": "2026-12-07T10:00:01Z",
        "next_attempt_at": None,
        "body": '{"id":"6f1c1f8e-2b1a-4f0e-9a51-8d1f2c3b4a5e","type":"webhook.test","created":"2026-12-07T10:00:00+00:00","data":{}}',
    },
    response_only=True,
    status_codes=["200", "202"],
)
SECRET_EXAMPLE = OpenApiExample(
    "New secret", value={"secret": "whsec_3q2+7wN0bq1nHvb0fHc8v1Lk0qk3fJm1kOQ1w6Q0b9E"}, response_only=True
)
WEBHOOK_EXAMPLE = OpenApiExample(
    "Chat bridge",
    value={
        "name": "Chat bridge",
        "url": "https://hooks.example.com/experiments",
        "event_types": ["flag.changed", "experiment.started", "experiment.stopped"],
        "enabled": True,
    },
)


class WebhookPermission(DjangoModelPermissions):
    """Webhooks name internal receivers: even reading them needs the model's view permission; writing
    needs add, change or delete, and ``test`` and ``rotate_secret`` the change permission."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }

    def has_permission(self, request, view):
        if getattr(view, "action", None) in ("test", "rotate_secret"):
            return bool(request.user and request.user.has_perm("features.change_webhook"))
        return super().has_permission(request, view)


@extend_schema_view(
    list=extend_schema(summary="List webhooks", examples=[WEBHOOK_EXAMPLE]),
    retrieve=extend_schema(summary="Get a webhook", examples=[WEBHOOK_EXAMPLE]),
    create=extend_schema(
        summary="Create a webhook",
        description="The answer holds the generated `secret`, shown this once: keep it to verify "
        "signatures (docs/api.md, Webhooks).",
        examples=[WEBHOOK_EXAMPLE],
        responses={201: WebhookCreatedSerializer},
    ),
    partial_update=extend_schema(
        summary="Change a webhook", examples=[OpenApiExample("Switch off", value={"enabled": False})]
    ),
    update=extend_schema(summary="Replace a webhook", examples=[WEBHOOK_EXAMPLE]),
    destroy=extend_schema(summary="Delete a webhook and its delivery log"),
)
class WebhookViewSet(viewsets.ModelViewSet):
    queryset = Webhook.objects.select_related("created_by")
    serializer_class = WebhookSerializer
    permission_classes = [WebhookPermission]
    search_fields = ["name", "url", "description"]
    filterset_fields = ["enabled"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        webhook = webhook_create(user=request.user, **serializer.validated_data)
        return Response(WebhookCreatedSerializer(webhook).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        partial = kwargs.pop("partial", False)
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        webhook = webhook_update(webhook=serializer.instance, user=request.user, **serializer.validated_data)
        return Response(self.get_serializer(webhook).data)

    @extend_schema(
        summary="Send a test event",
        description="Queues a `webhook.test` event to this receiver alone; 202 with the delivery, whose "
        "outcome shows in `deliveries`.",
        request=None,
        responses={202: WebhookDeliverySerializer},
        examples=[DELIVERY_EXAMPLE],
    )
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        delivery = webhook_send_test(webhook=self.get_object(), user=request.user)
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Replace the secret",
        description="Deliveries from now on are signed with the new secret, shown this once.",
        request=None,
        responses={200: WebhookSecretSerializer},
        examples=[SECRET_EXAMPLE],
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        secret = webhook_secret_rotate(webhook=self.get_object(), user=request.user)
        return Response(WebhookSecretSerializer({"secret": secret}).data)

    @extend_schema(
        summary="The delivery log",
        description="Newest first: status, attempts, the receiver's answer code and the start of its body.",
        responses={200: WebhookDeliverySerializer(many=True)},
        examples=[DELIVERY_EXAMPLE],
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        page = self.paginate_queryset(self.get_object().deliveries.all())
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)
