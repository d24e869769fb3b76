from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.response import Response

from metrics.filters import MetricFilter
from metrics.models import Metric
from metrics.serializers import MetricSerializer
from metrics.services import metric_create, metric_delete, metric_update

METRIC_EXAMPLE = OpenApiExample(
    "Purchase rate",
    value={
        "key": "purchase_rate",
        "name": "Purchase rate",
        "description": "Share of users who buy at least once within a week of seeing the experiment.",
        "type": "binomial",
        "event": "purchase",
        "denominator": None,
        "window_hours": 168,
        "higher_is_better": True,
        "cap_value": None,
        "cuped": True,
        "cuped_lookback_days": 14,
        "tags": ["checkout"],
    },
)

TYPE_LOCKED = "The `type` cannot change while running or paused experiments use the metric (409)."


@extend_schema_view(
    list=extend_schema(
        summary="List metrics",
        description="Paginated; filter by `type` and `tag`, search by key, name and description.",
        examples=[METRIC_EXAMPLE],
    ),
    retrieve=extend_schema(summary="Get a metric", examples=[METRIC_EXAMPLE]),
    create=extend_schema(
        summary="Create a metric",
        description="A ratio metric needs a `denominator` (another metric's key).",
        examples=[METRIC_EXAMPLE],
    ),
    partial_update=extend_schema(
        summary="Change a metric",
        description=TYPE_LOCKED,
        examples=[OpenApiExample("Cap revenue", value={"cap_value": 500})],
    ),
    update=extend_schema(summary="Replace a metric", description=TYPE_LOCKED, examples=[METRIC_EXAMPLE]),
    destroy=extend_schema(summary="Delete a metric", description="Refused (409) while experiments use it."),
)
class MetricViewSet(viewsets.ModelViewSet):
    queryset = Metric.objects.select_related("denominator", "owner").prefetch_related("tags")
    serializer_class = MetricSerializer
    lookup_field = "key"
    filterset_class = MetricFilter
    search_fields = ["key", "name", "description"]
    ordering_fields = ["key", "name", "created_at"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        metric = metric_create(user=request.user, **serializer.validated_data)
        return Response(self.get_serializer(metric).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        partial = kwargs.pop("partial", False)
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        metric = metric_update(metric=serializer.instance, user=request.user, **serializer.validated_data)
        return Response(self.get_serializer(metric).data)

    def destroy(self, request, *args, **kwargs):
        metric_delete(metric=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
