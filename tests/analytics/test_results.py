"""Results: the document's rules (SRM, corrections, guardrails), the stored snapshot, the API, the
schedule and ``manage.py rollup``."""

import datetime as dt
import io
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from scipy import stats as scipy_stats

from analytics import tasks
from analytics.clickhouse import ClickHouseUnavailable
from analytics.models import ExperimentResult
from analytics.results.analysis import MetricAnalysis, results_document
from analytics.results.services import experiment_results_refresh
from analytics.rollup import Measure, MetricSpec, Rollup, RollupSpec
from analytics.stats import AnalysisOptions, SampleStats
from experiments.models import ExperimentStatus, MetricRole
from metrics.models import MetricType
from tests.analytics.test_rollup import Event, Exposure, write
from tests.factories import ExperimentFactory, ExperimentMetricFactory, MetricFactory, UserFactory

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _empty_cache():
    """Results and refresh throttles are cached by experiment; tests reuse primary keys."""
    cache.clear()
    yield
    cache.clear()


# --- independent references ---------------------------------------------------------------------------------
def holm_reference(p_values: list[float]) -> list[float]:
    """Holm (1979): the i-th smallest p times (m − i + 1), made monotone, capped at 1."""
    m = len(p_values)
    ranked = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(ranked):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def bh_reference(p_values: list[float]) -> list[float]:
    """Benjamini–Hochberg (1995): p·m/rank, made monotone from the largest down."""
    m = len(p_values)
    ranked = sorted(range(m), key=lambda i: p_values[i], reverse=True)
    adjusted, running = [0.0] * m, 1.0
    for position, i in enumerate(ranked):
        rank = m - position
        running = min(running, p_values[i] * m / rank)
        adjusted[i] = running
    return adjusted


# --- the document, from synthetic sums --------------------------------------------------------------------
def sample(seed: int, n: int, mean: float, sd: float = 1.0) -> SampleStats:
    return SampleStats.from_values(np.random.default_rng(seed).normal(mean, sd, n))


def rollup_of(totals: dict[str, list], variants=("control", "treatment")) -> Rollup:
    metrics = tuple(MetricSpec(key, "sum", Measure(key, "sum")) for key in totals)
    spec = RollupSpec(experiment="exp", variants=tuple(variants), until=NOW, metrics=metrics)
    units = {v: stats.n for v, stats in next(iter(totals.values()))}
    return Rollup(spec=spec, units=units, multiple_exposures=0, unknown_variant_units=0, first_exposure_at=None,
                  last_exposure_at=None, last_event_at=None, totals=totals)  # fmt: skip


def analysis(
    key: str, role: str, *, higher_is_better: bool = True, engine: str = "frequentist"
) -> MetricAnalysis:
    options = AnalysisOptions(engine=engine, higher_is_better=higher_is_better)
    return MetricAnalysis(key=key, name=key.title(), role=role, type="sum", options=options)


def document(rollup: Rollup, metrics: list[MetricAnalysis], *, correction="holm", weights=(1.0, 1.0)) -> dict:
    """The document's JSON, as the API serves it."""
    return results_document(experiment="exp", rollup=rollup, metrics=metrics, weights=weights,
                            srm_threshold=0.001, correction=correction, computed_at=NOW).to_dict()  # fmt: skip


