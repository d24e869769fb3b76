from django.urls import path

from analytics.ingestion.views import EventIngestView, ExposureIngestView

urlpatterns = [
    path("events", EventIngestView.as_view(), name="events"),
    path("exposures", ExposureIngestView.as_view(), name="exposures"),
]
