"""A dimension breakdown is computed once per key, and at most ``RESULTS_BREAKDOWN_MAX_CONCURRENT`` at
once (``analytics.results.breakdown``): concurrent requests on threads, the computation held on an
Event until the test releases it, so what each request sees does not depend on timing.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import cache
from django.db import connections
from rest_framework.test import APIClient

from analytics.clickhouse import ClickHouseError
from analytics.results import breakdown as breakdown_module
from analytics.results.services import experiment_results_refresh
from tests.analytics.test_results_dimensions import experiment_with_metrics, results, traffic

# Requests on other threads read the experiment through their own database connections: the test's
# rows must be committed, hence transaction=True (serialized_rollback: the migrations' rows, such as
# the product managers' group, come back for the tests after this one).
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
HANG_GUARD_SECONDS = 120  # only bounds a broken test; nothing below depends on how long anything takes


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


class HeldBreakdown:
    """``rollup_breakdown`` recording each call; the first signals ``started`` and holds until
    ``release`` is set, then computes for real (later ones compute at once, so a second computation
    shows up in ``calls`` instead of hanging the test)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls: list[str] = []
        self._real = breakdown_module.rollup_breakdown
        monkeypatch.setattr(breakdown_module, "rollup_breakdown", self)

    def __call__(self, spec, dimension_name: str):
        self.calls.append(dimension_name)
        if len(self.calls) == 1:
            self.started.set()
            if not self.release.wait(timeout=HANG_GUARD_SECONDS):
                raise AssertionError("the held breakdown was never released")
        return self._real(spec, dimension_name)


def get_results(user, **params):
    """``GET .../results/`` of the experiment ``shop`` as ``user``, from any thread."""
    client = APIClient()
    client.force_authenticate(user)
    try:
        return results(client, "shop", **params)
    finally:
        connections.close_all()  # this thread's own connection


@pytest.fixture
def refreshed(clickhouse, product_manager):
    experiment = experiment_with_metrics("shop")
    traffic()
    experiment_results_refresh(experiment_id=experiment.pk)
    return experiment


def test_breakdown__asked_while_another_request_computes_it__503_busy_with_retry_after_computed_once(
    refreshed, product_manager, settings, monkeypatch
):
    # Given a request computing the breakdown by country, held mid-computation
    settings.RESULTS_BREAKDOWN_WAIT_SECONDS = 0
    held = HeldBreakdown(monkeypatch)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(get_results, product_manager, dimension="country")
        try:
            assert held.started.wait(timeout=HANG_GUARD_SECONDS)

            # When a second request asks for the same breakdown meanwhile
            second = get_results(product_manager, dimension="country")
        finally:
            held.release.set()
        first = first.result(timeout=HANG_GUARD_SECONDS)

    # Then the second is told to come back, not computed again; the first has the breakdown
    assert second.status_code == 503, second.content
    assert second.json()["code"] == "breakdown_busy"
    assert "another request is computing it" in second.json()["detail"]
    assert second["Retry-After"] == str(breakdown_module.BREAKDOWN_RETRY_AFTER_SECONDS)
    assert first.status_code == 200, first.content
    assert [lv["level"] for lv in first.json()["dimension"]["levels"]] == ["de", "fr", "se", "__missing__"]
    assert held.calls == ["country"]
    # and asked again, it is the cached breakdown
    again = get_results(product_manager, dimension="country")
    assert again.status_code == 200 and again.json()["dimension"] == first.json()["dimension"]
    assert held.calls == ["country"]


def test_breakdown__waiting_request__answered_with_the_other_requests_result_computed_once(
    refreshed, product_manager, settings, monkeypatch
):
    # Given a request computing the breakdown by country, held, and a second request for it that
    # waits (its pauses recorded, each lasting until the first request has answered)
    settings.RESULTS_BREAKDOWN_WAIT_SECONDS = HANG_GUARD_SECONDS
    held = HeldBreakdown(monkeypatch)
    waiting, answered = threading.Event(), threading.Event()

    def pause(seconds: float) -> None:
        waiting.set()
        answered.wait(timeout=seconds)

    monkeypatch.setattr(breakdown_module, "_pause", pause)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(get_results, product_manager, dimension="country")
        try:
            assert held.started.wait(timeout=HANG_GUARD_SECONDS)
            second = pool.submit(get_results, product_manager, dimension="country")
            assert waiting.wait(timeout=HANG_GUARD_SECONDS)
        finally:
            # When the first computation ends
            held.release.set()
        first = first.result(timeout=HANG_GUARD_SECONDS)
        answered.set()
        second = second.result(timeout=HANG_GUARD_SECONDS)

    # Then both have the same breakdown, computed once
    assert first.status_code == 200, first.content
    assert second.status_code == 200, second.content
    assert second.json()["dimension"] == first.json()["dimension"]
    assert held.calls == ["country"]


def test_breakdown__more_dimensions_than_may_compute_at_once__503_busy_until_a_slot_frees(
    refreshed, product_manager, settings, monkeypatch
):
    # Given one breakdown at a time, and the breakdown by country computing (held)
    settings.RESULTS_BREAKDOWN_MAX_CONCURRENT = 1
    settings.RESULTS_BREAKDOWN_WAIT_SECONDS = 0
    held = HeldBreakdown(monkeypatch)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(get_results, product_manager, dimension="country")
        try:
            assert held.started.wait(timeout=HANG_GUARD_SECONDS)

            # When another dimension is asked for meanwhile
            other = get_results(product_manager, dimension="browser")
        finally:
            held.release.set()
        first = first.result(timeout=HANG_GUARD_SECONDS)

    # Then it is told to come back (nothing computed for it), and once the slot is free it is computed
    assert other.status_code == 503, other.content
    assert other.json()["code"] == "breakdown_busy"
    assert "as many other breakdowns as may be computed at once (1)" in other.json()["detail"]
    assert other["Retry-After"] == str(breakdown_module.BREAKDOWN_RETRY_AFTER_SECONDS)
    assert first.status_code == 200, first.content
    assert held.calls == ["country"]
    later = get_results(product_manager, dimension="browser")
    assert later.status_code == 200, later.content
    assert held.calls == ["country", "browser"]


def test_breakdown__computation_fails__lock_and_slot_released_the_next_request_computes(
    refreshed, product_manager, settings, monkeypatch
):
    # Given one breakdown at a time, and ClickHouse refusing the first computation
    settings.RESULTS_BREAKDOWN_MAX_CONCURRENT = 1
    settings.RESULTS_BREAKDOWN_WAIT_SECONDS = 0
    calls = []
    real = breakdown_module.rollup_breakdown

    def failing_once(spec, dimension_name):
        calls.append(dimension_name)
        if len(calls) == 1:
            raise ClickHouseError("Code: 241. Memory limit exceeded")
        return real(spec, dimension_name)

    monkeypatch.setattr(breakdown_module, "rollup_breakdown", failing_once)

    failed = get_results(product_manager, dimension="country")
    # When the breakdown is asked for again, and another dimension too
    retried = get_results(product_manager, dimension="country")
    other = get_results(product_manager, dimension="browser")

    # Then the failure was a 503 unavailable, and neither the key's lock nor the one slot stayed taken
    assert failed.status_code == 503 and failed.json()["code"] == "breakdown_unavailable"
    assert "Retry-After" not in failed
    assert retried.status_code == 200, retried.content
    assert other.status_code == 200, other.content
    assert calls == ["country", "country", "browser"]
