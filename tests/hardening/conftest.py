"""Shared by the hardening tests: two environments with a key each, and a clean decision plane."""

import json
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from features.models import Environment
from features.services import feature_create, sdk_key_create
from tests.support.clickhouse import clickhouse_truncate

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
HERE = Path(__file__).resolve().parent
# Modules of this directory that are not quick checks: the schemathesis run and the load test. The
# fuzzer's findings (test_fuzz_findings.py) are plain regression tests and stay in the fast subset.
MARKED_MODULES = {"test_fuzz_api.py": pytest.mark.fuzz, "test_load.py": pytest.mark.load}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent == HERE and item.path.name in MARKED_MODULES:
            item.add_marker(MARKED_MODULES[item.path.name])


def write_artifact(name: str, payload: object) -> Path:
    """Numbers the lead reports (request counts, latencies) as JSON under test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class TwoEnvironments:
    """Environment A (production) and B (staging), an SDK key for each, and a flag on only in A."""

    a: Environment
    b: Environment
    key_a: str
    key_b: str

    @staticmethod
    def client(key: str | None = None, **headers: str) -> APIClient:
        client = APIClient()
        if key:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}", **headers)
        elif headers:
            client.credentials(**headers)
        return client


@pytest.fixture
def two_environments(db, fresh_decision_plane) -> TwoEnvironments:
    a = Environment.objects.get(key="production")
    b = Environment.objects.get(key="staging")
    feature_create(
        user=None,
        key="only_in_a",
        name="On in production only",
        type="boolean",
        default_value=False,
        environments={
            "production": {"enabled": True, "rules": [{"type": "force", "condition": {}, "value": True}]},
            "staging": {"enabled": False},
        },
    )
    _, key_a = sdk_key_create(environment=a, name="A")
    _, key_b = sdk_key_create(environment=b, name="B")
    return TwoEnvironments(a=a, b=b, key_a=key_a, key_b=key_b)


@pytest.fixture
def clean_clickhouse(clickhouse_schema: str):
    """The embedded ClickHouse of the test process on the default backend, emptied afterwards: the
    events and exposures a test sends through the API leave nothing behind for the next one."""
    yield clickhouse_schema
    clickhouse_truncate(clickhouse_schema)
