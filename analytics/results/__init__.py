"""Experiment results: the typed Results document that the API, the results pages and the experiment
list read (:mod:`.document`)."""

from analytics.results.document import (
    Analysis,
    Comparison,
    DataFreshness,
    Estimate,
    MetricResult,
    Notice,
    RefreshInfo,
    ResultsDocument,
    Srm,
    Timeseries,
    TimeseriesPoint,
    Units,
    VariantSummary,
)

__all__ = [
    "Analysis",
    "Comparison",
    "DataFreshness",
    "Estimate",
    "MetricResult",
    "Notice",
    "RefreshInfo",
    "ResultsDocument",
    "Srm",
    "Timeseries",
    "TimeseriesPoint",
    "Units",
    "VariantSummary",
]
