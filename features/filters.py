import django_filters

from features.models import Feature


class FeatureFilter(django_filters.FilterSet):
    tag = django_filters.CharFilter(field_name="tags__name", help_text="Only features with this tag.")

    class Meta:
        model = Feature
        fields = ["type", "tag"]
