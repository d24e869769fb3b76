"""URLs of the evaluate benchmark: the platform's, plus a bare JSON view as the baseline.

Served only by the benchmark's gunicorn (``bench.evaluate.wsgi_application``); never in production.
"""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def bare(request: HttpRequest) -> JsonResponse:
    """The floor: Django's middleware and a JSON answer of OFREP's size, with no work at all."""
    return JsonResponse(
        {"key": "bench", "value": True, "reason": "STATIC", "variant": "default", "metadata": {}}
    )


urlpatterns = [
    path("bench/bare", bare),
    path("", include("config.urls")),
]
