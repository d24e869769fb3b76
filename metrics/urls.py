from rest_framework.routers import DefaultRouter

from metrics.views import MetricViewSet

router = DefaultRouter()
router.register("metrics", MetricViewSet, basename="metric")
urlpatterns = router.urls