@pytest.mark.parametrize(("correction", "reference"), [("holm", holm_reference), ("bh", bh_reference)])
def test_results_document__correction__across_primary_and_secondary_only(correction, reference):
    # Given two primaries, a secondary and a guardrail, each with two treatments (6 + 2 comparisons)
    variants = ("control", "a", "b")
    lifts = {"p1": (0.03, 0.05), "p2": (0.0, 0.08), "s1": (0.06, 0.02), "g1": (0.04, 0.0)}
    totals = {
        key: [
            (v, sample(zlib.crc32(f"{key}:{v}".encode()), 2000, 10.0 + 10.0 * lift))
            for v, lift in zip(variants, (0.0, *ab), strict=True)
        ]
        for key, ab in lifts.items()
    }
    metrics = [analysis("p1", "primary"), analysis("p2", "primary"), analysis("s1", "secondary"),
               analysis("g1", "guardrail")]  # fmt: skip

    doc = document(rollup_of(totals, variants), metrics, correction=correction, weights=(1, 1, 1))

    comparisons = {(m["metric"], c["variant"]): c for m in doc["metrics"] for c in m["comparisons"]}
    family = [k for k in comparisons if k[0] != "g1"]
    raw = [comparisons[k]["p_value"] for k in family]
    for key, expected in zip(family, reference(raw), strict=True):
        assert comparisons[key]["p_value_adjusted"] == pytest.approx(expected, rel=1e-12)
        assert comparisons[key]["significant"] == (expected < 0.05)
    for variant in ("a", "b"):
        guardrail = comparisons[("g1", variant)]
        assert guardrail["p_value_adjusted"] == guardrail["p_value"]
    assert any(comparisons[k]["p_value_adjusted"] > comparisons[k]["p_value"] for k in family)


def test_results_document__no_correction__adjusted_equals_raw():
    totals = {"m": [("control", sample(1, 500, 10.0)), ("treatment", sample(2, 500, 10.3))]}

    doc = document(rollup_of(totals), [analysis("m", "primary")], correction="none")

    [comparison] = doc["metrics"][0]["comparisons"]
    assert comparison["p_value_adjusted"] == comparison["p_value"] is not None


def test_results_document__raw_significant_but_not_after_holm__not_significant():
    # Given four primaries: one with p ≈ 0.03 alone would be significant, Holm (×4) makes it not
    totals = {
        "hit": [("control", sample(5, 3000, 10.0)), ("treatment", sample(6, 3000, 10.0))],
        **{f"m{i}": [("control", sample(10 + i, 3000, 10.0)), ("treatment", sample(20 + i, 3000, 10.0))]
           for i in range(3)},
    }  # fmt: skip
    # shift "hit"'s treatment until its raw p-value is between 0.01 and 0.05
    control, treatment = totals["hit"][0][1], totals["hit"][1][1]
    for shift in np.linspace(0.0, 0.2, 201):
        moved = SampleStats(treatment.n, treatment.sum + shift * treatment.n,
                            treatment.sum_squares + 2 * shift * treatment.sum + shift**2 * treatment.n)  # fmt: skip
        totals["hit"] = [("control", control), ("treatment", moved)]
        doc = document(rollup_of(totals), [analysis(k, "primary") for k in totals])
        hit = doc["metrics"][0]["comparisons"][0]
        if 0.01 < hit["p_value"] < 0.05:
            break

    assert 0.01 < hit["p_value"] < 0.05 and hit["relative"]["ci"][0] > 0
    assert hit["p_value_adjusted"] > 0.05
    assert hit["significant"] is False and hit["direction"] == "inconclusive"


def test_results_document__skewed_split__srm_flagged():
    totals = {"m": [("control", sample(1, 1000, 1.0)), ("treatment", sample(2, 820, 1.0))]}

    doc = document(rollup_of(totals), [analysis("m", "primary")])

    expected = scipy_stats.chisquare([1000, 820]).pvalue
    assert doc["srm"] == {"p_value": pytest.approx(expected, rel=1e-9), "units": {"control": 1000, "treatment": 820},
                          "ok": False, "threshold": 0.001, "weights": {"control": 1.0, "treatment": 1.0}}  # fmt: skip
    assert doc["warnings"][0]["code"] == "sample_ratio_mismatch"


def test_results_document__weights_two_to_one__matching_split_ok():
    totals = {"m": [("control", sample(1, 2000, 1.0)), ("treatment", sample(2, 1010, 1.0))]}

    doc = document(rollup_of(totals), [analysis("m", "primary")], weights=(2.0, 1.0))

    assert doc["srm"]["ok"] is True
    assert doc["srm"]["p_value"] == pytest.approx(
        scipy_stats.chisquare([2000, 1010], [2006.67, 1003.33]).pvalue, rel=1e-3
    )
    assert doc["warnings"] == []


