"""Results refreshed incrementally through the service, the API's ``refresh`` block and the command."""

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from analytics.clickhouse import ClickHouseUnavailable
from analytics.models import ExperimentResult, SpoolBatch, SpoolKind
from analytics.results.selectors import experiment_results_get
from analytics.results.services import arrivals_watermark, experiment_results_refresh
from metrics.models import MetricType
from tests.analytics.test_results import running_experiment, traffic
from tests.analytics.test_rollup import Event, Exposure, write

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _incremental(settings):
    settings.ROLLUP_INCREMENTAL = "on"


T0 = dt.datetime(2024, 5, 10, 12, 0, 0, tzinfo=dt.UTC)


def test_experiment_results_refresh__second_time__incremental_with_new_data(clickhouse, settings):
    # Given a first refresh (full: no state yet)
    experiment = running_experiment()
    traffic(20, 20)
    first = experiment_results_refresh(experiment_id=experiment.pk)
    assert first.rollup_state["kind"] == "full"

    # When more units and events arrive and the experiment is refreshed again
    write(
        [Exposure("late", "treatment", T0, experiment="checkout")],
        [Event("late", "buy", T0 + dt.timedelta(hours=2)), Event("c0", "buy", T0 + dt.timedelta(hours=3))],
    )
    second = experiment_results_refresh(experiment_id=experiment.pk)

    # Then it is incremental, and counts them
    assert second.rollup_state["kind"] == "incremental"
    variants = {v["variant"]: v for v in second.payload["metrics"][0]["variants"]}
    assert variants["treatment"]["units"] == 21
    refresh = experiment_results_get(experiment=experiment).refresh
    assert refresh.kind == "incremental"
    watermark = dt.timedelta(seconds=settings.ROLLUP_ARRIVAL_MARGIN_SECONDS)
    assert (
        timezone.now() - watermark - dt.timedelta(minutes=1) < refresh.watermark < timezone.now() - watermark
    )


def test_rollup_command__full__recomputes_in_full(clickhouse):
    experiment = running_experiment(metrics=(("orders", MetricType.COUNT, "primary"),))
    traffic(10, 12)
    experiment_results_refresh(experiment_id=experiment.pk)
    out = io.StringIO()

    call_command("rollup", "checkout", "--full", stdout=out)

    assert "(full)" in out.getvalue().splitlines()[0]
    assert ExperimentResult.objects.get(experiment=experiment).rollup_state["kind"] == "full"
    call_command("rollup", "checkout", stdout=out)
    assert ExperimentResult.objects.get(experiment=experiment).rollup_state["kind"] == "incremental"


def test_arrivals_watermark__spooled_rows_waiting__held_back_to_the_oldest_batch(settings):
    settings.ROLLUP_ARRIVAL_MARGIN_SECONDS = 60
    now = timezone.now()
    margin = dt.timedelta(seconds=60)
    assert arrivals_watermark(now) == now - margin

    SpoolBatch.objects.create(
        kind=SpoolKind.EVENTS, payload=[], row_count=0, created_at=now - dt.timedelta(hours=2)
    )
    SpoolBatch.objects.create(
        kind=SpoolKind.EVENTS, payload=[], row_count=0, created_at=now - dt.timedelta(hours=1)
    )

    assert arrivals_watermark(now) == now - dt.timedelta(hours=2) - margin


def test_experiment_results_refresh__incremental_off__every_refresh_cold_and_no_state(clickhouse, settings):
    # Given incremental refresh switched off
    settings.ROLLUP_INCREMENTAL = "off"
    settings.ROLLUP_INCREMENTAL_AUTO_MS = 0
    experiment = running_experiment()
    traffic(20, 20)

    # When the experiment is refreshed twice
    experiment_results_refresh(experiment_id=experiment.pk)
    second = experiment_results_refresh(experiment_id=experiment.pk)

    # Then both were full (cold) refreshes that kept no state (only their time), and the refresh
    # block says so
    assert set(second.rollup_state) == {"kind", "watermark", "recomputed_metrics", "cold_rollup_ms"}
    assert second.rollup_state["kind"] == "full"
    assert "generation" not in second.rollup_state
    refresh = experiment_results_get(experiment=experiment).refresh
    assert refresh.kind == "full"
    assert refresh.watermark is None


