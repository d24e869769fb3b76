"""The typed Results document: it reads every document the engine writes and gives back the same JSON,
and reads documents stored by earlier versions without failing."""

import copy
import json

import pytest
from django.urls import reverse

from analytics.results import ResultsDocument
from analytics.results.services import experiment_results_refresh
from experiments.models import MetricRole
from metrics.models import MetricType
from tests.analytics.test_results import analysis, document, rollup_of, running_experiment, sample, traffic

TOP_LEVEL_KEYS = ["experiment", "computed_at", "srm", "units", "multiple_exposures", "analysis", "data",
                  "metrics", "timeseries", "warnings", "errors", "experiment_status", "engine", "timings_ms"]  # fmt: skip
ANALYSIS_KEYS = ["from", "until", "correction", "alpha", "sequential", "sequential_tuning", "environments"]
METRIC_KEYS = [
    "metric",
    "name",
    "type",
    "role",
    "higher_is_better",
    "cuped",
    "variants",
    "comparisons",
    "error",
    "cap_used",
]
COMPARISON_KEYS = ["variant", "baseline", "relative", "absolute", "p_value", "p_value_adjusted", "significant",
                   "direction", "chance_to_win", "risk", "error", "guardrail_violated"]  # fmt: skip
REFRESH_KEYS = [
    "status",
    "last_error",
    "last_error_at",
    "duration_ms",
    "refreshed_by",
    "updated_at",
    "kind",
    "watermark",
    "recomputed_metrics",
]


def _json(value: dict) -> str:
    """The JSON text, keys in order: "the same JSON" means the same text, not only equal values."""
    return json.dumps(value, allow_nan=False)


@pytest.mark.parametrize("engine", ["frequentist", "bayesian"])
def test_results_document__every_kind_of_block__to_dict_gives_the_engines_json_back(engine):
    # Given a document with a primary, a secondary and a violated guardrail
    totals = {
        "orders": [("control", sample(1, 4000, 1.0)), ("treatment", sample(2, 4000, 1.1))],
        "revenue": [("control", sample(3, 4000, 5.0)), ("treatment", sample(4, 4000, 5.0))],
        "errors": [("control", sample(5, 4000, 1.0)), ("treatment", sample(6, 4000, 1.2))],
    }
    metrics = [
        analysis("orders", "primary", engine=engine),
        analysis("revenue", "secondary", engine=engine),
        analysis("errors", "guardrail", higher_is_better=False, engine=engine),
    ]
    payload = document(rollup_of(totals), metrics)
    assert payload["warnings"]
    # and a metric the engine refused, as ``results_document`` reports one (no sums reach that branch)
    refused = {
        **payload["metrics"][1],
        "metric": "aov",
        "variants": [],
        "comparisons": [],
        "error": "overflow",
    }
    payload["metrics"].append(refused)
    payload["errors"].append({"metric": "aov", "error": "overflow"})

    typed = ResultsDocument.from_dict(payload)

    assert _json(typed.to_dict()) == _json(payload)
    assert typed.metric("errors").comparisons[0].guardrail_violated is True
    assert typed.metric("aov").error == "overflow"


def test_results_document__refreshed_and_served__api_json_is_the_stored_payload_with_refresh(
    clickhouse, pm_client
):
    # Given a refreshed experiment with a primary metric (a daily time series), a secondary and a guardrail
    experiment = running_experiment(
        metrics=(
            ("orders", MetricType.COUNT, MetricRole.PRIMARY),
            ("buyers", MetricType.BINOMIAL, MetricRole.SECONDARY),
            ("spend", MetricType.SUM, MetricRole.GUARDRAIL),
        )
    )
    traffic(120, 100)
    snapshot = experiment_results_refresh(experiment_id=experiment.pk, refreshed_by="test")
    assert snapshot.payload["timeseries"] and snapshot.payload["timeseries"][0]["points"]

    # When it is read as the type, and through the API
    typed = snapshot.document
    answer = pm_client.get(reverse("experiment-results", args=[experiment.key]))

    # Then the type gives back the stored JSON, and the API serves exactly that with the refresh block
    assert _json(typed.to_dict()) == _json(snapshot.payload)
    assert answer.status_code == 200
    served = answer.json()
    assert list(served.pop("refresh")) == REFRESH_KEYS
    assert _json(served) == _json(snapshot.payload)
    # ... and that JSON has the API's shape, key for key and in order (docs/api.md, "Results")
    assert list(served) == TOP_LEVEL_KEYS
    assert list(served["srm"]) == ["p_value", "units", "ok", "threshold", "weights"]
    assert list(served["units"]) == ["total", "variants", "multiple_exposures", "unknown_variant"]
    assert list(served["analysis"]) == ANALYSIS_KEYS
    assert list(served["data"]) == ["first_exposure_at", "last_exposure_at", "last_event_at"]
    for block in served["metrics"]:
        assert list(block) == METRIC_KEYS
        assert [list(v) for v in block["variants"]] == [["variant", "units", "mean"]] * 2
        assert [list(c) for c in block["comparisons"]] == [COMPARISON_KEYS]
    point = served["timeseries"][0]["points"][-1]
    assert list(served["timeseries"][0]) == ["metric", "role", "points"]
    assert list(point) == ["date", "variants", "comparisons"]
    daily_keys = [key for key in COMPARISON_KEYS if key not in ("p_value_adjusted", "guardrail_violated")]
    assert [list(c) for c in point["comparisons"]] == [daily_keys]


def test_results_document__stored_by_an_earlier_version__read_with_no_answer_where_fields_are_missing():
    # Given a payload from before ``units``, ``analysis.environments``, ``direction`` and the guardrail flag
    totals = {"orders": [("control", sample(1, 500, 1.0)), ("treatment", sample(2, 400, 1.1))]}
    payload = document(rollup_of(totals), [analysis("orders", "primary")])
    old = copy.deepcopy(payload)
    del old["units"], old["multiple_exposures"]
    for comparison in old["metrics"][0]["comparisons"]:
        del comparison["direction"], comparison["guardrail_violated"]

    typed = ResultsDocument.from_dict(old)

    assert typed.units is None and typed.total_units == 900  # from the SRM check's units
    assert typed.analysed_environments is None  # counted every environment
    assert typed.primary_metric.comparisons[0].direction is None
    restored = typed.to_dict()
    assert (
        "units" not in restored
        and "multiple_exposures" not in restored
        and "environments" not in (restored["analysis"])
    )


def test_results_document__never_computed__the_empty_shape():
    empty = {"experiment": "exp", "computed_at": None, "srm": None, "metrics": [], "timeseries": [],
             "warnings": [], "errors": [], "experiment_status": "draft",
             "refresh": {"status": "never_computed", "last_error": None, "last_error_at": None,
                         "duration_ms": None, "refreshed_by": None, "updated_at": None, "kind": None,
                         "watermark": None, "recomputed_metrics": []},
             "message": "No results yet."}  # fmt: skip

    typed = ResultsDocument.from_dict(empty)

    assert not typed.computed and typed.total_units is None and typed.primary_metric is None
    assert _json(typed.to_dict()) == _json(empty)
