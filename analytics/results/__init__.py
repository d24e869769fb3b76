"""Experiment results.

* :mod:`.analysis`: the statistics engine over a roll-up's sums, shaped as the Results document;
* :mod:`.document`: the typed Results document that the API, the results pages and the experiment
  list read.
"""

from analytics.results.document import (
    Analysis,
    Comparison,
    DataFreshness,
    DimensionBreakdown,
    DimensionLevel,
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
    "DimensionBreakdown",
    "DimensionLevel",
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