@pytest.mark.parametrize("engine", ["frequentist", "bayesian"])
def test_results_document__guardrail_worse__flagged_with_warning(engine):
    # Given errors (lower is better) up 20% in the treatment, and a latency guardrail that improved
    totals = {
        "errors": [("control", sample(1, 4000, 1.0)), ("treatment", sample(2, 4000, 1.2))],
        "latency": [("control", sample(3, 4000, 5.0)), ("treatment", sample(4, 4000, 4.5))],
    }
    metrics = [
        analysis("errors", "guardrail", higher_is_better=False, engine=engine),
        analysis("latency", "guardrail", higher_is_better=False, engine=engine),
    ]

    doc = document(rollup_of(totals), metrics)

    errors, latency = (m["comparisons"][0] for m in doc["metrics"])
    assert errors["guardrail_violated"] is True
    assert latency["guardrail_violated"] is False
    assert [(w["code"], w["metric"], w["variant"]) for w in doc["warnings"]] == [
        ("guardrail_violated", "errors", "treatment")
    ]


def test_results_document__primary_metric__guardrail_flag_null():
    totals = {"m": [("control", sample(1, 100, 1.0)), ("treatment", sample(2, 100, 3.0))]}

    doc = document(rollup_of(totals), [analysis("m", "primary", higher_is_better=False)])

    assert doc["metrics"][0]["comparisons"][0]["guardrail_violated"] is None
    assert doc["warnings"] == []


# --- the stored snapshot, through ClickHouse ---------------------------------------------------------------
T0 = timezone.now().replace(microsecond=0) - dt.timedelta(days=3)


def running_experiment(*, key: str = "checkout", metrics=(("orders", MetricType.COUNT, MetricRole.PRIMARY),),
                       variants=("control", "treatment"), **fields):  # fmt: skip
    fields = {"status": ExperimentStatus.RUNNING, "started_at": T0 - dt.timedelta(hours=1), **fields}
    experiment = ExperimentFactory(key=key, variants=list(variants), **fields)
    for metric_key, metric_type, role in metrics:
        metric = MetricFactory(key=metric_key, type=metric_type, event="buy")
        ExperimentMetricFactory(experiment=experiment, metric=metric, role=role)
    return experiment


def traffic(control: int, treatment: int, *, buyers_every: int = 3) -> None:
    exposures = [Exposure(f"c{i}", "control", T0, experiment="checkout") for i in range(control)]
    exposures += [Exposure(f"t{i}", "treatment", T0, experiment="checkout") for i in range(treatment)]
    events = [Event(e.unit_id, "buy", T0 + dt.timedelta(hours=1)) for e in exposures[::buyers_every]]
    write(exposures, events)


def test_experiment_results_refresh__skewed_split__stored_with_srm_warning(clickhouse):
    experiment = running_experiment()
    traffic(300, 200)

    snapshot = experiment_results_refresh(experiment_id=experiment.pk, refreshed_by="test")

    assert snapshot.status == "ok" and snapshot.last_error == ""
    assert snapshot.payload["srm"]["units"] == {"control": 300, "treatment": 200}
    assert snapshot.payload["srm"]["ok"] is False
    assert snapshot.payload["srm"]["p_value"] == pytest.approx(scipy_stats.chisquare([300, 200]).pvalue)
    assert snapshot.payload["warnings"][0]["code"] == "sample_ratio_mismatch"
    assert [m["metric"] for m in snapshot.payload["metrics"]] == ["orders"]
    assert ExperimentResult.objects.count() == 1


