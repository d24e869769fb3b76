from rest_framework.routers import DefaultRouter

from experiments.views import ExperimentViewSet

router = DefaultRouter()
router.register("experiments", ExperimentViewSet, basename="experiment")
urlpatterns = router.urls
