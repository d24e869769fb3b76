"""SDK endpoints: exact paths without a trailing slash (SDKs POST to them; a redirect would lose the body)."""

from django.urls import path

from features.sdk.ofrep import OfrepBulkView, OfrepFlagView
from features.sdk.payload import GrowthBookPayloadView
from features.sdk.remote_eval import RemoteEvalView
from features.sdk.views import AssignView, EvaluateView

urlpatterns = [
    path("api/v1/assign", AssignView.as_view(), name="sdk-assign"),
    path("api/v1/evaluate", EvaluateView.as_view(), name="sdk-evaluate"),
    path("api/features/<str:client_key>", GrowthBookPayloadView.as_view(), name="growthbook-features"),
    path("api/eval/<str:client_key>", RemoteEvalView.as_view(), name="growthbook-remote-eval"),
    path("ofrep/v1/evaluate/flags", OfrepBulkView.as_view(), name="ofrep-evaluate-flags"),
    path("ofrep/v1/evaluate/flags/<str:key>", OfrepFlagView.as_view(), name="ofrep-evaluate-flag"),
]
