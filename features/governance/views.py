"""``/api/v1/change-requests/`` and ``/api/v1/scheduled-changes/``."""

from django.db import connection
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from features.governance.models import ChangeRequest, ScheduledChange
from features.governance.serializers import (
    ChangeRequestSerializer,
    ReviewSerializer,
    ScheduledChangeSerializer,
)
from features.governance.services import (
    change_request_approve,
    change_request_reject,
    scheduled_change_cancel,
    scheduled_change_create,
)


class ChangeRequestFilter(filters.FilterSet):
    environment = filters.CharFilter(method="filter_environment", help_text="Affects this environment.")

    class Meta:
        model = ChangeRequest
        fields = ["status", "operation", "target_key"]

    def filter_environment(self, queryset, name, value):
        if connection.features.supports_json_field_contains:  # PostgreSQL
            return queryset.filter(environments__contains=[value])
        # SQLite cannot look inside a JSON list: filter the (few) change requests here.
        return queryset.filter(
            pk__in=[pk for pk, keys in queryset.values_list("pk", "environments") if value in (keys or [])]
        )


REVIEW_EXAMPLE = OpenApiExample(
    "Looks good", value={"comment": "Checked the diff with the team."}, request_only=True
)
CHANGE_REQUEST_EXAMPLE = OpenApiExample(
    "A rollout widened in production",
    value={
        "id": 12,
        "url": "/api/v1/change-requests/12/",
        "status": "open",
        "operation": "feature.update",
        "title": "Change flag “dark_mode” in production",
        "target": {"type": "feature", "key": "dark_mode"},
        "environments": ["production"],
        "diff": [
            {
                "path": "environments.production.rules[1]",
                "before": {"type": "rollout", "condition": {}, "value": True, "coverage": 0.2},
                "after": {"type": "rollout", "condition": {}, "value": True, "coverage": 0.5},
            }
        ],
        "params": {
            "environments": {
                "production": {
                    "enabled": True,
                    "rules": [{"type": "rollout", "condition": {}, "value": True, "coverage": 0.5}],
                }
            }
        },
        "outdated": False,
        "comment": "",
        "created_by": "alice",
        "created_at": "2026-12-07T09:12:00+00:00",
        "reviewed_by": None,
        "reviewed_at": None,
        "review_comment": "",
        "applied_at": None,
    },
    response_only=True,
)
SCHEDULED_CHANGE_EXAMPLE = OpenApiExample(
    "Switch on at launch",
    value={
        "id": 3,
        "feature": "new_checkout",
        "environment": "production",
        "action": "switch_on",
        "rule_position": None,
        "coverage": None,
        "run_at": "2030-05-01T09:00:00+00:00",
        "status": "pending",
        "description": "Switch new_checkout in production on",
        "result": "",
        "comment": "",
        "change_request": 14,
        "created_by": "alice",
        "created_at": "2026-12-07T09:12:00+00:00",
        "cancelled_by": None,
        "fired_at": None,
    },
    response_only=True,
)


@extend_schema_view(
    list=extend_schema(
        summary="List change requests",
        description="Newest first; filter by `status` (`open`, `applied`, `rejected`), `operation`, "
        "`target_key`, `environment`.",
        examples=[CHANGE_REQUEST_EXAMPLE],
    ),
    retrieve=extend_schema(summary="Get a change request, with its diff", examples=[CHANGE_REQUEST_EXAMPLE]),
    approve=extend_schema(
        summary="Approve and apply a change request",
        description="Needs the permission `features.approve_changerequest` and is refused (403) to the "
        "change request's author. Applies the change at once through the same service as the original "
        "write; 409 when the change request is not open any more or its target changed since it was "
        "proposed (reject it and propose again).",
        request=ReviewSerializer,
        responses={200: ChangeRequestSerializer},
        examples=[REVIEW_EXAMPLE, CHANGE_REQUEST_EXAMPLE],
    ),
    reject=extend_schema(
        summary="Reject (or, its author, withdraw) a change request",
        description="Needs `features.approve_changerequest`, unless you are its author. Nothing is applied.",
        request=ReviewSerializer,
        responses={200: ChangeRequestSerializer},
        examples=[REVIEW_EXAMPLE, CHANGE_REQUEST_EXAMPLE],
    ),
)
class ChangeRequestViewSet(viewsets.ReadOnlyModelViewSet):
    """Reading needs a logged-in user; approving and rejecting check their permission in the service."""

    queryset = ChangeRequest.objects.select_related("created_by", "reviewed_by")
    serializer_class = ChangeRequestSerializer
    permission_classes = [IsAuthenticated]
    filterset_class = ChangeRequestFilter
    search_fields = ["title", "target_key"]
    ordering_fields = ["created_at", "status"]

    def _review(self, request, service) -> Response:
        serializer = ReviewSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        change_request = service(
            change_request=self.get_object(), user=request.user, comment=serializer.validated_data["comment"]
        )
        return Response(self.get_serializer(change_request).data)

    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._review(request, change_request_approve)

    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._review(request, change_request_reject)


@extend_schema_view(
    list=extend_schema(
        summary="List scheduled flag changes",
        description="Soonest first; filter by `status`, `feature__key`, `environment__key`.",
        examples=[SCHEDULED_CHANGE_EXAMPLE],
    ),
    retrieve=extend_schema(summary="Get a scheduled change", examples=[SCHEDULED_CHANGE_EXAMPLE]),
    create=extend_schema(
        summary="Schedule a flag change",
        description="Switch a flag on or off in an environment, or set a rollout rule's coverage, at "
        "`run_at` (to the minute). In an environment that requires approval the schedule itself needs "
        "approval: 202 with the change request that creates it once approved.",
        responses={201: ScheduledChangeSerializer, 202: ChangeRequestSerializer},
        examples=[
            SCHEDULED_CHANGE_EXAMPLE,
            OpenApiExample(
                "Switch on at launch",
                value={
                    "feature": "new_checkout",
                    "environment": "production",
                    "action": "switch_on",
                    "run_at": "2030-05-01T09:00:00Z",
                },
                request_only=True,
            ),
            OpenApiExample(
                "Ramp a rollout to half",
                value={
                    "feature": "new_checkout",
                    "environment": "production",
                    "action": "set_coverage",
                    "rule_position": 2,
                    "coverage": 0.5,
                    "run_at": "2030-05-02T09:00:00Z",
                },
                request_only=True,
            ),
        ],
    ),
    cancel=extend_schema(
        summary="Cancel a scheduled change",
        description="Only a pending one (409 once it ran or was cancelled). Never needs approval.",
        request=None,
        responses={200: ScheduledChangeSerializer},
        examples=[SCHEDULED_CHANGE_EXAMPLE],
    ),
)
class ScheduledChangeViewSet(
    mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    queryset = ScheduledChange.objects.select_related("feature", "environment", "created_by", "cancelled_by")
    serializer_class = ScheduledChangeSerializer
    filterset_fields = ["status", "feature__key", "environment__key"]
    ordering_fields = ["run_at", "created_at"]
    change_actions = frozenset({"cancel"})

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        scheduled_change = scheduled_change_create(user=request.user, **serializer.validated_data)
        return Response(self.get_serializer(scheduled_change).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        scheduled_change = scheduled_change_cancel(scheduled_change=self.get_object(), user=request.user)
        return Response(self.get_serializer(scheduled_change).data)
