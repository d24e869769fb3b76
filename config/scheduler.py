"""Periodic schedules inside the web process, for the embedded one-process mode.

In production a ``celery beat`` process reads the schedules (django-celery-beat's "Periodic tasks" in
the admin) and a worker runs the tasks. With the embedded defaults there is neither: tasks run eagerly
and only the web process may open the chDB directory. So the web process runs Celery's own beat
service in a daemon thread, with the same database scheduler: the same schedules, editable in the
admin, and each due task runs eagerly in that thread (scheduled starts and stops every minute, the
spool drain every minute, the results refresh every 5 minutes).

Started by ``config.wsgi`` when ``settings.EMBEDDED_SCHEDULER`` is on (the default with eager tasks),
so ``make demo``, gunicorn and runserver get it and management commands and tests do not. Run one
such web process per deployment: each process that starts it runs every schedule (the tasks are
idempotent, but the work would be repeated); with several, switch it off on all but one. Not with
gunicorn's ``--preload``: the master imports ``config.wsgi`` and would run the schedules itself (a
forked worker forgets the parent's thread, but does not start one). The embedded engine allows one
process anyway, so the embedded mode is one gunicorn worker with threads (``make serve``).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_service: _BeatThread | None = None  # once started in this process


class _BeatThread(threading.Thread):
    """Celery's beat service in a daemon thread (as ``celery.beat.EmbeddedService(thread=True)``), which
    closes its own database connections when it stops."""

    def __init__(self, app) -> None:
        from celery.beat import Service

        super().__init__(name="embedded-beat", daemon=True)
        self.app = app
        # A short tick, so that stopping takes at most a second; the database scheduler notices
        # schedule edits made in the admin within that time too.
        self.service = Service(
            app, max_interval=1, scheduler_cls=app.conf.beat_scheduler, remote_control=False
        )

    def run(self) -> None:
        self.app.set_current()
        try:
            self.service.start()
        finally:
            connections.close_all()

    def stop(self) -> None:
        self.service.stop(wait=False)  # the caller joins with a timeout


def scheduler_start(*, force: bool = False) -> bool:
    """Start the in-process beat thread (once per process); True if this call started it."""
    global _service
    if not (force or settings.EMBEDDED_SCHEDULER):
        return False
    with _lock:
        if _service is not None and _service.is_alive():
            return False
        from config.celery import app

        # Import every app's tasks module (autodiscovery), as a worker does on start: beat runs a task
        # it knows eagerly, and would hand an unknown one to the broker, where nothing consumes it.
        app.loader.import_default_modules()
        _service = _BeatThread(app)
        _service.start()
        atexit.register(scheduler_stop)
    logger.info("Embedded scheduler started: periodic tasks run in this process.")
    return True


def scheduler_stop(*, timeout: float = 10.0) -> None:
    """Stop the beat thread if this process runs one: it stops after its current task, and this waits
    for that at most ``timeout`` seconds (the thread is a daemon: a process exiting does not wait)."""
    global _service
    with _lock:
        service, _service = _service, None
    if service is not None and service.is_alive():
        service.stop()
        service.join(timeout=timeout)


def _forget_after_fork() -> None:
    """A forked child (gunicorn's workers with ``--preload``) has no beat thread, whatever the parent
    had: forget it and take a fresh lock, so that the child can start its own."""
    global _lock, _service
    _lock, _service = threading.Lock(), None


os.register_at_fork(after_in_child=_forget_after_fork)


def scheduler_running() -> bool:
    return _service is not None and _service.is_alive()