def test_experiment_results_refresh__clickhouse_down__keeps_last_good_payload_and_records_error(
    clickhouse, clickhouse_faults
):
    experiment = running_experiment()
    traffic(100, 100)
    good = experiment_results_refresh(experiment_id=experiment.pk).payload

    with clickhouse_faults.unavailable(methods=("query",)), pytest.raises(ClickHouseUnavailable):
        experiment_results_refresh(experiment_id=experiment.pk, refreshed_by="schedule")

    snapshot = ExperimentResult.objects.get(experiment=experiment)
    assert snapshot.payload == good
    assert snapshot.status == "failed"
    assert "unreachable" in snapshot.last_error
    assert snapshot.last_error_at is not None and snapshot.refreshed_by == "schedule"


def test_experiment_results_refresh__second_run__updates_the_same_row(clickhouse):
    experiment = running_experiment()
    traffic(50, 50)
    first = experiment_results_refresh(experiment_id=experiment.pk)
    traffic(10, 10)  # the same units again: nothing changes in the numbers but computed_at

    second = experiment_results_refresh(experiment_id=experiment.pk)

    assert first.pk == second.pk and ExperimentResult.objects.count() == 1
    assert second.computed_at >= first.computed_at


def test_experiment_results_refresh__stopped_experiment__events_after_stop_ignored(clickhouse):
    experiment = running_experiment(status=ExperimentStatus.STOPPED, stopped_at=T0 + dt.timedelta(hours=2))
    write([Exposure("c1", "control", T0, experiment="checkout")],
          [Event("c1", "buy", T0 + dt.timedelta(hours=1)), Event("c1", "buy", T0 + dt.timedelta(hours=3))])  # fmt: skip

    payload = experiment_results_refresh(experiment_id=experiment.pk).payload

    assert payload["analysis"]["until"] == (T0 + dt.timedelta(hours=2)).isoformat()
    assert payload["metrics"][0]["variants"][0] == {"variant": "control", "units": 1, "mean": 1.0}


def test_experiment_results_refresh__test_traffic_from_other_environments__analysed_environments_only(
    clickhouse,
):
    # Given production users, and testers exposed and buying through development and staging keys
    experiment = running_experiment()
    write(
        [Exposure(f"c{i}", "control", T0, experiment="checkout") for i in range(10)]
        + [Exposure(f"t{i}", "treatment", T0, experiment="checkout") for i in range(10)]
        + [
            Exposure(f"qa{i}", "treatment", T0, experiment="checkout", environment="development")
            for i in range(30)
        ]
        + [Exposure(f"st{i}", "control", T0, experiment="checkout", environment="staging") for i in range(5)],
        [Event(f"c{i}", "buy", T0 + dt.timedelta(hours=1)) for i in range(2)]
        + [Event(f"qa{i}", "buy", T0 + dt.timedelta(hours=1), environment="development") for i in range(30)]
        + [Event(f"t{i}", "buy", T0 + dt.timedelta(hours=1), environment="development") for i in range(10)],
    )

    assert experiment.analysis_environments == ["production"]  # the default

    # When: the default, then the experiment set to analyse staging
    production = experiment_results_refresh(experiment_id=experiment.pk).payload
    experiment.analysis_environments = ["staging"]
    experiment.save()
    staging = experiment_results_refresh(experiment_id=experiment.pk).payload

    # Then
    assert production["analysis"]["environments"] == ["production"]
    assert production["srm"]["units"] == {"control": 10, "treatment": 10}
    assert production["metrics"][0]["variants"] == [
        {"variant": "control", "units": 10, "mean": 0.2},
        {"variant": "treatment", "units": 10, "mean": 0.0},
    ]
    assert staging["analysis"]["environments"] == ["staging"]
    assert staging["srm"]["units"] == {"control": 5, "treatment": 0}


# --- API ------------------------------------------------------------------------------------------------------
def results_url(key: str) -> str:
    return reverse("experiment-results", kwargs={"key": key})


def refresh_url(key: str) -> str:
    return reverse("experiment-results-refresh", kwargs={"key": key})


