"""Faults: Redis, ClickHouse or PostgreSQL down. The platform keeps answering what it can, loses no
acknowledged event, says what is wrong on /api/health, and never shows a traceback."""

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import OperationalError, connection
from django.test import Client
from rest_framework.authtoken.models import Token

from analytics import clickhouse as ch
from analytics.ingestion.services import spool_drain
from analytics.models import SpoolBatch
from config.exceptions import DATABASE_UNAVAILABLE
from features.services import sdk_key_create
from tests.hardening.conftest import TwoEnvironments, closed_port

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
TRACEBACK_MARKERS = ("Traceback", 'File "', "OperationalError", "psycopg", "sqlite3", "django/")


def redis_caches(port: int) -> dict:
    """django-redis on a local port, with the short timeouts production uses (settings: 1 s)."""
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.3, "SOCKET_TIMEOUT": 0.3},
        }
    }


@pytest.fixture(params=["refused", "hung"])
def dead_redis(request) -> Iterator[int]:
    """A Redis that is not there (connections refused) or that accepts and never answers."""
    if request.param == "refused":
        yield closed_port()
        return
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # the kernel completes handshakes; nobody ever reads or writes
        yield listener.getsockname()[1]


def assert_no_traceback(text: str) -> None:
    for marker in TRACEBACK_MARKERS:
        assert marker not in text, f"{marker!r} leaked into a response: {text[:500]}"


# --- Redis down --------------------------------------------------------------------------------------------
def test_redis_down__evaluation__keeps_answering_from_memory_and_the_database(
    two_environments, settings, dead_redis
):
    # Given a warm process and then the cache gone
    a = TwoEnvironments.client(two_environments.key_a)
    assert a.post("/api/v1/evaluate", {"unit_id": "u-1"}, format="json").status_code == 200
    settings.CACHES = redis_caches(dead_redis)
    settings.FLAGS_GENERATION_CHECK_SECONDS = 0.0
    # A key this process never saw needs the database, not the cache
    _, fresh_key = sdk_key_create(environment=two_environments.b)
    b = TwoEnvironments.client(fresh_key)

    started = time.monotonic()
    answers = [a.post("/api/v1/evaluate", {"unit_id": f"u-{i}"}, format="json") for i in range(20)]
    ofrep = a.post("/ofrep/v1/evaluate/flags/only_in_a", {"context": {"targetingKey": "u-9"}}, format="json")
    cold = b.post("/ofrep/v1/evaluate/flags/only_in_a", {"context": {"targetingKey": "u-9"}}, format="json")
    elapsed = time.monotonic() - started

    assert [r.status_code for r in answers] == [200] * 20
    assert all(r.json()["flags"]["only_in_a"]["value"] is True for r in answers)
    assert ofrep.status_code == 200 and ofrep.json()["value"] is True
    assert cold.status_code == 200 and cold.json()["reason"] == "DISABLED"
    # One timeout at most, then the flag cache is left alone for a few seconds
    assert elapsed < 3, elapsed


def test_redis_down__health__degraded_200_fast(db, fresh_decision_plane, settings, dead_redis, client):
    settings.CACHES = redis_caches(dead_redis)
    started = time.monotonic()
    response = client.get("/api/health")
    elapsed = time.monotonic() - started
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["checks"]["cache"]["status"] == "error"
    assert body["checks"]["database"]["status"] == "ok"
    assert elapsed < 2, elapsed


# --- ClickHouse down ---------------------------------------------------------------------------------------
def events_body(count: int, prefix: str) -> dict:
    return {
        "events": [
            {"event_id": str(uuid.uuid4()), "name": "purchase", "unit_id": f"{prefix}-{i}", "value": i}
            for i in range(count)
        ]
    }


def stored_event_ids(prefix: str) -> set[str]:
    rows = ch.query(
        "SELECT toString(event_id) AS id FROM events_dedup WHERE startsWith(unit_id, {prefix:String})",
        {"prefix": prefix},
    )
    return {row["id"] for row in rows}


