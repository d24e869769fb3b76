"""The ASGI entry point: GrowthBook's streams on an event loop, every other request on Django's threads.

``GET /sub/{key}`` (server-sent events, ``features.sdk.streaming``) is served by coroutines, so idle
streams hold no thread; every other request goes to the same Django WSGI application gunicorn
serves, run in a pool of ``ASGI_THREADS`` threads by a2wsgi, as gunicorn's threads would.

- ``make serve`` runs this with uvicorn: the embedded one-process mode, where a change made in the
  admin reaches the streams of the same process directly.
- ``docker-compose.yml`` runs it as the ``stream`` service, to which Caddy routes ``/sub/*`` (the web
  service stays on gunicorn); changes made elsewhere reach it through Redis.

    uvicorn config.asgi:application --host 127.0.0.1 --port 8000 --timeout-graceful-shutdown 3

(``--timeout-graceful-shutdown``: streams never end by themselves, so a stop must cut them; the
SDKs reconnect.)
"""

import os

from a2wsgi import WSGIMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.conf import settings  # noqa: E402 - after the settings module is named

from config.wsgi import application as wsgi_application  # noqa: E402 - starts the embedded scheduler where it runs
from features.sdk.streaming.app import StreamingApp  # noqa: E402 - needs Django set up

application = StreamingApp(fallback=WSGIMiddleware(wsgi_application, workers=settings.ASGI_THREADS))
