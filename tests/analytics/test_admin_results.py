"""The experiment results page in the admin: with and without results, refresh, permissions, Plotly."""

import datetime as dt
import re

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from analytics.clickhouse import ClickHouseUnavailable
from analytics.ingestion.services import events_write, exposures_write
from analytics.models import ExperimentResult, ResultStatus
from experiments.models import ExperimentStatus, MetricRole
from tests.factories import ExperimentFactory, ExperimentMetricFactory, MetricFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()  # experiment_results_get caches documents by experiment id
    yield
    cache.clear()


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def _comparison(estimate, ci, **overrides):
    return {"variant": "treatment", "baseline": "control", "relative": {"estimate": estimate, "ci": ci},
            "absolute": {"estimate": estimate * 0.1, "ci": [c * 0.1 for c in ci]}, "p_value": 0.001,
            "p_value_adjusted": 0.002, "significant": True, "direction": "improved", "chance_to_win": None,
            "risk": None, "guardrail_violated": None, "error": None, **overrides}  # fmt: skip


def results_payload(key: str, *, srm_ok: bool = True) -> dict:
    """A results document as ``experiment_results_compute`` makes it (the contract's shape)."""
    units = {"control": 5000, "treatment": 5000 if srm_ok else 4000}
    variants = [
        {"variant": v, "units": n, "mean": m} for (v, n), m in zip(units.items(), (0.1, 0.11), strict=True)
    ]
    return {
        "experiment": key, "computed_at": (timezone.now() - dt.timedelta(minutes=3)).isoformat(),
        "engine": "frequentist", "experiment_status": "running",
        "analysis": {"alpha": 0.05, "correction": "holm", "sequential": False},
        "srm": {"p_value": 0.9 if srm_ok else 1e-20, "units": units, "ok": srm_ok, "threshold": 0.001,
                "weights": {"control": 1.0, "treatment": 1.0}},
        "units": {"total": sum(units.values()), "variants": units, "multiple_exposures": 7, "unknown_variant": 0},
        "multiple_exposures": 7,
        "metrics": [
            {"metric": "purchase_rate", "name": "Purchase rate", "type": "binomial", "role": "primary",
             "higher_is_better": True, "cuped": True, "variants": variants,
             "comparisons": [_comparison(0.1, [0.04, 0.16])], "error": None},
            {"metric": "errors", "name": "Errors per user", "type": "count", "role": "guardrail",
             "higher_is_better": False, "cuped": False, "variants": variants,
             "comparisons": [_comparison(0.2, [0.1, 0.3], direction="regressed", guardrail_violated=True)],
             "error": None},
        ],
        "timeseries": [
            {"metric": "purchase_rate", "role": "primary", "points": [
                {"date": f"2025-03-{day:02d}", "variants": variants,
                 "comparisons": [_comparison(0.1 + day / 100, [0.0, 0.2 + day / 100])]} for day in range(1, 5)
            ]},
        ],
        "warnings": ([] if srm_ok else [{"code": "sample_ratio_mismatch", "message": "Units per variant do not "
                                         "match the configured weights."}])
        + [{"code": "multiple_exposures", "message": "7 units saw more than one variant (0.07%) and were left out."}],
        "errors": [],
    }  # fmt: skip


def _results_url(experiment) -> str:
    return reverse("admin:analytics_experiment_results", args=[experiment.pk])


def test_results_page__never_computed__explains_and_draws_nothing(admin_client):
    experiment = ExperimentFactory(status=ExperimentStatus.RUNNING)
    response = admin_client.get(_results_url(experiment))
    page = response.content.decode()
    assert response.status_code == 200
    assert "No results yet" in page
    assert "never computed" in page
    assert "Plotly.newPlot" not in page
    assert 'id="refresh-results"' in page


