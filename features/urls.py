from rest_framework.routers import DefaultRouter

from features.governance.views import ChangeRequestViewSet, ScheduledChangeViewSet
from features.views import EnvironmentViewSet, FeatureViewSet

router = DefaultRouter()
router.register("features", FeatureViewSet, basename="feature")
router.register("environments", EnvironmentViewSet, basename="environment")
router.register("change-requests", ChangeRequestViewSet, basename="changerequest")
router.register("scheduled-changes", ScheduledChangeViewSet, basename="scheduledchange")
urlpatterns = router.urls
