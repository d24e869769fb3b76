"""The results API's dimension breakdowns: ``GET .../results/?dimension=NAME`` and ``.../dimensions/``.

A level's block is compared with the results of the same units made into an experiment of their own
(same metrics, refreshed through the same service), its SRM with scipy's chi-square.
"""

import datetime as dt

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from scipy import stats as scipy_stats

from analytics.results.services import experiment_results_refresh
from experiments.models import ExperimentStatus, MetricRole
from metrics.models import MetricType
from tests.analytics.test_rollup import Event, Exposure, write
from tests.analytics.test_rollup_dimensions import AttributedExposure, write_attributed
from tests.factories import ExperimentFactory, ExperimentMetricFactory, MetricFactory

pytestmark = pytest.mark.django_db
T0 = timezone.now().replace(microsecond=0) - dt.timedelta(days=3)
HOUR = dt.timedelta(hours=1)

# (country, control units, treatment units): "se" is lopsided, so its own SRM check fails
COUNTRIES = (("de", 40, 38), ("fr", 25, 27), ("se", 30, 8))


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def experiment_with_metrics(key: str):
    experiment = ExperimentFactory(
        key=key, variants=["control", "treatment"], status=ExperimentStatus.RUNNING, started_at=T0 - HOUR
    )
    for metric_key, metric_type, role, extra in (
        ("orders", MetricType.COUNT, MetricRole.PRIMARY, {}),
        ("buyers", MetricType.BINOMIAL, MetricRole.SECONDARY, {}),
        ("revenue", MetricType.SUM, MetricRole.GUARDRAIL, {"cap_percentile": 0.8}),  # no Holm family
    ):
        metric, _ = MetricFactory._meta.model.objects.get_or_create(
            key=metric_key,
            defaults={"name": metric_key.title(), "type": metric_type, "event": "buy", **extra},
        )
        ExperimentMetricFactory(experiment=experiment, metric=metric, role=role)
    return experiment


def traffic() -> list[AttributedExposure]:
    """Units per country and variant; every third buys (value rising with the unit), a later exposure
    says another country (ignored), a few first exposures carry no country."""
    rows, events = [], []
    for country, control, treatment in COUNTRIES:
        for variant, count in (("control", control), ("treatment", treatment)):
            for i in range(count):
                unit = f"{country}-{variant}-{i}"
                attributes = {} if i == 0 else {"country": country, "browser": "firefox"}
                rows.append(AttributedExposure(Exposure(unit, variant, T0, experiment="shop"), attributes))
                rows.append(
                    AttributedExposure(
                        Exposure(unit, variant, T0 + HOUR, experiment="shop"), {"country": "xx"}
                    )
                )
                if i % 3 == 1 or (variant == "treatment" and i % 4 == 2):
                    events.append(Event(unit, "buy", T0 + 2 * HOUR, value=float(i % 7) * 3.5))
    write_attributed(rows)
    write(events=events)
    return rows


def results(client, key: str, **params):
    return client.get(reverse("experiment-results", args=[key]), params)