def test_experiment_results_refresh__auto_and_a_slow_cold_refresh__switches_to_incremental(
    clickhouse, settings
):
    # Given the default mode, where every cold refresh counts as slow
    settings.ROLLUP_INCREMENTAL = "auto"
    settings.ROLLUP_INCREMENTAL_AUTO_MS = 0
    experiment = running_experiment()
    traffic(20, 20)

    # When the experiment is refreshed three times, with new data before the third
    first = experiment_results_refresh(experiment_id=experiment.pk)
    first_state = dict(first.rollup_state)
    second = experiment_results_refresh(experiment_id=experiment.pk)
    second_state = dict(second.rollup_state)
    write(
        [Exposure("late", "treatment", T0, experiment="checkout")],
        [Event("late", "buy", T0 + dt.timedelta(hours=2))],
    )
    third = experiment_results_refresh(experiment_id=experiment.pk)

    # Then the first is cold and records its time, the second builds the state (a full refresh) and
    # the third is incremental, counting the new unit
    assert first_state["kind"] == "full" and "generation" not in first_state
    assert first_state["cold_rollup_ms"] >= 0
    assert second_state["kind"] == "full" and second_state["generation"]
    assert third.rollup_state["kind"] == "incremental"
    variants = {v["variant"]: v for v in third.payload["metrics"][0]["variants"]}
    assert variants["treatment"]["units"] == 21


def test_experiment_results_refresh__auto_switch_fails__cold_for_a_day_then_tried_again(
    clickhouse, clickhouse_faults, settings
):
    # Given the default mode, every cold refresh counting as slow, and a first (cold) refresh
    settings.ROLLUP_INCREMENTAL = "auto"
    settings.ROLLUP_INCREMENTAL_AUTO_MS = 0
    experiment = running_experiment()
    traffic(20, 20)
    experiment_results_refresh(experiment_id=experiment.pk)

    # When the refresh that builds the state fails (its first write; the cold refresh only reads)
    clickhouse_faults.unavailable(methods=("command",), times=1)
    with pytest.raises(ClickHouseUnavailable):
        experiment_results_refresh(experiment_id=experiment.pk)

    # Then the next refreshes are cold, the failure remembered...
    after = experiment_results_refresh(experiment_id=experiment.pk)
    assert after.status == "ok"
    assert after.rollup_state["kind"] == "full" and "generation" not in after.rollup_state
    failed_at = dt.datetime.fromisoformat(after.rollup_state["auto_switch_failed_at"])
    assert timezone.now() - failed_at < dt.timedelta(minutes=1)

    # ...until a day has passed: then the switch is tried again, and builds the state
    after.rollup_state["auto_switch_failed_at"] = (failed_at - dt.timedelta(days=1)).isoformat()
    after.save(update_fields=["rollup_state"])
    again = experiment_results_refresh(experiment_id=experiment.pk)
    assert again.rollup_state["kind"] == "full" and again.rollup_state["generation"]


def test_experiment_results_refresh__auto_and_fast_cold_refreshes__stays_cold(clickhouse, settings):
    # Given the default mode, with cold refreshes faster than the switch
    settings.ROLLUP_INCREMENTAL = "auto"
    settings.ROLLUP_INCREMENTAL_AUTO_MS = 10**9
    experiment = running_experiment()
    traffic(20, 20)

    # When the experiment is refreshed twice
    experiment_results_refresh(experiment_id=experiment.pk)
    second = experiment_results_refresh(experiment_id=experiment.pk)

    # Then both are cold: no state is kept
    assert second.rollup_state["kind"] == "full"
    assert "generation" not in second.rollup_state


def test_experiment_results_refresh__auto_and_state_kept__stays_incremental(clickhouse, settings):
    # Given an experiment that keeps state (refreshed while incremental refresh was on)
    experiment = running_experiment()
    traffic(20, 20)
    experiment_results_refresh(experiment_id=experiment.pk)

    # When it is refreshed in the default mode, however fast its cold refresh would be
    settings.ROLLUP_INCREMENTAL = "auto"
    settings.ROLLUP_INCREMENTAL_AUTO_MS = 10**9
    second = experiment_results_refresh(experiment_id=experiment.pk)

    # Then it goes on from its state
    assert second.rollup_state["kind"] == "incremental"
