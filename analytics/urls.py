from django.urls import path

from analytics.views import ExperimentResultsRefreshView, ExperimentResultsView, PowerView

urlpatterns = [
    path("experiments/<slug:key>/results/", ExperimentResultsView.as_view(), name="experiment-results"),
    path(
        "experiments/<slug:key>/results/refresh/",
        ExperimentResultsRefreshView.as_view(),
        name="experiment-results-refresh",
    ),
    path("power", PowerView.as_view(), name="power"),
]
