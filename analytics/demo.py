"""The demo workspace: metrics, flags and experiments with known stories, made idempotently.

`manage.py demo` calls `demo_workspace_create`; running it again changes nothing that exists.
"""

import logging
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction

from experiments.models import Experiment
from experiments.services import experiment_create, experiment_start
from features.models import Environment, Feature, SdkKey
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
]

EXPERIMENTS = [
    {
        "key": "checkout_button",
        "name": "Green checkout button",
        "hypothesis": "A green, larger checkout button raises the purchase rate.",
        "description": "Demo: the treatment has a real effect (+10% purchase rate).",
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
        "metrics": [{"metric": "revenue", "role": "primary"}, {"metric": "errors", "role": "guardrail"}],
        "engine": "bayesian",
        "tags": ["pricing"],
    },
]


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
    admin_password: str
    sdk_key: str | None
    created: list[str]


@transaction.atomic
def demo_workspace_create(*, admin_password: str) -> DemoWorkspace:
    created: list[str] = []
    User = get_user_model()
    admin, made = User.objects.get_or_create(
        username=DEMO_ADMIN_USERNAME,
        defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"},
    )
    admin.set_password(admin_password)
    admin.save()
    if made:
        created.append("admin user")

    for spec in METRICS:
        if not Metric.objects.filter(key=spec["key"]).exists():
            metric_create(user=admin, **spec)
            created.append(f"metric {spec['key']}")

    for spec in EXPERIMENTS:
        if not Experiment.objects.filter(key=spec["key"]).exists():
            experiment = experiment_create(user=admin, **spec)
            experiment_start(experiment=experiment, user=admin)
            created.append(f"experiment {spec['key']}")

    for spec in _features():
        if not Feature.objects.filter(key=spec["key"]).exists():
            feature_create(user=admin, **spec)
            created.append(f"feature {spec['key']}")

    sdk_key = None
    development = Environment.objects.get(key="development")
    if not SdkKey.objects.filter(environment=development, name="demo").exists():
        _, sdk_key = sdk_key_create(environment=development, name="demo", user=admin)
        created.append("SDK key for development")
    return DemoWorkspace(DEMO_ADMIN_USERNAME, admin_password, sdk_key, created)
