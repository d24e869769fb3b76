"""The statistics engine: pure functions over per-variant sufficient statistics.

No ORM, no I/O: the roll-up turns events into sums in ClickHouse, and these functions turn sums into
the numbers of the results document. Formulas follow GrowthBook's open-source engine (gbstats) so the
same summary statistics give the same numbers; each module's docstrings give the formula and source.

Entry points:

* :func:`analyse_metric` / :func:`compare`, :func:`summarise_variants`: one metric's results;
* :func:`srm_check` / :func:`srm_p_value`: sample ratio mismatch;
* :func:`adjust_p_values`: Holm or Benjamini–Hochberg across comparisons;
* :func:`statistical_power`, :func:`minimum_detectable_effect`, :func:`days_needed`: planning.
"""

from analytics.stats.analysis import AnalysisOptions, analyse_metric, compare, summarise_variants
from analytics.stats.bayesian import GaussianPrior, bayesian_test, chance_to_win, expected_loss
from analytics.stats.corrections import adjust_p_values, benjamini_hochberg, holm
from analytics.stats.direction import change_direction, is_significant
from analytics.stats.frequentist import frequentist_test, sequential_test, t_test
from analytics.stats.moments import EffectMoments, effect_moments
from analytics.stats.power import days_needed, minimum_detectable_effect, statistical_power
from analytics.stats.quantile import QuantileClusteredStats, QuantileStats
from analytics.stats.srm import srm_check, srm_p_value
from analytics.stats.statistics import CupedStats, MetricStats, RatioCupedStats, RatioStats, SampleStats

__all__ = [
    "AnalysisOptions",
    "CupedStats",
    "EffectMoments",
    "GaussianPrior",
    "MetricStats",
    "QuantileClusteredStats",
    "QuantileStats",
    "RatioCupedStats",
    "RatioStats",
    "SampleStats",
    "adjust_p_values",
    "analyse_metric",
    "bayesian_test",
    "benjamini_hochberg",
    "chance_to_win",
    "change_direction",
    "compare",
    "days_needed",
    "effect_moments",
    "expected_loss",
    "frequentist_test",
    "holm",
    "is_significant",
    "minimum_detectable_effect",
    "sequential_test",
    "srm_check",
    "srm_p_value",
    "statistical_power",
    "summarise_variants",
    "t_test",
]