def test_results_api__never_computed__empty_state(api_client, user):
    experiment = running_experiment()
    api_client.force_authenticate(user)

    response = api_client.get(results_url(experiment.key))

    assert response.status_code == 200
    body = response.json()
    assert body["experiment"] == "checkout" and body["computed_at"] is None
    assert body["metrics"] == [] and body["timeseries"] == [] and body["srm"] is None
    assert body["refresh"]["status"] == "never_computed"


def test_results_api__unknown_experiment__404(api_client, user):
    api_client.force_authenticate(user)

    assert api_client.get(results_url("nope")).status_code == 404
    assert api_client.post(refresh_url("nope")).status_code in (403, 404)


def test_results_api__anonymous__401_with_www_authenticate(api_client):
    experiment = running_experiment()

    for response in (
        api_client.get(results_url(experiment.key)),
        api_client.post(refresh_url(experiment.key)),
        api_client.post(reverse("power"), {}, format="json"),
    ):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Token"


def test_results_api__token_user_without_change_permission__reads_but_403_on_refresh(api_client):
    experiment = running_experiment()
    token = Token.objects.create(user=UserFactory())
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    assert api_client.get(results_url(experiment.key)).status_code == 200
    assert api_client.post(refresh_url(experiment.key)).status_code == 403


def test_results_api__refresh_refused_403__leaves_the_refresh_slot_free(
    clickhouse, pm_client, django_capture_on_commit_callbacks
):
    experiment = running_experiment()
    outsider = APIClient()
    outsider.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=UserFactory()).key}")
    assert outsider.post(refresh_url(experiment.key)).status_code == 403

    with django_capture_on_commit_callbacks(execute=True):
        response = pm_client.post(refresh_url(experiment.key))

    assert response.status_code == 202 and response.json()["status"] == "queued"


def test_results_api__refresh_twice__202_queued_then_202_recently_refreshed_with_retry_after(
    clickhouse, pm_client, django_capture_on_commit_callbacks
):
    experiment = running_experiment()
    traffic(40, 40)

    with django_capture_on_commit_callbacks(execute=True):
        first = pm_client.post(refresh_url(experiment.key))
    second = pm_client.post(refresh_url(experiment.key))

    assert first.status_code == 202 and first.json()["status"] == "queued"
    assert second.status_code == 202 and second.json()["status"] == "recently_refreshed"
    assert 1 <= int(second.headers["Retry-After"]) <= 30
    body = pm_client.get(results_url(experiment.key)).json()  # tasks run eagerly in tests: done already
    assert body["refresh"]["status"] == "ok" and body["refresh"]["refreshed_by"].startswith("user:pm")
    assert body["srm"]["units"] == {"control": 40, "treatment": 40}


def test_results_api__refresh_while_clickhouse_down__202_and_error_shown(
    clickhouse, clickhouse_faults, pm_client, django_capture_on_commit_callbacks
):
    experiment = running_experiment()
    clickhouse_faults.unavailable(methods=("query",))

    with django_capture_on_commit_callbacks(execute=True):
        response = pm_client.post(refresh_url(experiment.key))

    assert response.status_code == 202
    body = pm_client.get(results_url(experiment.key)).json()
    assert body["refresh"]["status"] == "failed" and "unreachable" in body["refresh"]["last_error"]
    assert body["computed_at"] is None


def test_results_api__cached__refresh_invalidates(clickhouse, pm_client):
    experiment = running_experiment()
    assert pm_client.get(results_url(experiment.key)).json()["computed_at"] is None  # cached empty state
    traffic(5, 5)

    experiment_results_refresh(experiment_id=experiment.pk)

    assert pm_client.get(results_url(experiment.key)).json()["computed_at"] is not None


# --- schedule and command -----------------------------------------------------------------------------------
def test_rollup_schedule__migration__every_5_minutes_enabled():
    task = PeriodicTask.objects.get(name="roll up running experiments")

    assert task.task == "analytics.tasks.running_experiments_rollup"
    assert (task.interval.every, task.interval.period) == (5, "minutes") and task.enabled


