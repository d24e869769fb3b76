from rest_framework.routers import DefaultRouter

from features.governance.views import ChangeRequestViewSet, ScheduledChangeViewSet
from features.holdouts.views import HoldoutViewSet
from features.views import EnvironmentViewSet, FeatureViewSet
from features.webhooks.views import WebhookViewSet

router = DefaultRouter()
router.register("features", FeatureViewSet, basename="feature")
router.register("environments", EnvironmentViewSet, basename="environment")
router.register("change-requests", ChangeRequestViewSet, basename="changerequest")
router.register("scheduled-changes", ScheduledChangeViewSet, basename="scheduledchange")
router.register("webhooks", WebhookViewSet, basename="webhook")
router.register("holdouts", HoldoutViewSet, basename="holdout")
urlpatterns = router.urls