def test_results_page__with_results__charts_sentences_warnings_and_freshness(admin_client):
    # Given
    experiment = ExperimentFactory(
        status=ExperimentStatus.RUNNING, started_at=timezone.now() - dt.timedelta(days=5)
    )
    ExperimentResult.objects.create(experiment=experiment, payload=results_payload(experiment.key, srm_ok=False),
                                    computed_at=timezone.now(), refreshed_by="schedule",
                                    rollup_state={"kind": "incremental", "watermark": "2026-12-07T15:59:03+00:00",
                                                  "recomputed_metrics": []})  # fmt: skip

    # When
    response = admin_client.get(_results_url(experiment))

    # Then
    page = response.content.decode()
    assert response.status_code == 200
    for div_id in ("forest-plot", "timeseries-plot-0", "units-plot"):
        assert f'id="{div_id}"' in page
    assert page.count("Plotly.newPlot(") == 3
    assert re.search(r'<script src="/admin/analytics/experimentresult/plotly-[\w.]+\.min\.js">', page)
    assert "Treatment raises purchase rate by 10.0% (95% CI 4.0% to 16.0%)" in page
    assert "sample ratio mismatch" in page  # the sentence warns, and so does the box
    assert "Sample ratio mismatch." in page
    assert "Users in several variants." in page
    assert "computed 3\xa0minutes ago (schedule)" in page
    assert 'title="Incremental refresh: only the users that new data touched' in page
    assert "received by 2026-12-07 15:59 UTC is in." in page
    assert "9,000" in page  # users analysed
    assert "significantly worse" in page  # the guardrail's hover text in the forest plot


def test_results_page__analysed_environments__shown_and_a_change_since_pointed_out(admin_client):
    experiment = ExperimentFactory(status=ExperimentStatus.RUNNING)
    payload = results_payload(experiment.key)
    payload["analysis"]["environments"] = ["production"]
    result = ExperimentResult.objects.create(
        experiment=experiment, payload=payload, computed_at=timezone.now()
    )

    page = admin_client.get(_results_url(experiment)).content.decode()
    assert "traffic from <strong>production</strong>" in page
    assert "refresh to apply" not in page

    # When the setting changes after the results were computed
    experiment.analysis_environments = ["staging", "production"]
    experiment.save()
    cache.clear()
    page = admin_client.get(_results_url(experiment)).content.decode()
    assert (
        "traffic from <strong>production</strong> (set to staging, production since: refresh to apply)"
        in page
    )

    # A document from before the setting existed counted every environment
    del result.payload["analysis"]["environments"]
    result.save()
    cache.clear()
    page = admin_client.get(_results_url(experiment)).content.decode()
    assert "traffic from <strong>every environment</strong>" in page


def test_results_page__sequential_and_not_significant__wording_says_so(admin_client):
    # Given a sequential experiment whose primary metric has not moved detectably
    experiment = ExperimentFactory(status=ExperimentStatus.RUNNING)
    payload = results_payload(experiment.key)
    payload["analysis"]["sequential"] = True
    payload["metrics"][0]["comparisons"] = [
        _comparison(0.008, [-0.05, 0.07], p_value=1.0, p_value_adjusted=1.0, significant=False,
                    direction="inconclusive")
    ]  # fmt: skip
    ExperimentResult.objects.create(experiment=experiment, payload=payload, computed_at=timezone.now())

    page = admin_client.get(_results_url(experiment)).content.decode()

    assert "No detectable difference in purchase rate between Treatment and Control: +0.8%" in page
    assert "p = 1 (sequential test, always valid" in page
    assert 'id="sequential-note"' in page and "always-valid p-value stays at 1" in page
    assert "p-value (sequential, always valid)" in page
    assert "Treatment raises purchase rate" not in page


