"""Schemathesis against ``/api/schema``: generated requests to every operation, valid and invalid,
through the Django WSGI application. No answer may be a 5xx, and every answer must be one the
schema documents (status code, content type, body schema, headers).

Bounded and reproducible: ``MAX_EXAMPLES`` generated cases per operation (25 valid, 15 invalid),
derandomized, no example database. Management operations are called with a product manager's
token against a workspace that has a metric, experiments in each state, a flag and environments
(half the cases name an existing object, half a generated key); SDK operations with an SDK key.
Each case runs in a savepoint that is rolled back, so every case meets the same workspace. The
number of requests is printed and written to ``test-artifacts/fuzz.json``.
"""

# The imports after the schemathesis check need it (E402 on purpose).
# ruff: noqa: E402

import time
from collections import Counter
from typing import Any

import pytest

# A dev dependency (with hypothesis); without it this module is skipped, not failed.
schemathesis = pytest.importorskip("schemathesis")

from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from experiments.services import experiment_pause, experiment_start
from features.models import Environment
from features.sdk import cache as sdk_cache
from tests.factories import ExperimentFactory, ExperimentMetricFactory, MetricFactory, ProductManagerFactory
from tests.hardening.conftest import write_artifact

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# Generated cases per operation: valid ones, and invalid ones where something can be invalid.
MAX_EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Existing objects, per path prefix, for the half of the cases that name one.
EXISTING_KEYS = {
    "/api/v1/metrics/": ["conversion", "unused"],
    "/api/v1/experiments/": ["exp_draft", "exp_running", "exp_paused"],
    "/api/v1/features/": ["only_in_a"],
    "/api/v1/environments/": ["sandbox", "production"],
    "/ofrep/v1/evaluate/flags/": ["only_in_a"],
}


@pytest.fixture
def wsgi_application():
    """Django's WSGI handler, without closing the database connection at each request's start and
    end (as Django's test client does): the test's transaction must outlive the requests."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield WSGIHandler()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def workspace(two_environments, clean_clickhouse, settings) -> dict[str, str]:
    """Objects for the operations to find, and the credentials: a product manager and an SDK key."""
    settings.SDK_RATE_LIMIT_PER_MINUTE = 0  # thousands of requests a minute from one key, on purpose
    metric = MetricFactory(key="conversion", event="purchase")
    MetricFactory(key="unused", event="unused")
    draft = ExperimentFactory(key="exp_draft")
    ExperimentMetricFactory(experiment=draft, metric=metric)
    running = ExperimentFactory(key="exp_running")
    ExperimentMetricFactory(experiment=running, metric=metric)
    experiment_start(experiment=running, user=None)
    paused = ExperimentFactory(key="exp_paused")
    experiment_start(experiment=paused, user=None)
    experiment_pause(experiment=paused, user=None)
    Environment.objects.create(key="sandbox", name="Sandbox", position=9)
    pm = ProductManagerFactory(username="fuzz_pm", password=None)
    return {
        "management": f"Token {Token.objects.create(user=pm).key}",
        "sdk": f"Bearer {two_environments.key_a}",
    }


def _headers(operation: Any, workspace: dict[str, str]) -> dict[str, str]:
    security = {name for requirement in operation.definition.raw.get("security", []) for name in requirement}
    if "SdkKey" in security:
        return {"Authorization": workspace["sdk"]}
    if security & {"tokenAuth", "cookieAuth"}:
        return {"Authorization": workspace["management"]}
    return {}


def _modes(operation: Any) -> tuple[GenerationMode, ...]:
    """Valid requests always; invalid ones where something can be invalid: a body, a query or a
    header parameter (a free-text path key alone cannot be, and generating none wastes seconds)."""
    raw = operation.definition.raw
    if "requestBody" in raw or any(p.get("in") in ("query", "header") for p in raw.get("parameters", [])):
        return (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    return (GenerationMode.POSITIVE,)


def _strategy(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> st.SearchStrategy:
    generated = operation.as_strategy(generation_mode=mode, headers=headers)
    keys = next((keys for prefix, keys in EXISTING_KEYS.items() if operation.path.startswith(prefix)), None)
    if "{key}" not in operation.path or not keys:
        return generated
    existing = st.one_of(
        *(
            operation.as_strategy(generation_mode=mode, headers=headers, path_parameters={"key": k})
            for k in keys
        )
    )
    return st.one_of(existing, generated)


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    for sub in getattr(exc, "exceptions", ()):
        text += f"\n  - {type(sub).__name__}: {sub}"
    notes = "\n".join(getattr(exc, "__notes__", ()))
    return (text + ("\n" + notes if notes else ""))[:4000]


def _fuzzer(
    strategy: st.SearchStrategy,
    max_examples: int,
    application: WSGIHandler,
    label: str,
    requests: Counter,
    statuses: Counter,
):
    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure as found
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        # Each case meets the same workspace: what it changes is rolled back.
        with transaction.atomic():
            response = case.call(app=application)
            transaction.set_rollback(True)
        sdk_cache.memo_clear()
        cache.delete("analytics:results-refresh:exp_running")  # one refresh per 30 s otherwise
        requests[label] += 1
        statuses[f"{case.method} {response.status_code}"] += 1
        case.validate_response(response, checks=CHECKS)

    return fuzz


def test_fuzz__every_operation__no_server_error_and_answers_conform_to_the_schema(
    workspace, wsgi_application, capsys
):
    application = wsgi_application
    schema = schemathesis.openapi.from_wsgi("/api/schema", application)
    operations = [result.ok() for result in schema.get_all_operations()]
    requests: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    failures: dict[str, str] = {}
    seconds: dict[str, float] = {}
    started = time.monotonic()

    for operation in operations:
        headers = _headers(operation, workspace)
        for mode in _modes(operation):
            label = f"{operation.label} [{mode.value}]"
            fuzz = _fuzzer(
                _strategy(operation, mode, headers),
                MAX_EXAMPLES[mode],
                application,
                label,
                requests,
                statuses,
            )
            operation_started = time.monotonic()
            try:
                fuzz()
            except Unsatisfiable:
                # No invalid request exists for this operation (e.g. a free-text path key, no body).
                assert mode is GenerationMode.NEGATIVE, label
            except (Exception, FailureGroup) as exc:  # noqa: BLE001 - failures of all operations reported together
                failures[label] = _describe(exc)
            seconds[label] = round(time.monotonic() - operation_started, 2)

    elapsed = time.monotonic() - started
    total = sum(requests.values())
    summary = {
        "requests": total,
        "operations": len(operations),
        "max_examples": {mode.value: n for mode, n in MAX_EXAMPLES.items()},
        "seconds": round(elapsed, 1),
        "statuses": dict(sorted(statuses.items())),
        "requests_per_operation": dict(sorted(requests.items())),
        "seconds_per_operation": dict(sorted(seconds.items(), key=lambda item: -item[1])),
        "failures": failures,
    }
    write_artifact("fuzz.json", summary)
    with capsys.disabled():
        print(f"\nschemathesis: {total} requests to {len(operations)} operations in {elapsed:.0f} s")
    assert not failures, "\n\n".join(f"{label}\n{failure}" for label, failure in failures.items())
