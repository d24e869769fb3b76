import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# Embedded mode: the periodic schedules run in this process (see config.scheduler).
from config.scheduler import scheduler_start  # noqa: E402 - needs the settings loaded above

scheduler_start()
