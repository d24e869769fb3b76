"""SDK endpoints: exact paths without a trailing slash (SDKs POST to them; a redirect would lose the body)."""

from django.urls import path

from features.payload_views import GrowthBookPayloadView
from features.remote_eval import RemoteEvalView
from features.sdk_views import AssignView, EvaluateView, OfrepBulkView, OfrepFlagView

urlpatterns = [
    path("api/v1/assign", AssignView.as_view(), name="sdk-assign"),
    path("api/v1/evaluate", EvaluateView.as_view(), name="sdk-evaluate"),
    path("api/features/<str:client_key>", GrowthBookPayloadView.as_view(), name="growthbook-features"),
    path("api/eval/<str:client_key>", RemoteEvalView.as_view(), name="growthbook-remote-eval"),
    path("ofrep/v1/evaluate/flags", OfrepBulkView.as_view(), name="ofrep-evaluate-flags"),
    path("ofrep/v1/evaluate/flags/<str:key>", OfrepFlagView.as_view(), name="ofrep-evaluate-flag"),
]
