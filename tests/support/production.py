"""Settings as a new process reads them, for tests that start one in a subprocess (settings are read
once per process, so debug off, or a file database, can only be tried in a new one)."""

import os
import secrets
import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def embedded_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any platform setting (so the embedded defaults: SQLite
    under ``PLATFORM_VAR_DIR``, local-memory cache, embedded ClickHouse, eager tasks) plus
    ``overrides``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "PLATFORM_", "CELERY_", "CLICKHOUSE_"))
        and key not in ("DATABASE_URL", "REDIS_URL", "EMBEDDED_SCHEDULER")
    }
    env.update(DJANGO_SETTINGS_MODULE="config.settings", PLATFORM_ENV_FILE=os.devnull, PYTHONPATH=str(ROOT))
    env.update(overrides)
    return env


def production_env(**overrides: str) -> dict[str, str]:
    """``embedded_env`` with debug off and a fresh secret key, plus ``overrides``."""
    return embedded_env(DJANGO_DEBUG="false", DJANGO_SECRET_KEY=secrets.token_urlsafe(50), **overrides)


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
