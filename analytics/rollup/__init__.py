"""The roll-up: raw events and exposures to per-variant sufficient statistics, inside ClickHouse.

* :mod:`.spec`: what to compute (plain dataclasses, built from the models by ``analytics.results.services``);
* :mod:`.query`: the SQL builder (one statement per experiment, one block of columns per metric);
* :mod:`.refresh`: runs it and reads the answer as ``analytics.stats`` dataclasses (a :class:`Rollup`):
  the cold roll-up, every event read;
* :mod:`.state` and :mod:`.incremental`: the same answer from per-unit state kept in ClickHouse,
  recomputing only the units that new rows touched (``rollup_refresh``; docs/analysis.md, section 18).
* :mod:`.dimensions`: the same roll-up per level of a dimension (an exposure attribute or the entry
  day), on demand and cold (``rollup_breakdown``; docs/analysis.md, section 21).

The statistics engine over those sums, shaped as the Results document, is ``analytics.results.analysis``.
"""

from analytics.rollup.incremental import RollupState, rollup_refresh
from analytics.rollup.query import RollupQuery, Statement
from analytics.rollup.refresh import DailyStats, Rollup, rollup_run
from analytics.rollup.spec import Measure, MetricSpec, RollupSpec

__all__ = [
    "DailyStats",
    "Measure",
    "MetricSpec",
    "Rollup",
    "RollupQuery",
    "RollupSpec",
    "RollupState",
    "Statement",
    "rollup_refresh",
    "rollup_run",
]
