from django.urls import path

from analytics.results.views import (
    ExperimentResultsDimensionsView,
    ExperimentResultsRefreshView,
    ExperimentResultsView,
)
from analytics.views import PowerView

urlpatterns = [
    path("experiments/<slug:key>/results/", ExperimentResultsView.as_view(), name="experiment-results"),
    path(
        "experiments/<slug:key>/results/refresh/",
        ExperimentResultsRefreshView.as_view(),
        name="experiment-results-refresh",
    ),
    path(
        "experiments/<slug:key>/results/dimensions/",
        ExperimentResultsDimensionsView.as_view(),
        name="experiment-results-dimensions",
    ),
    path("power", PowerView.as_view(), name="power"),
]
