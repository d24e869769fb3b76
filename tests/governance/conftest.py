import pytest
from rest_framework.test import APIClient

from features.models import Environment
from tests.factories import ProductManagerFactory


@pytest.fixture
def production(db) -> Environment:
    """Production requires approval; development and staging do not."""
    environment = Environment.objects.get(key="production")
    environment.requires_approval = True
    environment.save()
    return environment


@pytest.fixture
def author(db):
    return ProductManagerFactory(username="alice")


@pytest.fixture
def reviewer(db):
    return ProductManagerFactory(username="bob")


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def author_client(author) -> APIClient:
    return client_for(author)


@pytest.fixture
def reviewer_client(reviewer) -> APIClient:
    return client_for(reviewer)
