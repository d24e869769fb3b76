"""The SDK endpoints' edge (features.sdk.middleware): per-key rate limits, body limits and CORS."""

import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError

from features.models import Environment
from features.sdk import limits
from features.sdk.limits import SdkRateLimiter, rate_limiter
from tests.hardening.conftest import TwoEnvironments, closed_port

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]

EVALUATE = "/api/v1/evaluate"
ASSIGN = "/api/v1/assign"
OFREP_FLAG = "/ofrep/v1/evaluate/flags/only_in_a"
OFREP_BULK = "/ofrep/v1/evaluate/flags"
EVENTS = "/api/v1/events"
EXPOSURES = "/api/v1/exposures"

# A request each SDK endpoint answers without ClickHouse (an empty batch is a 400: still a request).
SDK_REQUESTS = {
    EVALUATE: {"unit_id": "u-1", "attributes": {}},
    ASSIGN: {"unit_id": "u-1", "log_exposure": False},
    OFREP_FLAG: {"context": {"targetingKey": "u-1"}},
    OFREP_BULK: {"context": {"targetingKey": "u-1"}},
    EVENTS: {"events": []},
    EXPOSURES: {"exposures": []},
}
SDK_PATHS = list(SDK_REQUESTS)


def post(client, path, body=None, **extra):
    return client.post(path, SDK_REQUESTS[path] if body is None else body, format="json", **extra)


def dead_redis_caches() -> dict:
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }


# --- rate limits -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", SDK_PATHS)
def test_sdk_rate_limit__past_the_limit__429_with_retry_after_in_seconds(two_environments, settings, path):
    settings.SDK_RATE_LIMIT_PER_MINUTE = 3
    client = TwoEnvironments.client(two_environments.key_a)
    statuses = [post(client, path).status_code for _ in range(3)]
    refused = post(client, path)
    assert 429 not in statuses
    assert refused.status_code == 429
    retry_after = refused.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 60
    key = "errorDetails" if path.startswith("/ofrep") else "detail"
    assert "retry in" in refused.json()[key]


def test_sdk_rate_limit__one_key_over__other_key_still_served(two_environments, settings):
    settings.SDK_RATE_LIMIT_PER_MINUTE = 2
    a, b = TwoEnvironments.client(two_environments.key_a), TwoEnvironments.client(two_environments.key_b)
    for _ in range(2):
        assert post(a, EVALUATE).status_code == 200
    assert post(a, EVALUATE).status_code == 429
    assert post(b, EVALUATE).status_code == 200


def test_sdk_rate_limit__counted_in_the_cache__another_process_refuses_too(two_environments, settings):
    # Given a key that used its minute in this process
    settings.SDK_RATE_LIMIT_PER_MINUTE = 3
    client = TwoEnvironments.client(two_environments.key_a)
    for _ in range(3):
        assert post(client, OFREP_FLAG).status_code == 200
    # When a process that never saw it (no local counts) serves the key
    rate_limiter.reset()
    # Then the shared count refuses it
    assert post(client, OFREP_FLAG).status_code == 429


def test_sdk_rate_limit__zero__off(two_environments, settings):
    settings.SDK_RATE_LIMIT_PER_MINUTE = 0
    client = TwoEnvironments.client(two_environments.key_a)
    assert all(post(client, OFREP_FLAG).status_code == 200 for _ in range(20))


def test_sdk_rate_limit__default__off_so_one_busy_service_is_never_cut_off():
    # One backend service on one key at 100 requests/s sends 6,000 a minute: a per-key limit is an
    # opt-in protection, sized by whoever knows the load (the limit's tests above set one).
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.SDK_RATE_LIMIT_PER_MINUTE)",
        ],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k != "SDK_RATE_LIMIT_PER_MINUTE"},
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PLATFORM_ENV_FILE": os.devnull,  # a developer's .env must not decide the default
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "0"


def test_sdk_rate_limit__default__requests_neither_counted_nor_refused(two_environments):
    # The old default (6,000) refused the 6,001st request of a minute; without a limit none is counted.
    assert django_settings.SDK_RATE_LIMIT_PER_MINUTE == 0
    client = TwoEnvironments.client(two_environments.key_a)
    assert all(post(client, OFREP_FLAG).status_code == 200 for _ in range(50))
    assert rate_limiter._windows == {}