def test_results_page__last_refresh_failed__error_and_last_good_numbers(admin_client):
    experiment = ExperimentFactory(status=ExperimentStatus.RUNNING)
    ExperimentResult.objects.create(
        experiment=experiment, payload=results_payload(experiment.key), computed_at=timezone.now(),
        status=ResultStatus.FAILED, last_error="ClickHouseUnavailable: connection refused",
        last_error_at=timezone.now(),
    )  # fmt: skip
    page = admin_client.get(_results_url(experiment)).content.decode()
    assert "The last refresh failed" in page
    assert "connection refused" in page
    assert "from the last refresh that worked" in page
    assert 'id="forest-plot"' in page


def test_results_page__staff_without_view_permission__forbidden(client):
    user = UserFactory(is_staff=True)
    client.force_login(user)
    experiment = ExperimentFactory()
    assert client.get(_results_url(experiment)).status_code == 403


def test_results_page__viewer_without_change_permission__no_refresh_button_and_refresh_refused(client):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_experiment"))
    client.force_login(user)
    experiment = ExperimentFactory(status=ExperimentStatus.RUNNING)
    page = client.get(_results_url(experiment)).content.decode()
    assert 'id="refresh-results"' not in page
    refresh = reverse("admin:analytics_experiment_results_refresh", args=[experiment.pk])
    assert client.post(refresh).status_code == 403


def test_results_refresh__get__not_allowed(admin_client):
    experiment = ExperimentFactory()
    refresh = reverse("admin:analytics_experiment_results_refresh", args=[experiment.pk])
    assert admin_client.get(refresh).status_code == 405


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_results_refresh__exposures_and_events__computed_now_and_reported(clickhouse, admin_client):
    # Given a running experiment with a primary metric, 40 exposed units and a few purchases
    experiment = ExperimentFactory(key="green_button", status=ExperimentStatus.RUNNING)
    metric = MetricFactory(key="purchase_rate", event="purchase")
    ExperimentMetricFactory(experiment=experiment, metric=metric, role=MetricRole.PRIMARY)
    t0 = timezone.now() - dt.timedelta(hours=2)
    exposures_write(rows=[{"experiment": "green_button", "variant": ("control", "treatment")[i % 2],
                           "unit_id": f"u{i}", "timestamp": t0, "environment": "production"}
                          for i in range(40)])  # fmt: skip
    events_write(rows=[{"name": "purchase", "unit_id": f"u{i}", "timestamp": t0 + dt.timedelta(minutes=5),
                        "environment": "production"} for i in range(0, 40, 3)])  # fmt: skip

    # When
    refresh = reverse("admin:analytics_experiment_results_refresh", args=[experiment.pk])
    response = admin_client.post(refresh, follow=True)

    # Then
    page = response.content.decode()
    assert response.redirect_chain[-1][0] == _results_url(experiment)
    assert "Results refreshed in" in page and "from 40 users" in page
    snapshot = ExperimentResult.objects.get(experiment=experiment)
    assert snapshot.refreshed_by == "user:admin"
    assert snapshot.payload["srm"]["units"] == {"control": 20, "treatment": 20}
    assert 'id="forest-plot"' in page


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_results_refresh__event_values_near_the_largest_double__non_finite_reason_and_short_numbers(
    clickhouse, admin_client
):
    # Given revenue events of 1.7e308 stored before ingestion refused them (written here past the API's
    # validation): one unit's value squared, or two units' values added, overflow double precision
    experiment = ExperimentFactory(key="big_values", status=ExperimentStatus.RUNNING)
    metric = MetricFactory(key="revenue", name="Revenue", type="sum", event="purchase")
    ExperimentMetricFactory(experiment=experiment, metric=metric, role=MetricRole.PRIMARY)
    t0 = timezone.now() - dt.timedelta(hours=2)
    exposures_write(rows=[{"experiment": "big_values", "variant": ("control", "treatment")[i % 2],
                           "unit_id": f"u{i}", "timestamp": t0, "environment": "production"}
                          for i in range(40)])  # fmt: skip
    events_write(rows=[{"name": "purchase", "unit_id": f"u{i}", "value": 1.7e308 if i < 2 else 10.0 + i,
                        "timestamp": t0 + dt.timedelta(minutes=5), "environment": "production"}
                       for i in range(40)])  # fmt: skip

    # When
    admin_client.post(reverse("admin:analytics_experiment_results_refresh", args=[experiment.pk]))
    page = admin_client.get(_results_url(experiment)).content.decode()

    # Then the comparison says why it has no numbers (not "zero_variance": the metric does vary)
    comparison = ExperimentResult.objects.get(experiment=experiment).payload["metrics"][0]["comparisons"][0]
    assert comparison["error"] == "non_finite"
    assert comparison["relative"] == {"estimate": None, "ci": None}
    assert "some event values are too large to add up" in page
    # ... and the means, 1.7e308 / 20 each, read as powers of ten, not as 300-digit numbers
    assert "8.50 × 10³⁰⁶" in page
    assert not re.search(r"\d[\d,]{30}", page)


