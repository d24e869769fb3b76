from rest_framework.routers import DefaultRouter

from features.views import EnvironmentViewSet, FeatureViewSet

router = DefaultRouter()
router.register("features", FeatureViewSet, basename="feature")
router.register("environments", EnvironmentViewSet, basename="environment")
urlpatterns = router.urls