@pytest.mark.parametrize("configured", ["5", "6000"])
def test_bench__rate_limit_set_in_the_environment__benchmarks_never_throttled(
    monkeypatch, tmp_path, configured
):
    from bench.evaluate import server_environment
    from bench.server import BenchPlatform

    monkeypatch.setenv("SDK_RATE_LIMIT_PER_MINUTE", configured)
    assert server_environment(tmp_path)["SDK_RATE_LIMIT_PER_MINUTE"] == "0"
    platform = BenchPlatform()
    try:
        assert platform.env["SDK_RATE_LIMIT_PER_MINUTE"] == "0"
    finally:
        platform.tmp.cleanup()


def test_sdk_rate_limit__cache_down__fails_open_fast(two_environments, settings):
    # Given a limit of 2 and a cache (Redis) that refuses connections
    client = TwoEnvironments.client(two_environments.key_a)
    assert post(client, EVALUATE).status_code == 200  # the configuration is in memory
    settings.SDK_RATE_LIMIT_PER_MINUTE = 2
    settings.CACHES = dead_redis_caches()
    rate_limiter.reset()
    # When the key sends more than its limit
    started = time.monotonic()
    statuses = [post(client, EVALUATE).status_code for _ in range(10)]
    # Then nothing is refused, nothing crashes, and the dead cache costs no timeouts
    assert statuses == [200] * 10
    assert time.monotonic() - started < 3


def test_rate_limiter__next_minute__allowed_again_and_retry_after_is_the_rest_of_the_minute(monkeypatch):
    now = [60 * 1_000_000 + 15.2]
    monkeypatch.setattr(limits, "time", types.SimpleNamespace(time=lambda: now[0]))
    limiter = SdkRateLimiter()
    tag = f"unit-test-{time.monotonic_ns()}"
    assert [limiter.hit(tag, 2) for _ in range(2)] == [None, None]
    assert limiter.hit(tag, 2) == 45  # 44.8 s left in the minute, rounded up
    now[0] += 45
    assert limiter.hit(tag, 2) is None


def test_rate_limiter__far_from_the_limit__one_cache_write_a_second(monkeypatch):
    calls = []
    limiter = SdkRateLimiter()
    monkeypatch.setattr(limiter, "_add", lambda key, delta: calls.append(delta) or sum(calls))
    tag = f"unit-test-{time.monotonic_ns()}"
    for _ in range(100):
        assert limiter.hit(tag, 6000) is None
    assert calls == [1]  # the first request synced; the next 99 wait for the next second


# --- body limits -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", SDK_PATHS)
def test_sdk_body__over_1_mib__413(two_environments, path):
    client = TwoEnvironments.client(two_environments.key_a)
    body = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
    response = client.post(path, body, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"


def test_sdk_body__over_the_limit_without_a_key__413_before_reading_it(db, fresh_decision_plane, api_client):
    body = b"x" * (1024 * 1024 + 1)
    assert api_client.post(OFREP_BULK, body, content_type="application/json").status_code == 413


def test_sdk_body__just_under_the_limit__read(two_environments, settings):
    settings.SDK_MAX_BODY_BYTES = 200
    client = TwoEnvironments.client(two_environments.key_a)
    body = b'{"context": {"targetingKey": "u-1", "pad": "' + b"x" * 100 + b'"}}'
    assert client.post(OFREP_FLAG, body, content_type="application/json").status_code == 200
    body = b'{"context": {"targetingKey": "u-1", "pad": "' + b"x" * 200 + b'"}}'
    assert client.post(OFREP_FLAG, body, content_type="application/json").status_code == 413


def test_management_body__over_data_upload_max_memory_size__413(pm_client):
    limit = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert 1024 * 1024 <= limit <= 10 * 1024 * 1024  # sane: a big feature fits, a flood does not
    body = b'{"key": "m", "name": "' + b"x" * limit + b'"}'
    assert pm_client.post("/api/v1/metrics/", body, content_type="application/json").status_code == 413


# --- CORS --------------------------------------------------------------------------------------------------
SHOP = "https://shop.example.com"


@pytest.fixture
def cors(two_environments) -> TwoEnvironments:
    """A allows the shop and a local dev server; B allows no browser."""
    two_environments.a.cors_allowed_origins = f"{SHOP}\nhttp://localhost:3000"
    two_environments.a.save()
    return two_environments


def preflight(client, path, origin):
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )


