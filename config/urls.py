from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from config.health import HealthView

api_v1 = [
    path("", include("analytics.ingestion.urls")),
    path("", include("metrics.urls")),
    path("", include("analytics.urls")),  # experiments/{key}/results/ before the experiments router
    path("", include("experiments.urls")),
    path("", include("features.urls")),
    path("", include("features.config_file.urls")),
]

urlpatterns = [
    path("", include("features.sdk.urls")),  # SDK paths: api/v1/assign|evaluate, ofrep/v1/... (hot, first)
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/health", HealthView.as_view(), name="health"),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
]

# JSON error answers under /api/ and /ofrep/, Django's plain pages elsewhere (config.exceptions).
handler404 = "config.exceptions.page_not_found"
handler500 = "config.exceptions.server_error"