def test_clickhouse_down__ingestion_spools__health_shows_the_depth__drains_later(
    two_environments, clickhouse, clickhouse_faults, client
):
    # Given ClickHouse unreachable
    outage = clickhouse_faults.unavailable(methods=("insert", "ping"))
    sdk = TwoEnvironments.client(two_environments.key_a)
    bodies = [events_body(40, f"spool{n}") for n in range(3)]

    # When SDKs send events
    answers = [sdk.post("/api/v1/events", body, format="json") for body in bodies]

    # Then every event is acknowledged and waits in the spool; health says so
    assert [r.status_code for r in answers] == [202] * 3
    assert sum(r.json()["accepted"] for r in answers) == 120
    health = client.get("/api/health")
    checks = health.json()["checks"]
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    assert checks["clickhouse"]["status"] == "error"
    assert checks["clickhouse"]["spool_rows"] == 120
    assert_no_traceback(json.dumps(checks["clickhouse"].get("error", "")))

    # When ClickHouse is back and the drain runs
    outage.stop()
    spool_drain()

    # Then every acknowledged event is stored once, and health is ok again
    sent = {e["event_id"] for body in bodies for e in body["events"]}
    assert stored_event_ids("spool") == sent
    assert not SpoolBatch.objects.exists()
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["checks"]["clickhouse"]["spool_rows"] == 0


@pytest.mark.parametrize("clickhouse", ["http"], indirect=True)
def test_clickhouse_server_refusing_connections__events_acknowledged_and_drained(
    two_environments, clickhouse, settings, client
):
    # Given the HTTP backend pointed at a port nothing listens on (a real refused connection)
    working_url = settings.CLICKHOUSE_URL
    settings.CLICKHOUSE_URL = f"http://default@127.0.0.1:{closed_port()}/{clickhouse.database}?compress=false"
    settings.CLICKHOUSE_CONNECT_TIMEOUT = 1.0
    sdk = TwoEnvironments.client(two_environments.key_a)
    body = events_body(25, "refused")

    started = time.monotonic()
    answer = sdk.post("/api/v1/events", body, format="json")
    health = client.get("/api/health").json()
    assert time.monotonic() - started < 5

    assert answer.status_code == 202 and answer.json()["accepted"] == 25
    assert health["status"] == "degraded" and health["checks"]["clickhouse"]["spool_rows"] == 25

    settings.CLICKHOUSE_URL = working_url
    spool_drain()
    assert stored_event_ids("refused") == {e["event_id"] for e in body["events"]}


# --- PostgreSQL down ---------------------------------------------------------------------------------------
def refuse_every_query(execute, sql, params, many, context):
    raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')


def test_database_down__health_503__no_stack_trace(db, fresh_decision_plane, client):
    with connection.execute_wrapper(refuse_every_query):
        response = client.get("/api/health")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["status"] == "error"
    assert "Traceback" not in response.content.decode()


@pytest.mark.parametrize(
    "method, path",
    [("get", "/api/v1/metrics/"), ("get", "/api/v1/experiments/"), ("post", "/api/v1/features/")],
)
def test_database_down__management_api__clean_json_503(product_manager, fresh_decision_plane, method, path):
    token = Token.objects.create(user=product_manager)
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {token.key}")
    with connection.execute_wrapper(refuse_every_query):
        response = getattr(client, method)(path, {"key": "k", "name": "n"}, content_type="application/json")
    assert response.status_code == 503
    assert response.json() == {"detail": DATABASE_UNAVAILABLE}
    assert_no_traceback(response.content.decode())