@pytest.mark.parametrize("path", SDK_PATHS)
def test_cors_preflight__allowed_origin__allow_headers_and_methods(cors, api_client, path):
    response = preflight(api_client, path, SHOP)
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert "POST" in response["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "x-api-key", "content-type", "if-none-match"} <= allowed
    assert int(response["Access-Control-Max-Age"]) > 0
    assert "Origin" in response["Vary"]


@pytest.mark.parametrize("path", [EVALUATE, OFREP_BULK])
def test_cors_preflight__unknown_origin__no_allow_origin(cors, api_client, path):
    response = preflight(api_client, path, "https://evil.example.net")
    assert "Access-Control-Allow-Origin" not in response


@pytest.mark.parametrize("path", SDK_PATHS)
def test_cors__key_of_an_environment_allowing_the_origin__allow_origin_and_etag_exposed(cors, path):
    response = post(TwoEnvironments.client(cors.key_a), path, HTTP_ORIGIN=SHOP)
    assert response.status_code < 500
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert "ETag" in response["Access-Control-Expose-Headers"]
    assert "Origin" in response["Vary"]


@pytest.mark.parametrize("path", SDK_PATHS)
def test_cors__key_of_an_environment_not_allowing_the_origin__no_allow_origin(cors, path):
    response = post(TwoEnvironments.client(cors.key_b), path, HTTP_ORIGIN=SHOP)
    assert response.status_code < 500
    assert "Access-Control-Allow-Origin" not in response


def test_cors__wildcard__any_origin(cors):
    cors.b.cors_allowed_origins = "*"
    cors.b.save()
    response = post(TwoEnvironments.client(cors.key_b), OFREP_BULK, HTTP_ORIGIN="https://anyone.example")
    assert response["Access-Control-Allow-Origin"] == "*"
    assert (
        preflight(TwoEnvironments.client(), OFREP_BULK, "https://anyone.example")[
            "Access-Control-Allow-Origin"
        ]
        == "*"
    )


def test_cors__origins_changed__next_request_uses_them(cors):
    client = TwoEnvironments.client(cors.key_b)
    assert "Access-Control-Allow-Origin" not in post(client, OFREP_FLAG, HTTP_ORIGIN=SHOP)
    cors.b.cors_allowed_origins = SHOP
    cors.b.save()
    assert post(client, OFREP_FLAG, HTTP_ORIGIN=SHOP)["Access-Control-Allow-Origin"] == SHOP


def test_cors__rate_limited__answer_still_readable_by_the_page(cors, settings):
    settings.SDK_RATE_LIMIT_PER_MINUTE = 1
    client = TwoEnvironments.client(cors.key_a)
    post(client, EVALUATE, HTTP_ORIGIN=SHOP)
    refused = post(client, EVALUATE, HTTP_ORIGIN=SHOP)
    assert refused.status_code == 429
    assert refused["Access-Control-Allow-Origin"] == SHOP
    assert "Retry-After" in refused["Access-Control-Expose-Headers"]


def test_cors__no_origin_header__no_cors_headers(cors):
    response = post(TwoEnvironments.client(cors.key_a), OFREP_FLAG)
    assert "Access-Control-Allow-Origin" not in response


def test_cors__management_endpoints__never_cors(cors, pm_client):
    response = pm_client.get("/api/v1/metrics/", HTTP_ORIGIN=SHOP)
    assert "Access-Control-Allow-Origin" not in response


def test_ofrep__warm_with_origin_and_rate_limit__no_database_query(cors, django_assert_num_queries):
    client = TwoEnvironments.client(cors.key_a)
    post(client, OFREP_FLAG, HTTP_ORIGIN=SHOP)
    with django_assert_num_queries(0):
        response = post(client, OFREP_FLAG, HTTP_ORIGIN=SHOP)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SHOP


def test_environment_cors_allowed_origins__not_an_origin__validation_error_names_it():
    environment = Environment(
        key="web",
        name="Web",
        cors_allowed_origins="https://ok.example\nftp://files.example\nhttps://a.example/path\n*",
    )
    with pytest.raises(ValidationError) as error:
        environment.full_clean()
    messages = error.value.message_dict["cors_allowed_origins"]
    assert len(messages) == 2
    assert any("ftp://files.example" in m for m in messages)
    assert any("https://a.example/path" in m for m in messages)


@pytest.mark.django_db
def test_environment_api__cors_allowed_origins__written_and_validated(api_client, superuser):
    from django.urls import reverse

    api_client.force_authenticate(superuser)
    url = reverse("environment-detail", args=["staging"])
    ok = api_client.patch(url, {"cors_allowed_origins": "https://shop.example.com"}, format="json")
    assert ok.status_code == 200, ok.json()
    assert ok.json()["cors_allowed_origins"] == "https://shop.example.com"
    bad = api_client.patch(url, {"cors_allowed_origins": "not an origin"}, format="json")
    assert bad.status_code == 400
    assert "cors_allowed_origins" in bad.json()
