import django_filters

from experiments.models import Experiment


class ExperimentFilter(django_filters.FilterSet):
    tag = django_filters.CharFilter(field_name="tags__name", help_text="Only experiments with this tag.")
    owner = django_filters.CharFilter(field_name="owner__username", help_text="Owner's username.")

    class Meta:
        model = Experiment
        fields = ["status", "tag", "owner", "engine", "layer"]