def test_results_api__dimension_country__each_level_equals_its_units_as_their_own_experiment(
    clickhouse, pm_client
):
    # Given an experiment refreshed once
    experiment = experiment_with_metrics("shop")
    rows = traffic()
    experiment_results_refresh(experiment_id=experiment.pk)
    whole = results(pm_client, "shop").json()

    response = results(pm_client, "shop", dimension="country")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["metrics"] == whole["metrics"]  # the document itself is unchanged
    assert any(w["code"] == "dimension_exploratory" for w in body["warnings"])
    dimension = body["dimension"]
    assert dimension["name"] == "country"
    assert dimension["available"] == ["entry_day", "browser", "country"]
    # levels: largest first, the units lacking a country on their first exposure as __missing__
    assert [level["level"] for level in dimension["levels"]] == ["de", "fr", "se", "__missing__"]
    assert [level["units"] for level in dimension["levels"]] == [76, 50, 36, 6]
    for level in dimension["levels"]:
        units = level["srm"]["units"]
        assert level["srm"]["p_value"] == pytest.approx(
            scipy_stats.chisquare([units["control"], units["treatment"]]).pvalue, rel=1e-9
        )
    assert {lv["level"]: lv["srm"]["ok"] for lv in dimension["levels"]}["se"] is False
    # each level is the experiment of its units alone (but for the experiment-wide cap, below)
    for index, level in enumerate(dimension["levels"]):
        name = f"alone{index}"
        members = [r for r in rows if (r.attributes.get("country", "__missing__") == level["level"])
                   and r.exposure.timestamp == T0]  # fmt: skip
        alone = experiment_with_metrics(name)
        units = {r.exposure.unit_id for r in members}
        write_attributed([r for r in rows if r.exposure.unit_id in units], experiment=name)
        experiment_results_refresh(experiment_id=alone.pk)
        expected = results(pm_client, name).json()
        assert level["srm"] == expected["srm"]
        by_key = {m["metric"]: m for m in level["metrics"]}
        for metric in expected["metrics"]:
            if metric["metric"] == "revenue":
                assert by_key["revenue"]["cap_used"] == whole["metrics"][2]["cap_used"]
                continue
            _close(by_key[metric["metric"]], metric)


def _close(ours, theirs) -> bool:
    """Equal JSON, numbers to 1e-9 relative."""
    if isinstance(theirs, dict):
        assert ours.keys() == theirs.keys()
        return all(_close(ours[k], theirs[k]) for k in theirs)
    if isinstance(theirs, list):
        assert len(ours) == len(theirs)
        return all(_close(a, b) for a, b in zip(ours, theirs, strict=True))
    if isinstance(theirs, float):
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)
        return True
    assert ours == theirs
    return True


def test_results_api__unknown_dimension__400_naming_dimension_and_the_available_ones(clickhouse, pm_client):
    experiment = experiment_with_metrics("shop")
    traffic()
    experiment_results_refresh(experiment_id=experiment.pk)

    for value in ("plan", ""):
        response = results(pm_client, "shop", dimension=value)

        assert response.status_code == 400, response.content
        body = response.json()
        assert body["code"] == "unknown_dimension"
        assert "entry_day, browser, country" in body["dimension"][0]


def test_results_api__more_attribute_names_than_listed__an_unlisted_attribute_still_breaks_down(
    clickhouse, pm_client, monkeypatch
):
    # Given exposures carrying 201 attribute names a000..a200 before "browser", "country" and
    # "zz_plan" in name order (the listing shows the first 200 names only), zz_plan on one unit
    from analytics.results import breakdown as breakdown_module
    from analytics.rollup.dimensions import ATTRIBUTE_NAMES_LIMIT

    experiment = experiment_with_metrics("shop")
    traffic()
    many = {f"a{i:03d}": "x" for i in range(ATTRIBUTE_NAMES_LIMIT + 1)}
    wide = Exposure("wide", "control", T0, experiment="shop")
    write_attributed([AttributedExposure(wide, {**many, "zz_plan": "pro"})])
    experiment_results_refresh(experiment_id=experiment.pk)
    checked = []
    real = breakdown_module.attribute_exists
    monkeypatch.setattr(
        breakdown_module, "attribute_exists", lambda spec, name: checked.append(name) or real(spec, name)
    )
    listed = pm_client.get(reverse("experiment-results-dimensions", args=["shop"])).json()["dimensions"]
    assert listed == ["entry_day", *sorted(many)[:ATTRIBUTE_NAMES_LIMIT]]

    # When the results are broken down by attributes past the listing's limit
    by_plan = results(pm_client, "shop", dimension="zz_plan")
    by_country = results(pm_client, "shop", dimension="country")

    # Then each is a breakdown (the attribute itself was looked up), and a name no exposure carries
    # is still refused, naming the listing's limit; each answer looked up once (then cached)
    assert by_plan.status_code == 200, by_plan.content
    levels = by_plan.json()["dimension"]["levels"]
    assert [(lv["level"], lv["units"]) for lv in levels] == [("__missing__", 168), ("pro", 1)]
    assert by_country.status_code == 200, by_country.content
    assert [lv["level"] for lv in by_country.json()["dimension"]["levels"]] == [
        "de",
        "fr",
        "se",
        "__missing__",
    ]
    for _ in range(2):
        refused = results(pm_client, "shop", dimension="zz_nope")
        assert refused.status_code == 400, refused.content
        assert refused.json()["code"] == "unknown_dimension"
        assert (
            f"the first {ATTRIBUTE_NAMES_LIMIT} attribute names by name); 'zz_nope' is not one"
            in (refused.json()["dimension"][0])
        )
    assert results(pm_client, "shop", dimension="zz_plan").status_code == 200
    assert checked == ["zz_plan", "country", "zz_nope"]