def test_running_experiments_rollup__fan_out__refreshes_running_ones_only(clickhouse):
    running = running_experiment()
    draft = ExperimentFactory(key="draft")
    traffic(10, 10)

    assert tasks.running_experiments_rollup.delay().get() == 1

    assert ExperimentResult.objects.get(experiment=running).refreshed_by == "schedule"
    assert not ExperimentResult.objects.filter(experiment=draft).exists()


def test_experiment_results_refresh_task__experiment_deleted__quiet():
    assert tasks.experiment_results_refresh_task.delay(987654).get() is None


def test_rollup_command__keys__progress_per_experiment(clickhouse):
    running_experiment()
    traffic(10, 12)
    out = io.StringIO()

    call_command("rollup", "checkout", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[1/1] checkout ... ") and " ms" in lines[0] and "22 units" in lines[0]
    assert lines[-1].startswith("1 experiment(s) rolled up in ")


def test_rollup_command__unknown_key__error():
    with pytest.raises(CommandError, match="No experiment with key nope"):
        call_command("rollup", "nope", stdout=io.StringIO())


def test_rollup_command__clickhouse_unreachable__one_line_error_and_nothing_recorded(
    settings, closed_tcp_port
):
    from analytics import clickhouse as ch

    running_experiment()
    settings.CLICKHOUSE_URL = f"http://127.0.0.1:{closed_tcp_port}/experiments"
    settings.CLICKHOUSE_CONNECT_TIMEOUT = 1
    try:
        with pytest.raises(CommandError) as raised:
            call_command("rollup", stdout=io.StringIO())
    finally:
        ch.reset()

    message = str(raised.value)
    assert "unreachable" in message and "\n" not in message
    # A refusal (ClickHouse cannot be opened at all) records nothing on the experiment
    assert not ExperimentResult.objects.exists()


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "CLICKHOUSE_URL": "", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # starts Python processes of its own
def test_rollup_command_process__embedded_data_owned_by_another_process__one_line_exit_1_nothing_recorded(
    tmp_path,
):
    # Given a platform with a running experiment (its own var/), and another process owning its chDB data
    env = {
        "PLATFORM_VAR_DIR": str(tmp_path),
        "CLICKHOUSE_DATA_DIR": str(tmp_path / "chdb"),
        # Its own database: never the DATABASE_URL the suite runs against (CI reuses that database).
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
    }
    assert _manage("migrate", "-v", "0", **env).returncode == 0
    create = (
        "from experiments.models import Experiment, Variant; "
        "e = Experiment.objects.create(key='locked', name='Locked', status='running'); "
        "[Variant.objects.create(experiment=e, key=k, position=i) for i, k in enumerate(['control', 'b'])]"
    )
    assert _manage("shell", "-c", create, **env).returncode == 0
    owner = subprocess.Popen(
        [sys.executable, "-c", "import sys; from chdb import session; s = session.Session(sys.argv[1]); "
         "print('open', flush=True); sys.stdin.read()", env["CLICKHOUSE_DATA_DIR"]],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert owner.stdout.readline().strip() == "open"

        # When
        result = _manage("rollup", **env)
    finally:
        owner.communicate(input="", timeout=60)

    # Then: refused before any experiment, so nothing is recorded on its results page
    assert result.returncode == 1
    assert result.stdout.strip() == ""
    assert result.stderr.strip().splitlines() == [
        f"CommandError: the embedded ClickHouse data in {tmp_path / 'chdb'} is in use by another process "
        "(is `make demo` / the server running?); stop it or set CLICKHOUSE_URL"
    ]
    recorded = _manage(
        "shell",
        "-c",
        "from analytics.models import ExperimentResult; print(ExperimentResult.objects.count())",
        **env,
    )
    assert recorded.stdout.strip().splitlines()[-1] == "0"
