import pytest
from rest_framework.test import APIClient

from tests.factories import ProductManagerFactory, UserFactory

pytest_plugins = ["tests.support.clickhouse"]


@pytest.fixture(autouse=True, scope="session")
def _celery_eager():
    """Tasks run in the test process, whatever broker REDIS_URL names."""
    from config.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True


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
