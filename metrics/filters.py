import django_filters

from metrics.models import Metric


class MetricFilter(django_filters.FilterSet):
    tag = django_filters.CharFilter(field_name="tags__name", help_text="Only metrics with this tag.")

    class Meta:
        model = Metric
        fields = ["type", "tag"]
