"""Hands committed deliveries to whoever sends them, never to the request that caused them.

With a broker (production) each delivery is a Celery task (``features.tasks.webhook_deliver``),
retried with backoff by Celery. With eager tasks (the embedded one-process default, where a task runs
in the caller) a delivery would run inside the save's request: there it goes to a small pool of
threads of this process instead, which waits between attempts itself. Either way the save returns
before any receiver is contacted.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Iterable

from django.db import close_old_connections, connections

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_executor: concurrent.futures.ThreadPoolExecutor | None = None
_pending: set[concurrent.futures.Future] = set()
LOCAL_WORKERS = 2


def _tasks_eager() -> bool:
    from config.celery import app

    return bool(app.conf.task_always_eager)


def deliveries_send(delivery_ids: Iterable[int]) -> None:
    """Send these deliveries in the background (called on commit)."""
    if _tasks_eager():
        for delivery_id in delivery_ids:
            _local_submit(delivery_id)
        return
    from features.tasks import webhook_deliver

    for delivery_id in delivery_ids:
        webhook_deliver.delay(delivery_id)


def _local_submit(delivery_id: int) -> None:
    global _executor
    with _lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=LOCAL_WORKERS, thread_name_prefix="webhooks"
            )
        future = _executor.submit(_local_deliver, delivery_id)
        _pending.add(future)
    future.add_done_callback(_pending.discard)


def _local_deliver(delivery_id: int) -> None:
    """Every attempt of one delivery, waiting between them (this thread only)."""
    from features.webhooks.services import delivery_attempt

    try:
        while True:
            close_old_connections()
            wait = delivery_attempt(delivery_id=delivery_id)
            if wait is None:
                return
            time.sleep(wait)
    except Exception:  # a thread's exception would vanish silently: log it with its traceback
        logger.exception("Webhook delivery %s failed in the local sender", delivery_id)
    finally:
        connections.close_all()


def deliveries_wait(timeout: float) -> bool:
    """Wait until the local sender has nothing in hand (tests, and shutting down); True if idle."""
    with _lock:
        pending = list(_pending)
    done, not_done = concurrent.futures.wait(pending, timeout=timeout)
    return not not_done
