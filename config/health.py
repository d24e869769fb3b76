"""`/api/health`: is each part of the platform answering?"""

import logging
import time

from django.core.cache import cache, caches
from django.db import DatabaseError, connection
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

logger = logging.getLogger(__name__)


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        detail = check() or {}
        result = {"status": "ok", **detail}
    except Exception as exc:  # noqa: BLE001 - a health check reports any failure instead of raising
        logger.warning("health check failed: %s", exc)
        result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return result


def check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def check_cache() -> dict:
    cache.set("health:ping", "pong", timeout=10)
    if cache.get("health:ping") != "pong":
        raise RuntimeError("the cache did not return what was written")
    return {"backend": type(caches["default"]).__name__}


def check_clickhouse() -> dict:
    from analytics import clickhouse, selectors

    try:
        return selectors.clickhouse_health()
    except DatabaseError as exc:
        # The spool's depth is kept in the database, which is down (its own check says so): still
        # report ClickHouse itself rather than blaming it for the database.
        return {
            "version": clickhouse.ping(),
            "spool_rows": None,
            "spool_error": f"{type(exc).__name__}: {exc}"[:300],
        }


HEALTH_EXAMPLE = {
    "status": "ok",
    "checks": {
        "database": {"status": "ok", "vendor": "postgresql", "latency_ms": 0.4},
        "cache": {"status": "ok", "backend": "RedisCache", "latency_ms": 0.3},
        "clickhouse": {
            "status": "ok",
            "version": "26.9.1",
            "spool_rows": 0,
            "spool_batches": 0,
            "spool_oldest": None,
            "latency_ms": 2.1,
        },
    },
}


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Health of the database, cache and ClickHouse",
        description="200 while the platform can serve (ClickHouse or the cache may be degraded: events are "
        "spooled, flags fall back to the database); 503 when the database is down.",
        responses={
            (200, "application/json"): inline_serializer(
                "Health",
                {"status": serializers.ChoiceField(["ok", "degraded"]), "checks": serializers.DictField()},
            ),
            (503, "application/json"): inline_serializer(
                "HealthDown",
                {"status": serializers.ChoiceField(["degraded"]), "checks": serializers.DictField()},
            ),
        },
        examples=[OpenApiExample("All good", value=HEALTH_EXAMPLE, response_only=True)],
        tags=["health"],
    )
    def get(self, request):
        checks = {
            "database": _timed(check_database),
            "cache": _timed(check_cache),
            "clickhouse": _timed(check_clickhouse),
        }
        healthy = all(check["status"] == "ok" for check in checks.values())
        code = 503 if checks["database"]["status"] != "ok" else 200
        return Response({"status": "ok" if healthy else "degraded", "checks": checks}, status=code)
