"""The demo workspace: metrics, flags and experiments with known stories, and their simulated traffic.

`manage.py demo` calls, in order:

1. ``demo_workspace_create``: the admin user, 9 metrics (one a quantile: p90 order value; one
   winsorized: revenue capped at its 99th percentile), 4 running experiments, 6 flags (one under a safe
   rollout), a running holdout and an SDK key (anything that exists is left alone);
2. ``demo_traffic_write``: about 100,000 simulated users over the last 14 days, each exposed to the
   four experiments as production traffic (the environment the experiments analyse), with the
   attributes their SDK sent (country, browser, plan), their purchases and errors, inserted into the
   ingestion path's ClickHouse tables (``analytics.ingestion.services.EXPOSURES`` / ``EVENTS``) in large
   batches. Skipped when the demo experiments already have exposures in ClickHouse, and every event has
   a deterministic ``event_id``, so a replay collapses instead of doubling the traffic;
3. ``demo_experiments_backdate``: each experiment's ``started_at`` (and the safe rollout's and the
   holdout's) set back to its first exposure, so the admin says "running for 14 days";
4. ``demo_results_refresh``: the results of the experiments computed now, the safe rollout's internal
   experiment last: its refresh runs the safe rollout's real check, which rolls the new search back.

The stories, with the parameters below (so anyone can check that the platform finds them):

* ``checkout_button``: the green button multiplies every user's chance to buy by 1 + ``CHECKOUT_LIFT``
  (+15% purchase rate): significant at ~100k users (and at 50k), even under sequential testing with
  Holm's correction; revenue rises with it; the "errors" guardrail is flat.
* ``homepage_aa``: both variants are the same page, so nothing is significant (an A/A test).
* ``pricing_banner``: the treatment's exposure logging loses ``PRICING_BANNER_LOGGING_LOSS`` of its users,
  so units split about 45/55 against configured 50/50 weights and the sample-ratio check fails
  (p far below 0.001); its small revenue effect cannot be trusted.
* ``free_shipping``: in ``FREE_SHIPPING_COUNTRY`` (DE, a fifth of the users) the treatment's orders are
  ``FREE_SHIPPING_VALUE_LIFT`` (+50%) bigger, elsewhere nothing changes: the lift is in Germany only
  (a breakdown by the exposures' ``country`` shows it). Every order has a ``WHALE_ORDER_SHARE`` chance
  to be a whale's (worth about 100 times more, Pareto-tailed), so revenue per user is heavy-tailed:
  the winsorized revenue (``cap_percentile`` 0.99, its ``cap_used`` on the results) finds the overall
  lift with a narrow interval, while the uncapped revenue swings with whichever arm got the whales.
* ``new_search``: a flag rolled out to ``NEW_SEARCH_COVERAGE`` (20%) of production under a safe rollout
  (guardrails: search errors and errors) that started ``SAFE_ROLLOUT_DAYS`` ago; the new search fails
  ``NEW_SEARCH_ERROR_FACTOR`` times as often, so the first refresh finds search errors significantly up
  inside the rollout and rolls it back to 0%: the flag's history and its safe rollout show the evidence.

* ``checkout_holdout``: a holdout of ``HOLDOUT_PERCENTAGE`` (10%) of users, kept out of the checkout
  work (the ``checkout_button`` and ``free_shipping`` experiments, and so the ``new_checkout`` flag
  they serve, which answers its default to them); as many again are measured as the general
  population. Held-out users see the blue button and pay for shipping; half of the general population
  sees the green button (+15% purchase rate), so the holdout's results (the real pipeline on its
  internal experiment ``holdout-checkout_holdout``) show the checkout work's combined lift, about
  +7.5% purchase rate, with an interval that the 10% of users held out can afford.

Every user has a purchase propensity drawn from a Beta distribution (mean ``BASE_PURCHASE_RATE``) that
also drives purchases in the 14 days before their first exposure, so CUPED has a correlated pre-period.
A few checkout users (``MULTIPLE_EXPOSURE_SHARE``) saw both variants, to show the warning.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from analytics import clickhouse
from analytics.ingestion.services import EVENTS, EXPOSURES
from analytics.results.services import experiment_results_refresh
from experiments.assignment import assign
from experiments.bucketing import assign_variant, in_rollout
from experiments.models import Experiment
from experiments.services import experiment_create, experiment_start
from features.evaluation import HELD_OUT, CompiledExperiment, holdout_compile
from features.holdouts.models import Holdout, HoldoutStatus
from features.holdouts.services import holdout_create, holdout_start
from features.models import Environment, Feature, SafeRollout, SafeRolloutStatus, SdkKey
from features.services import feature_create, sdk_key_create
from metrics.models import Metric
from metrics.services import metric_create

logger = logging.getLogger(__name__)

DEMO_ADMIN_USERNAME = "admin"

METRICS = [
    {
        "key": "purchase_rate",
        "name": "Purchase rate",
        "type": "binomial",
        "event": "purchase",
        "window_hours": 168,
        "cuped": True,
        "description": "Share of users who buy at least once within a week of first seeing the experiment.",
    },
    {
        "key": "revenue",
        "name": "Revenue per user",
        "type": "sum",
        "event": "purchase",
        "cap_value": 500.0,
        "cuped": True,
        "description": "Money spent per user; single users are capped at 500 so whales cannot swing it.",
    },
    {"key": "orders", "name": "Orders per user", "type": "count", "event": "purchase"},
    {
        "key": "average_order_value",
        "name": "Average order value",
        "type": "ratio",
        "event": "purchase",
        "denominator": "orders",
        "description": "Revenue divided by orders.",
    },
    {
        "key": "errors",
        "name": "Errors per user",
        "type": "count",
        "event": "error",
        "higher_is_better": False,
        "description": "Client errors seen; should never go up.",
    },
    {
        "key": "revenue_winsorized",
        "name": "Revenue per user (winsorized)",
        "type": "sum",
        "event": "purchase",
        "cap_percentile": 0.99,
        "description": "Money spent per user, each capped at the 99th percentile of all the experiment's "
        "users: a few whales' orders cannot swing it.",
    },
    {
        "key": "revenue_uncapped",
        "name": "Revenue per user (uncapped)",
        "type": "sum",
        "event": "purchase",
        "description": "Money spent per user, whales included: compare its interval with the winsorized one.",
    },
    {
        "key": "search_errors",
        "name": "Search errors per user",
        "type": "count",
        "event": "search_error",
        "higher_is_better": False,
        "description": "Failed searches; the guardrail of the new search's safe rollout.",
    },
    {
        "key": "p90_order_value",
        "name": "p90 order value",
        "type": "quantile",
        "event": "purchase",
        "quantile": 0.9,
        "quantile_scope": "event",
        "description": "The order value 90% of orders stay below: does the banner change big baskets?",
    },
]

EXPERIMENTS = [
    {
        "key": "checkout_button",
        "name": "Green checkout button",
        "hypothesis": "A green, larger checkout button raises the purchase rate.",
        "description": "Demo: the treatment has a real effect (+15% purchase rate).",
        "variants": [
            {"key": "control", "name": "Blue button", "payload": {"color": "blue"}},
            {"key": "treatment", "name": "Green button", "payload": {"color": "green"}},
        ],
        "metrics": [
            {"metric": "purchase_rate", "role": "primary"},
            {"metric": "revenue", "role": "secondary"},
            {"metric": "average_order_value", "role": "secondary"},
            {"metric": "errors", "role": "guardrail"},
        ],
        "sequential": True,
        "correction": "holm",
        "minimum_detectable_effect": 0.1,
        "tags": ["checkout"],
    },
    {
        "key": "homepage_aa",
        "name": "Homepage A/A check",
        "hypothesis": "Both variants are identical; nothing should be significant.",
        "description": "Demo: an A/A test that checks the platform itself.",
        "variants": [{"key": "control", "name": "A"}, {"key": "treatment", "name": "A again"}],
        "metrics": [
            {"metric": "purchase_rate", "role": "primary"},
            {"metric": "orders", "role": "secondary"},
        ],
        "tags": ["platform"],
    },
    {
        "key": "pricing_banner",
        "name": "Pricing banner",
        "hypothesis": "A discount banner raises revenue.",
        "description": "Demo: the treatment's logging drops users, so the sample ratio is off (SRM).",
        "variants": [
            {"key": "control", "name": "No banner"},
            {"key": "treatment", "name": "Discount banner"},
        ],
        "metrics": [
            {"metric": "revenue", "role": "primary"},
            {"metric": "p90_order_value", "role": "secondary"},
            {"metric": "errors", "role": "guardrail"},
        ],
        "engine": "bayesian",
        "tags": ["pricing"],
    },
    {
        "key": "free_shipping",
        "name": "Free shipping over 50",
        "hypothesis": "Free shipping on orders over 50 makes baskets bigger.",
        "description": "Demo: baskets grow in Germany only (country DE); a few whales make revenue "
        "heavy-tailed, so the winsorized revenue finds the lift and the uncapped one cannot.",
        "variants": [
            {"key": "control", "name": "Paid shipping"},
            {"key": "treatment", "name": "Free shipping over 50"},
        ],
        "metrics": [
            {"metric": "revenue_winsorized", "role": "primary"},
            {"metric": "revenue_uncapped", "role": "secondary"},
            {"metric": "purchase_rate", "role": "secondary"},
        ],
        "tags": ["pricing"],
    },
]
EXPERIMENT_KEYS = tuple(spec["key"] for spec in EXPERIMENTS)

# --- the simulation's parameters (the stories above) ------------------------------------------------
DEFAULT_UNITS = 100_000
DEFAULT_DAYS = 14
DEFAULT_SEED = 20240601
BASE_PURCHASE_RATE = 0.10  # mean of every user's purchase propensity (Beta(0.5, 4.5))
PROPENSITY_BETA = (0.5, 4.5)  # heterogeneous users: what makes the pre-period predictive (CUPED)
CHECKOUT_LIFT = 0.15  # green button: chance to buy × 1.15
PRICING_BANNER_LOGGING_LOSS = 1 - 45 / 55  # 18% of the banner's exposures never arrive: 45/55 split
PRICING_BANNER_VALUE_LIFT = 0.05  # the banner's users spend 5% more per order (untrustworthy: SRM)
EXTRA_ORDERS_MEAN = 0.4  # a buyer places 1 + Poisson(0.4) orders
ORDER_VALUE_GAMMA = (2.0, 30.0)  # order value: Gamma(shape 2, scale 30), mean 60
ERRORS_PER_DAY = 0.05  # client errors per user per day after the first visit, the same in every variant
MULTIPLE_EXPOSURE_SHARE = 0.002  # checkout users whose second visit logged the other variant
PURCHASE_WINDOW = dt.timedelta(days=7)  # buyers buy within a week of their first visit
PRE_PERIOD = dt.timedelta(days=14)  # the CUPED look-back before each user's first visit
CHUNK_UNITS = 10_000  # users simulated and written per batch
# Exposure attributes (what the SDK sent), drawn per user: country, browser and plan.
COUNTRIES = (("US", 0.4), ("DE", 0.2), ("GB", 0.15), ("FR", 0.15), ("BR", 0.1))
BROWSERS = (("chrome", 0.6), ("safari", 0.25), ("firefox", 0.1), ("edge", 0.05))
PLANS = (("free", 0.8), ("pro", 0.2))
FREE_SHIPPING_COUNTRY = "DE"  # the only country where free shipping changes anything
FREE_SHIPPING_VALUE_LIFT = 0.5  # there, the treatment's orders are 50% bigger
# Whales: a share of all orders is worth 1 + WHALE_SCALE × Pareto(WHALE_SHAPE) times as much (mean ×101):
# revenue gets a heavy tail, which the winsorized revenue caps at its 99th percentile.
WHALE_ORDER_SHARE = 0.005
WHALE_SHAPE = 1.2
WHALE_SCALE = 20.0
# The new search: a flag rolled out to NEW_SEARCH_COVERAGE of production under a safe rollout that
# watches search errors, started SAFE_ROLLOUT_DAYS ago; the new search fails NEW_SEARCH_ERROR_FACTOR
# times as often (the planted regression), so the demo's results refresh rolls it back.
NEW_SEARCH_FLAG = "new_search"
NEW_SEARCH_COVERAGE = 0.2
SAFE_ROLLOUT_DAYS = 3
SEARCH_ERRORS_PER_DAY = 0.03
NEW_SEARCH_ERROR_FACTOR = 2.5
HOLDOUT_KEY = "checkout_holdout"
HOLDOUT_PERCENTAGE = 10.0  # held out; as many again measured as the general population
HOLDOUT_EXPERIMENTS = ("checkout_button", "free_shipping")
HOLDOUT_FLAGS = ("new_checkout",)
HOLDOUT_METRICS = ("purchase_rate", "revenue")
DEMO_ENVIRONMENT = "production"
EVENT_NAMESPACE = uuid.UUID("8a4f2c1e-5d3b-4e7a-9c6f-0b1d2e3f4a5b")  # deterministic demo event ids


def _features() -> list[dict]:
    return [
        {
            "key": "new_checkout",
            "name": "New checkout",
            "type": "boolean",
            "default_value": False,
            "description": "Served by the checkout_button experiment.",
            "environments": {
                env: {
                    "enabled": True,
                    "rules": [
                        {
                            "type": "force",
                            "condition": {"email": {"$regex": "@example\\.com$"}},
                            "value": True,
                        },
                        {
                            "type": "experiment",
                            "experiment": "checkout_button",
                            "values": {"control": False, "treatment": True},
                        },
                    ],
                }
                for env in ("development", "production")
            },
        },
        {
            "key": "dark_mode",
            "name": "Dark mode",
            "type": "boolean",
            "default_value": False,
            "environments": {
                "production": {
                    "enabled": True,
                    "rules": [{"type": "rollout", "value": True, "coverage": 0.3}],
                },
                "development": {"enabled": True, "rules": [{"type": "force", "value": True}]},
            },
        },
        {
            "key": "search_results_limit",
            "name": "Search results per page",
            "type": "number",
            "default_value": 20,
            "environments": {
                env: {
                    "enabled": True,
                    "rules": [{"type": "force", "condition": {"plan": "pro"}, "value": 50}],
                }
                for env in ("development", "production")
            },
        },
        {
            "key": "onboarding_copy",
            "name": "Onboarding headline",
            "type": "string",
            "default_value": "Welcome!",
            "environments": {
                env: {
                    "enabled": True,
                    "rules": [
                        {
                            "type": "force",
                            "condition": {"country": {"$in": ["DE", "AT"]}},
                            "value": "Willkommen!",
                        }
                    ],
                }
                for env in ("development", "production")
            },
        },
        {
            "key": NEW_SEARCH_FLAG,
            "name": "New search",
            "type": "boolean",
            "default_value": False,
            "description": "Rolled out under a safe rollout that watches search errors (demo: it "
            "rolled itself back).",
            "environments": {
                "production": {
                    "enabled": True,
                    "rules": [
                        {
                            "type": "rollout",
                            "value": True,
                            "coverage": NEW_SEARCH_COVERAGE,
                            "safe_rollout": {
                                "metrics": ["search_errors", "errors"],
                                "finish_after_hours": 7 * 24,
                            },
                        }
                    ],
                },
                "development": {"enabled": True, "rules": [{"type": "force", "value": True}]},
            },
        },
        {
            "key": "pricing_config",
            "name": "Pricing configuration",
            "type": "json",
            "default_value": {"currency": "USD", "discount": 0.0},
            "environments": {"development": {"enabled": True, "rules": []}},
        },
    ]


@dataclass
class DemoWorkspace:
    admin_username: str
    admin_password: str | None  # None: the user existed already and was left alone
    sdk_key: str | None
    created: list[str]


@transaction.atomic
def demo_workspace_create(*, admin_password: str) -> DemoWorkspace:
    """The demo's configuration; what exists already is left as it is (idempotent).

    The ``admin`` superuser is created with ``admin_password`` only when there is no user of that name:
    an existing user, whoever made it, keeps its password and permissions.
    """
    created: list[str] = []
    User = get_user_model()
    admin = User.objects.filter(username=DEMO_ADMIN_USERNAME).first()
    password: str | None = None
    if admin is None:
        admin = User.objects.create_superuser(
            username=DEMO_ADMIN_USERNAME, email="admin@example.com", password=admin_password
        )
        password = admin_password
        created.append("admin user")

    for spec in METRICS:
        if not Metric.objects.filter(key=spec["key"]).exists():
            metric_create(user=admin, **spec)
            created.append(f"metric {spec['key']}")

    for spec in EXPERIMENTS:
        if not Experiment.objects.filter(key=spec["key"]).exists():
            # The simulated traffic is production's (DEMO_ENVIRONMENT), which is what the results analyse.
            experiment = experiment_create(user=admin, analysis_environments=[DEMO_ENVIRONMENT], **spec)
            experiment_start(experiment=experiment, user=admin)
            created.append(f"experiment {spec['key']}")

    for spec in _features():
        if not Feature.objects.filter(key=spec["key"]).exists():
            feature_create(user=admin, **spec)
            created.append(f"feature {spec['key']}")

    if not Holdout.objects.filter(key=HOLDOUT_KEY).exists():
        holdout = holdout_create(
            user=admin,
            key=HOLDOUT_KEY,
            name="Checkout holdout",
            description="Demo: 10% of users kept out of this half-year's checkout work, to measure its "
            "combined lift.",
            percentage=HOLDOUT_PERCENTAGE,
            environments=[DEMO_ENVIRONMENT],
            features=list(Feature.objects.filter(key__in=HOLDOUT_FLAGS)),
            experiments=list(Experiment.objects.filter(key__in=HOLDOUT_EXPERIMENTS)),
            metrics=list(Metric.objects.filter(key__in=HOLDOUT_METRICS)),
        )
        holdout_start(holdout=holdout, user=admin)
        created.append(f"holdout {HOLDOUT_KEY}")

    sdk_key = None
    development = Environment.objects.get(key="development")
    if not SdkKey.objects.filter(environment=development, name="demo").exists():
        _, sdk_key = sdk_key_create(environment=development, name="demo", user=admin)
        created.append("SDK key for development")
    return DemoWorkspace(DEMO_ADMIN_USERNAME, password, sdk_key, created)


# --- traffic -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrafficResult:
    """What ``demo_traffic_write`` did: the rows it wrote, or why it wrote none."""

    units: int
    exposures: int
    events: int
    skipped: bool  # the demo experiments already had exposures: nothing written


def demo_safe_rollout() -> SafeRollout | None:
    """The new search's safe rollout (its internal experiment's key is only known once it exists)."""
    return (
        SafeRollout.objects.select_related("experiment")
        .filter(rule__feature__key=NEW_SEARCH_FLAG, rule__environment__key=DEMO_ENVIRONMENT)
        .first()
    )


def demo_holdout() -> Holdout | None:
    """The checkout holdout, once started (its internal experiment exists then)."""
    return (
        Holdout.objects.select_related("experiment").filter(key=HOLDOUT_KEY, experiment__isnull=False).first()
    )


def _demo_experiment_keys() -> list[str]:
    safe, holdout = demo_safe_rollout(), demo_holdout()
    return [
        *EXPERIMENT_KEYS,
        *([safe.experiment.key] if safe is not None else []),
        *([holdout.experiment.key] if holdout is not None else []),
    ]


def demo_exposure_counts() -> dict[str, dict]:
    """Exposures already stored for each demo experiment (and the safe rollout's): ``{key: {"n", "first"}}``."""
    rows = clickhouse.query(
        "SELECT experiment, count() AS n, min(timestamp) AS first FROM exposures "
        "WHERE experiment IN {keys:Array(String)} GROUP BY experiment",
        {"keys": _demo_experiment_keys()},
    )
    return {row["experiment"]: {"n": row["n"], "first": row["first"]} for row in rows}


@dataclass(frozen=True)
class _Arm:
    """How the simulation assigns units of one experiment: the platform's own bucketing."""

    key: str
    seed: str
    variants: tuple[str, ...]
    weights: tuple[float, ...]

    def variant_of(self, unit_id: str) -> str:
        index = assign_variant(seed=self.seed, unit_id=unit_id, weights=self.weights, traffic_allocation=1.0)
        return self.variants[index if index is not None else 0]


def _arms() -> dict[str, _Arm]:
    arms = {}
    for experiment in Experiment.objects.filter(key__in=EXPERIMENT_KEYS).prefetch_related("variants"):
        variants = list(experiment.variants.all())
        arms[experiment.key] = _Arm(
            key=experiment.key,
            seed=experiment.seed,
            variants=tuple(v.key for v in variants),
            weights=tuple(v.weight for v in variants),
        )
    missing = set(EXPERIMENT_KEYS) - set(arms)
    if missing:
        raise ValueError(
            f"Create the demo workspace first; missing experiments: {', '.join(sorted(missing))}."
        )
    return arms


def _event_id(unit_id: str, name: str, phase: str, index: int) -> uuid.UUID:
    return uuid.uuid5(EVENT_NAMESPACE, f"{unit_id}/{name}/{phase}/{index}")


@dataclass(frozen=True)
class _Monitor:
    """The new search's safe rollout as the simulation sees it: its experiment and when it started."""

    experiment: str
    since: dt.datetime

    def variant_of(self, unit_id: str) -> str:
        # The flag's own rollout hash (GrowthBook's isIncludedInRollout, the flag key as seed).
        return "treatment" if in_rollout(NEW_SEARCH_FLAG, unit_id, NEW_SEARCH_COVERAGE) else "control"


@dataclass(frozen=True)
class _HoldoutArm:
    """The checkout holdout as the simulation sees it: its internal experiment, compiled as the flag
    evaluation compiles it (seed, coverage, two equal variants), and what it holds users out of."""

    experiment: str
    compiled: CompiledExperiment
    experiments: frozenset[str]

    @classmethod
    def of(cls, holdout: Holdout) -> _HoldoutArm:
        raw = {
            "experiment": holdout.experiment.key,
            "seed": holdout.seed,
            "coverage": holdout.coverage,
            "hash_attribute": holdout.hash_attribute,
        }
        compiled = holdout_compile(holdout.key, raw)
        keys = frozenset(holdout.experiments.values_list("key", flat=True))
        return cls(experiment=holdout.experiment.key, compiled=compiled, experiments=keys)

    def variant_of(self, unit_id: str) -> str | None:
        """``holdout``, ``general`` (its measurement sample) or None (neither: served as usual)."""
        assignment = assign(self.compiled, unit_id, {"id": unit_id})
        return assignment.variant if assignment.in_experiment else None


def _draw(rng: np.random.Generator, table: tuple[tuple[str, float], ...], count: int) -> np.ndarray:
    return rng.choice([key for key, _ in table], size=count, p=[share for _, share in table])


def _simulate_chunk(
    *,
    first: int,
    count: int,
    seed: int,
    start: dt.datetime,
    now: dt.datetime,
    arms: dict[str, _Arm],
    monitor: _Monitor | None = None,
    holdout: _HoldoutArm | None = None,
) -> tuple[list[tuple], list[tuple]]:
    """Exposure and event rows (the tables' column order) of users ``first`` .. ``first + count - 1``.

    Deterministic for a seed: the same users get the same variants, purchases and event ids.
    """
    rng = np.random.default_rng([seed, first])
    # A second stream for what came later (attributes, whales, the new search), so the first stream's
    # draws, and so the older stories' numbers, stay as they were.
    later = np.random.default_rng([seed, first, 1])
    countries, browsers, plans = (
        _draw(later, COUNTRIES, count),
        _draw(later, BROWSERS, count),
        _draw(later, PLANS, count),
    )
    span = (now - start).total_seconds() - 600  # first visits stop 10 minutes before now
    first_visit = rng.random(count) * span
    since_t0 = span + 600 - first_visit
    propensity = rng.beta(*PROPENSITY_BETA, count)
    lost, seen_twice = rng.random(count), rng.random(count)
    buys_before, buys_after = rng.random(count), rng.random(count)
    errors = rng.poisson(ERRORS_PER_DAY * since_t0 / 86_400)
    exposures: list[tuple] = []
    events: list[tuple] = []
    checkout, banner, shipping = arms["checkout_button"], arms["pricing_banner"], arms["free_shipping"]

    def event(unit_id: str, name: str, phase: str, index: int, value: float, at: dt.datetime) -> tuple:
        return (_event_id(unit_id, name, phase, index), name, unit_id, value, at, now, DEMO_ENVIRONMENT, {})

    for offset in range(count):
        unit_id = f"demo-user-{first + offset:06d}"
        t0 = start + dt.timedelta(seconds=float(first_visit[offset]))
        attributes = {
            "country": str(countries[offset]),
            "browser": str(browsers[offset]),
            "plan": str(plans[offset]),
        }
        variants = {key: arm.variant_of(unit_id) for key, arm in arms.items()}
        held = holdout.variant_of(unit_id) if holdout is not None else None
        # Held out: never in the held-out experiments (no exposure, served as the control is).
        held_out_of = holdout.experiments if held == HELD_OUT else frozenset()
        if held is not None:  # evaluated for a held-out experiment: exposed to the holdout
            exposures.append((holdout.experiment, held, unit_id, t0, now, DEMO_ENVIRONMENT, attributes))
        for key, variant in variants.items():
            if key in held_out_of:
                variants[key] = arms[key].variants[0]
                continue
            if (
                key == banner.key
                and variant != banner.variants[0]
                and lost[offset] < PRICING_BANNER_LOGGING_LOSS
            ):
                continue  # the banner's logging lost this exposure: the SRM story
            exposures.append((key, variant, unit_id, t0, now, DEMO_ENVIRONMENT, attributes))
        if seen_twice[offset] < MULTIPLE_EXPOSURE_SHARE and checkout.key not in held_out_of:
            other = next(v for v in checkout.variants if v != variants[checkout.key])
            second_visit = t0 + dt.timedelta(seconds=float(since_t0[offset]) / 2)
            exposures.append((checkout.key, other, unit_id, second_visit, now, DEMO_ENVIRONMENT, attributes))
        in_green = variants[checkout.key] != checkout.variants[0]
        value_scale = 1.0 + (PRICING_BANNER_VALUE_LIFT if variants[banner.key] != banner.variants[0] else 0.0)
        if variants[shipping.key] != shipping.variants[0] and attributes["country"] == FREE_SHIPPING_COUNTRY:
            value_scale *= 1.0 + FREE_SHIPPING_VALUE_LIFT  # free shipping: bigger baskets, in Germany only

        # The same propensity before and after the first visit: the pre-period predicts the metric.
        after = min(PURCHASE_WINDOW.total_seconds(), float(since_t0[offset])) * 0.999
        for phase, draw, chance, window_start, window in (
            ("pre", buys_before[offset], propensity[offset], t0 - PRE_PERIOD, PRE_PERIOD.total_seconds()),
            ("post", buys_after[offset], propensity[offset] * (1.0 + CHECKOUT_LIFT * in_green), t0, after),
        ):
            if draw >= chance:
                continue
            orders = 1 + int(rng.poisson(EXTRA_ORDERS_MEAN))
            values = rng.gamma(*ORDER_VALUE_GAMMA, orders) * value_scale
            whales = later.random(orders) < WHALE_ORDER_SHARE
            values *= np.where(whales, 1.0 + WHALE_SCALE * later.pareto(WHALE_SHAPE, orders), 1.0)
            moments = np.sort(rng.random(orders)) * window
            for index in range(orders):
                at = window_start + dt.timedelta(seconds=float(moments[index]))
                events.append(event(unit_id, "purchase", phase, index, round(float(values[index]), 2), at))
        for index, moment in enumerate(rng.random(int(errors[offset])) * since_t0[offset]):
            events.append(
                event(unit_id, "error", "post", index, 1.0, t0 + dt.timedelta(seconds=float(moment)))
            )
        if monitor is not None and t0 >= monitor.since:
            # A visitor since the new search's rollout started: exposed to its safe rollout (evaluating
            # the monitored rule exposes every matching unit), the new search failing more often.
            variant = monitor.variant_of(unit_id)
            exposures.append((monitor.experiment, variant, unit_id, t0, now, DEMO_ENVIRONMENT, attributes))
            rate = SEARCH_ERRORS_PER_DAY * (NEW_SEARCH_ERROR_FACTOR if variant == "treatment" else 1.0)
            failures = int(later.poisson(rate * float(since_t0[offset]) / 86_400))
            for index, moment in enumerate(later.random(failures) * since_t0[offset]):
                at = t0 + dt.timedelta(seconds=float(moment))
                events.append(event(unit_id, "search_error", "post", index, 1.0, at))
    return exposures, events


def _chunks(units: int) -> Iterator[tuple[int, int]]:
    for first in range(0, units, CHUNK_UNITS):
        yield first, min(CHUNK_UNITS, units - first)


def demo_traffic_write(
    *,
    units: int = DEFAULT_UNITS,
    days: int = DEFAULT_DAYS,
    seed: int = DEFAULT_SEED,
    now: dt.datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrafficResult:
    """Simulate ``units`` users over the last ``days`` days and store their exposures and events.

    Idempotent: does nothing when a demo experiment already has exposures. ``progress(done, total)``
    is called after each batch of users.
    """
    if demo_exposure_counts():
        return TrafficResult(units=0, exposures=0, events=0, skipped=True)
    arms = _arms()
    now = now or timezone.now()
    start = now - dt.timedelta(days=days)
    safe = demo_safe_rollout()
    monitor = None
    if safe is not None and safe.status == SafeRolloutStatus.MONITORING:
        monitor = _Monitor(safe.experiment.key, now - dt.timedelta(days=min(SAFE_ROLLOUT_DAYS, days)))
    running = demo_holdout()
    holdout = (
        _HoldoutArm.of(running) if running is not None and running.status == HoldoutStatus.RUNNING else None
    )
    written_exposures = written_events = done = 0
    for first, count in _chunks(units):
        exposures, events = _simulate_chunk(
            first=first,
            count=count,
            seed=seed,
            start=start,
            now=now,
            arms=arms,
            monitor=monitor,
            holdout=holdout,
        )
        # Straight into ClickHouse in large batches (the write path's tables and columns): the demo checked
        # that ClickHouse answers, so the spool that protects acknowledged API writes is not needed.
        written_exposures += clickhouse.insert(EXPOSURES.name, exposures, EXPOSURES.columns)
        written_events += clickhouse.insert(EVENTS.name, events, EVENTS.columns)
        done += count
        if progress is not None:
            progress(done, units)
    return TrafficResult(units=units, exposures=written_exposures, events=written_events, skipped=False)


def demo_experiments_backdate() -> dict[str, dt.datetime]:
    """Set each demo experiment's ``started_at`` to its first exposure; the dates set.

    The simulated traffic starts days ago, so the experiments "started" then. This is a plain
    ``QuerySet.update``: it writes no history entry and bumps no version (nothing a person changed),
    and ``started_at`` is not part of the flag configuration, so no cache needs to know.
    """
    backdated = {}
    safe, holdout = demo_safe_rollout(), demo_holdout()
    for key, counts in demo_exposure_counts().items():
        Experiment.objects.filter(key=key, started_at__isnull=False).update(started_at=counts["first"])
        if safe is not None and key == safe.experiment.key:
            # The safe rollout's hours run from its start (the finish is counted from it).
            SafeRollout.objects.filter(pk=safe.pk).update(started_at=counts["first"])
        if holdout is not None and key == holdout.experiment.key:
            Holdout.objects.filter(pk=holdout.pk).update(started_at=counts["first"])
        backdated[key] = counts["first"]
    return backdated


def demo_results_refresh(*, progress: Callable[[str, float], None] | None = None) -> dict[str, dict]:
    """Compute the demo experiments' results now; each experiment's results document.

    The safe rollout's experiment too: its refresh runs the safe rollout's check (analytics.safe_rollouts),
    which rolls the new search back on its search errors, with the evidence in its history."""
    documents = {}
    for experiment in Experiment.objects.filter(key__in=_demo_experiment_keys()).order_by("pk"):
        snapshot = experiment_results_refresh(experiment_id=experiment.pk, refreshed_by="demo")
        documents[experiment.key] = snapshot.payload
        if progress is not None:
            progress(experiment.key, snapshot.duration_ms or 0)
    return documents
