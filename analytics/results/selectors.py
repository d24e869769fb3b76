"""Reads of experiment results: the latest document of an experiment, the experiments to keep fresh."""

from django.core.cache import cache

from analytics.models import ExperimentResult
from analytics.results.document import ResultsDocument
from experiments.models import Experiment, ExperimentStatus

RESULTS_CACHE_TIMEOUT = 24 * 60 * 60  # the cache is dropped on every refresh; this only bounds memory


def results_cache_key(experiment_id: int) -> str:
    """Where ``experiment_results_get`` caches an experiment's document (dropped by every refresh)."""
    return f"analytics:results:{experiment_id}"


def _refresh_state(snapshot: ExperimentResult | None) -> dict:
    if snapshot is None:
        return {"status": "never_computed", "last_error": None, "last_error_at": None, "duration_ms": None,
                "refreshed_by": None, "updated_at": None, "kind": None, "watermark": None,
                "recomputed_metrics": []}  # fmt: skip
    state = snapshot.rollup_state if isinstance(snapshot.rollup_state, dict) else {}
    return {
        "status": snapshot.status,
        "last_error": snapshot.last_error or None,
        "last_error_at": snapshot.last_error_at.isoformat() if snapshot.last_error_at else None,
        "duration_ms": snapshot.duration_ms,
        "refreshed_by": snapshot.refreshed_by or None,
        "updated_at": snapshot.updated_at.isoformat() if snapshot.updated_at else None,
        # how the last good results were computed, and the data they include (docs/api.md)
        "kind": state.get("kind"),
        "watermark": state.get("watermark"),
        "recomputed_metrics": state.get("recomputed_metrics") or [],
    }


def experiment_results_get(*, experiment: Experiment) -> ResultsDocument:
    """The latest results document of ``experiment`` with how its last refresh went (``refresh``).

    Never computed: the documented shape with empty metrics, ``computed_at`` null and
    ``refresh.status`` ``never_computed``. A failed last refresh keeps the last good numbers, with
    ``refresh.status`` ``failed`` and the error. Cached (as JSON) until the next refresh.
    """
    key = results_cache_key(experiment.pk)
    cached = cache.get(key)
    if cached is not None:
        return ResultsDocument.from_dict(cached)
    snapshot = ExperimentResult.objects.filter(experiment=experiment).first()
    if snapshot is not None and snapshot.payload is not None:
        document = {**snapshot.payload, "refresh": _refresh_state(snapshot)}
    else:
        document = {
            "experiment": experiment.key,
            "computed_at": None,
            "srm": None,
            "metrics": [],
            "timeseries": [],
            "warnings": [],
            "errors": [],
            "experiment_status": experiment.status,
            "refresh": _refresh_state(snapshot),
            "message": "No results yet. They are computed every few minutes while the experiment runs; "
            "POST .../results/refresh/ to compute them now.",
        }
    cache.set(key, document, RESULTS_CACHE_TIMEOUT)
    return ResultsDocument.from_dict(document)


def running_experiment_ids() -> list[int]:
    """Ids of the experiments whose results the schedule keeps fresh (running ones)."""
    return list(
        Experiment.objects.filter(status=ExperimentStatus.RUNNING).order_by("pk").values_list("pk", flat=True)
    )