def test_results_refresh__clickhouse_down__error_message_and_failure_recorded(admin_client, monkeypatch):
    from analytics.results import services

    def unavailable(spec, **kwargs):
        raise ClickHouseUnavailable("ClickHouse is unreachable (test)")

    monkeypatch.setattr(services, "rollup_refresh", unavailable)
    monkeypatch.setattr(services, "rollup_run", unavailable)
    experiment = ExperimentFactory(status=ExperimentStatus.RUNNING)
    refresh = reverse("admin:analytics_experiment_results_refresh", args=[experiment.pk])
    page = admin_client.post(refresh, follow=True).content.decode()
    assert "The refresh failed" in page and "unreachable (test)" in page
    assert ExperimentResult.objects.get(experiment=experiment).status == ResultStatus.FAILED
    assert "The last refresh failed" in page


def test_results_refresh__tasks_on_a_worker__queued_after_commit(admin_client, monkeypatch):
    import analytics.admin as analytics_admin

    queued = []
    monkeypatch.setattr(analytics_admin, "_tasks_run_here", lambda: False)
    monkeypatch.setattr(
        analytics_admin,
        "experiment_results_request_refresh",
        lambda *, experiment, user: queued.append(experiment),
    )
    experiment = ExperimentFactory(status=ExperimentStatus.RUNNING)
    refresh = reverse("admin:analytics_experiment_results_refresh", args=[experiment.pk])
    page = admin_client.post(refresh, follow=True).content.decode()
    assert queued == [experiment]
    assert "Refresh queued" in page


def test_plotly_js__served_from_the_python_package__cached(admin_client):
    import plotly

    response = admin_client.get(reverse("admin:analytics_plotly_js", args=[plotly.__version__]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert "max-age=31536000" in response["Cache-Control"]
    assert len(response.content) > 1_000_000 and b"plotly" in response.content[:2000].lower()


def test_experiment_result_changelist__links_to_the_results_page(admin_client):
    experiment = ExperimentFactory(status=ExperimentStatus.RUNNING)
    ExperimentResult.objects.create(experiment=experiment, payload=results_payload(experiment.key),
                                    computed_at=timezone.now())  # fmt: skip
    page = admin_client.get(reverse("admin:analytics_experimentresult_changelist")).content.decode()
    assert _results_url(experiment) in page
    assert "10,000" in page


def test_results_pages__product_manager__results_list_and_page(client, product_manager):
    client.force_login(product_manager)
    experiment = ExperimentFactory(status=ExperimentStatus.RUNNING)
    ExperimentResult.objects.create(experiment=experiment, payload=results_payload(experiment.key),
                                    computed_at=timezone.now())  # fmt: skip
    assert client.get(_results_url(experiment)).status_code == 200
    assert client.get(reverse("admin:analytics_experimentresult_changelist")).status_code == 200
    assert "Experiment results" in client.get(reverse("admin:index")).content.decode()