def test_results_api__dimensions_endpoint__entry_day_and_attribute_names(clickhouse, pm_client):
    experiment_with_metrics("shop")
    traffic()

    response = pm_client.get(reverse("experiment-results-dimensions", args=["shop"]))

    assert response.status_code == 200
    assert response.json() == {"experiment": "shop", "dimensions": ["entry_day", "browser", "country"]}
    assert pm_client.get(reverse("experiment-results-dimensions", args=["nope"])).status_code == 404


def test_results_api__never_computed__dimension_without_levels(clickhouse, pm_client):
    experiment_with_metrics("shop")
    traffic()

    body = results(pm_client, "shop", dimension="entry_day").json()

    assert body["computed_at"] is None
    assert body["dimension"] == {
        "name": "entry_day",
        "levels": [],
        "available": ["entry_day", "browser", "country"],
    }


def test_results_api__breakdown__cached_until_the_next_refresh(clickhouse, pm_client, monkeypatch):
    from analytics.results import breakdown as breakdown_module

    experiment = experiment_with_metrics("shop")
    traffic()
    experiment_results_refresh(experiment_id=experiment.pk)
    calls = []
    real = breakdown_module.rollup_breakdown
    monkeypatch.setattr(
        breakdown_module, "rollup_breakdown", lambda *a, **k: calls.append(a) or real(*a, **k)
    )

    first = results(pm_client, "shop", dimension="country").json()
    second = results(pm_client, "shop", dimension="country").json()
    assert len(calls) == 1 and first["dimension"] == second["dimension"]

    write([Exposure("late", "treatment", T0 + HOUR, experiment="shop")])
    experiment_results_refresh(experiment_id=experiment.pk)
    third = results(pm_client, "shop", dimension="country").json()
    assert len(calls) == 2
    assert sum(lv["units"] for lv in third["dimension"]["levels"]) == 1 + sum(
        lv["units"] for lv in first["dimension"]["levels"]
    )


def test_results_api__dimension_entry_day__levels_add_up_to_the_experiment(clickhouse, pm_client):
    experiment = experiment_with_metrics("shop")
    traffic()
    write([Exposure("next-day", "control", T0 + 25 * HOUR, experiment="shop")])
    experiment_results_refresh(experiment_id=experiment.pk)

    body = results(pm_client, "shop", dimension="entry_day").json()

    levels = body["dimension"]["levels"]
    assert [lv["level"] for lv in levels] == [T0.date().isoformat(), (T0 + 25 * HOUR).date().isoformat()]
    assert sum(lv["units"] for lv in levels) == body["units"]["total"]


def test_results_page__dimension_picker__levels_and_an_unknown_dimension_explained(
    clickhouse, client, superuser
):
    experiment = experiment_with_metrics("shop")
    traffic()
    experiment_results_refresh(experiment_id=experiment.pk)
    client.force_login(superuser)
    url = reverse("admin:analytics_experiment_results", args=[experiment.pk])

    page = client.get(url).content.decode()
    assert 'id="dimension-picker"' in page and '<option value="country">country</option>' in page
    assert 'class="dimension-level"' not in page  # nothing picked: no breakdown computed

    page = client.get(url, {"dimension": "country"}).content.decode()
    assert page.count('class="dimension-level"') == 4 and 'data-level="__missing__"' in page
    assert 'id="dimension-warning"' in page and 'id="dimension-plot-container"' in page

    response = client.get(url, {"dimension": "plan"})
    assert response.status_code == 200
    assert "&#x27;plan&#x27; is not one of them" in response.content.decode()
