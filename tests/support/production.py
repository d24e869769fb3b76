"""Settings as a production process reads them, for tests that start one in a subprocess (settings
are read once per process, so debug off and its secure defaults can only be tried in a new one)."""

import os
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def production_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any platform setting, plus debug off, a fresh secret key and
    ``overrides``; the database, cache and ClickHouse are the embedded defaults unless overridden."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "PLATFORM_", "CELERY_", "CLICKHOUSE_"))
        and key not in ("DATABASE_URL", "REDIS_URL", "EMBEDDED_SCHEDULER")
    }
    env.update(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_SETTINGS_MODULE="config.settings",
        PLATFORM_ENV_FILE=os.devnull,
        PYTHONPATH=str(ROOT),
    )
    env.update(overrides)
    return env