def test_database_down__sdk_endpoints__warm_keep_answering_cold_clean_error(two_environments):
    a = TwoEnvironments.client(two_environments.key_a)
    ofrep = "/ofrep/v1/evaluate/flags/only_in_a"
    assert a.post(ofrep, {"context": {"targetingKey": "u"}}, format="json").status_code == 200
    _, cold_key = sdk_key_create(environment=two_environments.b)
    cold = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {cold_key}")
    with connection.execute_wrapper(refuse_every_query):
        warm_ofrep = a.post(ofrep, {"context": {"targetingKey": "u"}}, format="json")
        warm_evaluate = a.post("/api/v1/evaluate", {"unit_id": "u"}, format="json")
        cold_ofrep = cold.post(ofrep, {"context": {"targetingKey": "u"}}, content_type="application/json")
        cold_evaluate = cold.post("/api/v1/evaluate", {"unit_id": "u"}, content_type="application/json")
    # The configuration and the key are in memory: flags are still served
    assert warm_ofrep.status_code == 200 and warm_ofrep.json()["value"] is True
    assert warm_evaluate.status_code == 200
    # A key never seen cannot be checked: a clean error, never a traceback
    assert cold_ofrep.status_code == 500 and "errorDetails" in cold_ofrep.json()
    assert cold_evaluate.status_code == 503 and cold_evaluate.json() == {"detail": DATABASE_UNAVAILABLE}
    for response in (cold_ofrep, cold_evaluate):
        assert_no_traceback(response.content.decode())


def test_database_down__admin__plain_500_page_not_the_debug_page(superuser, settings):
    assert settings.DEBUG is False
    client = Client(raise_request_exception=False)
    client.force_login(superuser)
    with connection.execute_wrapper(refuse_every_query):
        response = client.get("/admin/")
    assert response.status_code == 500
    assert_no_traceback(response.content.decode())


SUBPROCESS_SCRIPT = """
import json
import django
django.setup()
from django.test import Client

client = Client(raise_request_exception=False)
client.cookies["sessionid"] = "a" * 32  # a returning user: the admin must read the session
answers = {}
for name, path, headers in [
    ("health", "/api/health", {}),
    ("metrics", "/api/v1/metrics/", {"HTTP_AUTHORIZATION": "Token not-a-real-token"}),
    ("evaluate", "/api/v1/evaluate", {"HTTP_AUTHORIZATION": "Bearer sdk_unknown"}),
    ("admin", "/admin/", {}),
]:
    method = client.post if name == "evaluate" else client.get
    response = method(path, **headers) if name != "evaluate" else method(
        path, {"unit_id": "u"}, content_type="application/json", **headers
    )
    answers[name] = {"status": response.status_code, "body": response.content.decode()}
print(json.dumps(answers))
"""


@pytest.mark.slow  # starts Python processes of its own
def test_database_down__real_refused_postgres_connection__503_and_no_traceback(tmp_path):
    # Given a production-like process whose PostgreSQL refuses connections (nothing on the port)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CLICKHOUSE_URL")},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"postgres://platform:secret@127.0.0.1:{closed_port()}/platform",
        "CLICKHOUSE_URL": f"http://default@127.0.0.1:{closed_port()}/experiments",
        "PLATFORM_VAR_DIR": str(tmp_path),
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "subprocess-only-" + "k" * 50,
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "CRITICAL",
        "PYTHONPATH": str(ROOT),
    }
    # When health, the management API, an SDK endpoint and the admin are asked
    result = subprocess.run(
        [sys.executable, "-c", SUBPROCESS_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    # Then health is 503, the APIs answer a clean 503, the admin a plain 500 page; no traceback anywhere
    assert answers["health"]["status"] == 503
    assert json.loads(answers["health"]["body"])["checks"]["database"]["status"] == "error"
    assert answers["metrics"]["status"] == 503
    assert json.loads(answers["metrics"]["body"]) == {"detail": DATABASE_UNAVAILABLE}
    assert answers["evaluate"]["status"] == 503
    assert answers["admin"]["status"] == 500
    for name in ("metrics", "evaluate", "admin"):
        assert_no_traceback(answers[name]["body"])


@pytest.mark.parametrize(
    "path, content_type", [("/api/v1/metrics/", "application/json"), ("/admin/", "text/html")]
)
def test_server_error_page__api_json_elsewhere_plain__never_a_traceback(rf, path, content_type):
    from django.urls import get_resolver

    handler = get_resolver().resolve_error_handler(500)
    response = handler(rf.get(path))
    assert response.status_code == 500
    assert content_type in response["Content-Type"]
    assert_no_traceback(response.content.decode())
