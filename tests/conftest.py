import pytest
from rest_framework.test import APIClient

from tests.factories import ProductManagerFactory, UserFactory

pytest_plugins = ["tests.support.clickhouse", "tests.support.receiver"]


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    """Test users' passwords hashed with a fast hasher: the default (PBKDF2, a million iterations, on
    purpose slow) cost about a second of setup per test that makes a user. What is tested is who may
    do what, not the hasher; processes a test starts keep the real settings."""
    from django.test.utils import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True, scope="session")
def _no_exposure_flusher_thread():
    """The process-wide exposure buffer never starts its background flusher in tests: once started,
    that thread would drain, every few seconds, the buffer of whichever test runs next (which then
    finds its exposures gone, depending on the order tests run in). Tests flush it themselves."""
    from features.sdk import exposures

    autostart, exposures.buffer.autostart = exposures.buffer.autostart, False
    yield
    exposures.buffer.autostart = autostart


@pytest.fixture(autouse=True, scope="session")
def _incremental_refresh_by_setting_only():
    """``ROLLUP_INCREMENTAL=auto`` (the default) switches an experiment to incremental refreshes once a
    cold refresh of it took ``ROLLUP_INCREMENTAL_AUTO_MS``: out of reach here, so that how a test's
    experiment refreshes never depends on how loaded the machine is. Tests of the switch set it."""
    from django.test.utils import override_settings

    with override_settings(ROLLUP_INCREMENTAL_AUTO_MS=10**12):
        yield


@pytest.fixture(autouse=True, scope="session")
def _celery_eager():
    """Tasks run in the test process, whatever broker REDIS_URL names."""
    from config.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True


@pytest.fixture(autouse=True, scope="session")
def _cache_clear_own_keys():
    """``cache.clear()`` deletes this test process's keys (its ``KEY_PREFIX``) only. With Redis,
    django-redis would empty the whole database (FLUSHDB) under the other pytest-xdist workers, whose
    keys live there under prefixes of their own (tests/support/parallel.py), and under anyone else's."""
    from django.conf import settings

    if "django_redis" not in settings.CACHES["default"]["BACKEND"]:
        yield
        return
    from django_redis.client import DefaultClient

    def clear(self, client=None) -> None:
        self.delete_pattern("*", client=client)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DefaultClient, "clear", clear)
        yield


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def user(db):
    """Logged-in, but no permissions."""
    return UserFactory()


@pytest.fixture
def product_manager(db):
    return ProductManagerFactory()


@pytest.fixture
def superuser(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def pm_client(api_client, product_manager) -> APIClient:
    api_client.force_authenticate(product_manager)
    return api_client


@pytest.fixture
def fresh_decision_plane(monkeypatch):
    """Empty configuration memos, a new cache generation, rate counters of a fresh process, the cache
    believed reachable, and exposures kept in the buffer (no background flusher)."""
    from features.sdk import cache as sdk_cache
    from features.sdk import exposures
    from features.sdk.limits import rate_limiter

    monkeypatch.setattr(sdk_cache, "_cache_down_until", 0.0)
    sdk_cache.memo_clear()
    sdk_cache.config_invalidate()
    rate_limiter.reset()
    monkeypatch.setattr(exposures.buffer, "autostart", False)
    exposures.buffer.clear()
    yield
    exposures.buffer.clear()
    rate_limiter.reset()
    monkeypatch.setattr(sdk_cache, "_cache_down_until", 0.0)
    sdk_cache.memo_clear()
    sdk_cache.config_invalidate()
