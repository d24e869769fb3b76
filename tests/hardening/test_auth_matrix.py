"""Who may call what: every operation of the OpenAPI schema (and the pages outside it) against every
kind of caller, with the status each must get.

The rows are checked against the schema both ways: an operation the schema documents without a row
fails ``test_auth_matrix__every_schema_operation__has_a_row`` (so a new endpoint cannot be
forgotten), and a row whose operation left the schema fails it too.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from config.exceptions import ApprovalRequired
from experiments.services import experiment_pause, experiment_start
from features.governance.models import ChangeRequest, ScheduledChange
from features.governance.services import feature_write, scheduled_change_create
from features.holdouts.services import holdout_create, holdout_start
from features.models import Environment, Webhook
from features.sdk import cache as sdk_cache
from features.services import feature_create, feature_update, sdk_key_create
from tests.factories import (
    ExperimentFactory,
    ExperimentMetricFactory,
    MetricFactory,
    ProductManagerFactory,
    UserFactory,
)
from tests.hardening.conftest import TwoEnvironments

pytestmark = pytest.mark.django_db

# sdk_a, sdk_b: secret SDK keys of environments A and B; client_a: a client (publishable) key of A.
CALLERS = ("anonymous", "sdk_a", "sdk_b", "client_a", "user", "pm", "admin")
# Shorthands for rows: the status of each caller, in CALLERS order.
PUBLIC = (200,) * 7


def sdk_only(ok: int) -> tuple[int, ...]:
    """SDK endpoints: no credential 401, either environment's secret key ``ok``, a client key 403
    (it only reads the payload), a user's token 403."""
    return (401, ok, ok, 403, 403, 403, 403)


def payload(ok: int) -> tuple[int, ...]:
    """The GrowthBook payload and remote evaluation: the key is in the path; any valid key (client or
    secret) calls them.
    Callers without a key ask with an unknown one: 401."""
    return (401, ok, ok, ok, 401, 401, 401)


def signed_in(ok: int) -> tuple[int, ...]:
    """Management reads: any signed-in user; an SDK key (secret or client) is a valid credential not
    allowed here (403)."""
    return (401, 403, 403, 403, ok, ok, ok)


def with_permission(ok: int, *, pm: bool = True) -> tuple[int, ...]:
    """Management writes: the model's permission (product managers have it for metrics,
    experiments and features; only admins for environments). An SDK key: 403, as on reads."""
    return (401, 403, 403, 403, 403, ok if pm else 403, ok)


# --- the objects the rows act on ---------------------------------------------------------------------------
@dataclass
class World:
    envs: TwoEnvironments
    tokens: dict[str, str]
    client_key_a: str = ""


@pytest.fixture
def world(two_environments, clean_clickhouse) -> World:
    metric = MetricFactory(key="conversion", event="purchase")
    MetricFactory(key="unused", event="unused")
    draft = ExperimentFactory(key="exp_draft")
    ExperimentMetricFactory(experiment=draft, metric=metric)
    experiment_start(experiment=ExperimentFactory(key="exp_running"), user=None)
    paused = ExperimentFactory(key="exp_paused")
    experiment_start(experiment=paused, user=None)
    experiment_pause(experiment=paused, user=None)
    Environment.objects.create(key="sandbox", name="Sandbox", position=9)
    # Without passwords: tokens and sessions need none, and hashing one costs a quarter second.
    users = {
        "user": UserFactory(username="no_permissions", password=None),
        "pm": ProductManagerFactory(username="pm", password=None),
        "admin": UserFactory(username="root", password=None, is_staff=True, is_superuser=True),
    }
    tokens = {name: Token.objects.create(user=user).key for name, user in users.items()}
    cache.delete("analytics:results-refresh:exp_running")
    _, client_key_a = sdk_key_create(environment=two_environments.a, name="browser", kind="client")
    # A fixed id, so the rows can name its paths; nothing listens on the port (deliveries are not sent:
    # each caller's request is rolled back before its transaction commits).
    Webhook.objects.create(
        pk=WEBHOOK_ID, name="hook", url="http://127.0.0.1:8389/none", event_types=["flag.changed"]
    )
    _governance_objects(UserFactory(username="author", password=None, is_staff=True, is_superuser=True))
    holdout_create(user=None, key="hold_draft", name="Draft holdout")
    holdout_start(holdout=holdout_create(user=None, key="hold_running", name="Running holdout"), user=None)
    return World(envs=two_environments, tokens=tokens, client_key_a=client_key_a)


def _governance_objects(author) -> None:
    """An open change request (ids CHANGE_REQUEST_ID) by someone who is none of the callers, and a
    pending scheduled change (SCHEDULED_CHANGE_ID). The sandbox requires approval only while the change
    request is made, so that no other row's write is held."""
    sandbox = Environment.objects.get(key="sandbox")
    flag = feature_create(user=None, key="gov_flag", name="Governed", type="boolean", default_value=False)
    sandbox.requires_approval = True
    sandbox.save(update_fields=["requires_approval"])
    with pytest.raises(ApprovalRequired) as held:
        feature_write(
            feature=flag,
            user=author,
            run=lambda: feature_update(
                feature=flag, user=author, environments={"sandbox": {"enabled": True, "rules": []}}
            ),
        )
    ChangeRequest.objects.filter(pk=held.value.payload["id"]).update(id=CHANGE_REQUEST_ID)
    sandbox.requires_approval = False
    sandbox.save(update_fields=["requires_approval"])
    scheduled = scheduled_change_create(
        feature=flag,
        environment=sandbox,
        action="switch_on",
        run_at=timezone.now() + dt.timedelta(days=30),
        user=author,
    )
    ScheduledChange.objects.filter(pk=scheduled.pk).update(id=SCHEDULED_CHANGE_ID)


def sdk_key_of(world: World, caller: str) -> str | None:
    return {"sdk_a": world.envs.key_a, "sdk_b": world.envs.key_b, "client_a": world.client_key_a}.get(caller)


def credentials(world: World, caller: str) -> dict[str, str]:
    if caller == "anonymous":
        return {}
    if key := sdk_key_of(world, caller):
        return {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    return {"HTTP_AUTHORIZATION": f"Token {world.tokens[caller]}"}


# --- the matrix --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    expected: tuple[int, ...]  # per caller, in CALLERS order
    path: str = ""  # the concrete path (default: the schema path as it is)
    body: Any = None
    session: bool = False  # a page: users sign in with a session rather than a token


EVENT = {"events": [{"name": "purchase", "unit_id": "u-1", "value": 2}]}
EXPOSURE = {"exposures": [{"experiment": "exp_running", "variant": "control", "unit_id": "u-1"}]}
CONTEXT = {"context": {"targetingKey": "u-1", "plan": "pro"}}
METRIC = {"key": "new_metric", "name": "New metric", "type": "count", "event": "signup"}
EXPERIMENT = {
    "key": "exp_new",
    "name": "New experiment",
    "variants": [{"key": "control"}, {"key": "treatment"}],
    "metrics": [{"metric": "conversion", "role": "primary"}],
}
FEATURE = {"key": "new_flag", "name": "New flag", "type": "boolean", "default_value": False}
ENVIRONMENT = {"key": "qa", "name": "QA", "position": 5}
POWER = {"baseline_mean": 0.1, "daily_units": 2000, "weights": [1, 1], "relative_lift": 0.05}
HOLDOUT = {"key": "hold_new", "name": "New holdout", "percentage": 5, "metrics": ["conversion"]}
WEBHOOK_ID = 901
CHANGE_REQUEST_ID = 902
SCHEDULED_CHANGE_ID = 903
SCHEDULE = {
    "feature": "gov_flag",
    "environment": "sandbox",
    "action": "switch_off",
    "run_at": "2099-01-01T09:00:00Z",
}
WEBHOOK = {"name": "Chat", "url": "http://127.0.0.1:8389/chat", "event_types": ["experiment.started"]}

MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/api/health"): Row(PUBLIC),
    # SDK endpoints
    ("POST", "/api/v1/assign"): Row(sdk_only(200), body={"unit_id": "u-1", "log_exposure": False}),
    ("POST", "/api/v1/evaluate"): Row(sdk_only(200), body={"unit_id": "u-1"}),
    ("POST", "/api/v1/events"): Row(sdk_only(202), body=EVENT),
    ("POST", "/api/v1/exposures"): Row(sdk_only(202), body=EXPOSURE),
    ("POST", "/ofrep/v1/evaluate/flags"): Row(sdk_only(200), body=CONTEXT),
    ("POST", "/ofrep/v1/evaluate/flags/{key}"): Row(
        sdk_only(200), path="/ofrep/v1/evaluate/flags/only_in_a", body=CONTEXT
    ),
    # the key in the path ({client_key} is the caller's key, or an unknown one)
    ("GET", "/api/features/{client_key}"): Row(payload(200)),
    ("POST", "/api/eval/{client_key}"): Row(payload(200), body={"attributes": {"id": "u-1"}}),
    # metrics
    ("GET", "/api/v1/metrics/"): Row(signed_in(200)),
    ("POST", "/api/v1/metrics/"): Row(with_permission(201), body=METRIC),
    ("GET", "/api/v1/metrics/{key}/"): Row(signed_in(200), path="/api/v1/metrics/conversion/"),
    ("PUT", "/api/v1/metrics/{key}/"): Row(
        with_permission(200),
        path="/api/v1/metrics/conversion/",
        body={"key": "conversion", "name": "Conversion", "type": "binomial", "event": "purchase"},
    ),
    ("PATCH", "/api/v1/metrics/{key}/"): Row(
        with_permission(200), path="/api/v1/metrics/conversion/", body={"name": "Renamed"}
    ),
    ("DELETE", "/api/v1/metrics/{key}/"): Row(with_permission(204), path="/api/v1/metrics/unused/"),
    # experiments
    ("GET", "/api/v1/experiments/"): Row(signed_in(200)),
    ("POST", "/api/v1/experiments/"): Row(with_permission(201), body=EXPERIMENT),
    ("GET", "/api/v1/experiments/{key}/"): Row(signed_in(200), path="/api/v1/experiments/exp_draft/"),
    ("PUT", "/api/v1/experiments/{key}/"): Row(
        with_permission(200),
        path="/api/v1/experiments/exp_draft/",
        body={**EXPERIMENT, "key": "exp_draft", "name": "Replaced"},
    ),
    ("PATCH", "/api/v1/experiments/{key}/"): Row(
        with_permission(200), path="/api/v1/experiments/exp_draft/", body={"description": "Why"}
    ),
    ("DELETE", "/api/v1/experiments/{key}/"): Row(
        with_permission(204), path="/api/v1/experiments/exp_draft/"
    ),
    ("POST", "/api/v1/experiments/{key}/start/"): Row(
        with_permission(200), path="/api/v1/experiments/exp_draft/start/"
    ),
    ("POST", "/api/v1/experiments/{key}/pause/"): Row(
        with_permission(200), path="/api/v1/experiments/exp_running/pause/"
    ),
    ("POST", "/api/v1/experiments/{key}/resume/"): Row(
        with_permission(200), path="/api/v1/experiments/exp_paused/resume/"
    ),
    ("POST", "/api/v1/experiments/{key}/stop/"): Row(
        with_permission(200), path="/api/v1/experiments/exp_running/stop/", body={"reason": "done"}
    ),
    ("POST", "/api/v1/experiments/{key}/archive/"): Row(
        with_permission(200), path="/api/v1/experiments/exp_draft/archive/"
    ),
    ("GET", "/api/v1/experiments/{key}/results/"): Row(
        signed_in(200), path="/api/v1/experiments/exp_running/results/"
    ),
    ("GET", "/api/v1/experiments/{key}/results/dimensions/"): Row(
        signed_in(200), path="/api/v1/experiments/exp_running/results/dimensions/"
    ),
    ("POST", "/api/v1/experiments/{key}/results/refresh/"): Row(
        with_permission(202), path="/api/v1/experiments/exp_running/results/refresh/"
    ),
    ("POST", "/api/v1/power"): Row(signed_in(200), body=POWER),
    # features
    ("GET", "/api/v1/features/"): Row(signed_in(200)),
    ("POST", "/api/v1/features/"): Row(with_permission(201), body=FEATURE),
    ("GET", "/api/v1/features/{key}/"): Row(signed_in(200), path="/api/v1/features/only_in_a/"),
    ("PUT", "/api/v1/features/{key}/"): Row(
        with_permission(200),
        path="/api/v1/features/only_in_a/",
        body={**FEATURE, "key": "only_in_a", "name": "Replaced"},
    ),
    ("PATCH", "/api/v1/features/{key}/"): Row(
        with_permission(200), path="/api/v1/features/only_in_a/", body={"description": "Why"}
    ),
    ("DELETE", "/api/v1/features/{key}/"): Row(with_permission(204), path="/api/v1/features/only_in_a/"),
    # holdouts
    ("GET", "/api/v1/holdouts/"): Row(signed_in(200)),
    ("POST", "/api/v1/holdouts/"): Row(with_permission(201), body=HOLDOUT),
    ("GET", "/api/v1/holdouts/{key}/"): Row(signed_in(200), path="/api/v1/holdouts/hold_draft/"),
    ("PUT", "/api/v1/holdouts/{key}/"): Row(
        with_permission(200), path="/api/v1/holdouts/hold_draft/", body={**HOLDOUT, "key": "hold_draft"}
    ),
    ("PATCH", "/api/v1/holdouts/{key}/"): Row(
        with_permission(200), path="/api/v1/holdouts/hold_draft/", body={"description": "Why"}
    ),
    ("DELETE", "/api/v1/holdouts/{key}/"): Row(with_permission(204), path="/api/v1/holdouts/hold_draft/"),
    ("POST", "/api/v1/holdouts/{key}/start/"): Row(
        with_permission(200), path="/api/v1/holdouts/hold_draft/start/"
    ),
    ("POST", "/api/v1/holdouts/{key}/stop/"): Row(
        with_permission(200), path="/api/v1/holdouts/hold_running/stop/"
    ),
    # environments: product managers read them; only admins change them
    ("GET", "/api/v1/environments/"): Row(signed_in(200)),
    ("POST", "/api/v1/environments/"): Row(with_permission(201, pm=False), body=ENVIRONMENT),
    ("GET", "/api/v1/environments/{key}/"): Row(signed_in(200), path="/api/v1/environments/sandbox/"),
    ("PUT", "/api/v1/environments/{key}/"): Row(
        with_permission(200, pm=False),
        path="/api/v1/environments/sandbox/",
        body={"key": "sandbox", "name": "Sandbox 2"},
    ),
    ("PATCH", "/api/v1/environments/{key}/"): Row(
        with_permission(200, pm=False), path="/api/v1/environments/sandbox/", body={"name": "Sandbox 3"}
    ),
    ("DELETE", "/api/v1/environments/{key}/"): Row(
        with_permission(204, pm=False), path="/api/v1/environments/sandbox/"
    ),
    # webhooks: their URLs name internal services, so even reading needs the webhook permissions
    # (admins have them; product managers do not)
    ("GET", "/api/v1/webhooks/"): Row(with_permission(200, pm=False)),
    ("POST", "/api/v1/webhooks/"): Row(with_permission(201, pm=False), body=WEBHOOK),
    ("GET", "/api/v1/webhooks/{id}/"): Row(
        with_permission(200, pm=False), path=f"/api/v1/webhooks/{WEBHOOK_ID}/"
    ),
    ("PUT", "/api/v1/webhooks/{id}/"): Row(
        with_permission(200, pm=False), path=f"/api/v1/webhooks/{WEBHOOK_ID}/", body=WEBHOOK
    ),
    ("PATCH", "/api/v1/webhooks/{id}/"): Row(
        with_permission(200, pm=False), path=f"/api/v1/webhooks/{WEBHOOK_ID}/", body={"enabled": False}
    ),
    ("DELETE", "/api/v1/webhooks/{id}/"): Row(
        with_permission(204, pm=False), path=f"/api/v1/webhooks/{WEBHOOK_ID}/"
    ),
    ("POST", "/api/v1/webhooks/{id}/test/"): Row(
        with_permission(202, pm=False), path=f"/api/v1/webhooks/{WEBHOOK_ID}/test/"
    ),
    ("POST", "/api/v1/webhooks/{id}/rotate-secret/"): Row(
        with_permission(200, pm=False), path=f"/api/v1/webhooks/{WEBHOOK_ID}/rotate-secret/"
    ),
    ("GET", "/api/v1/webhooks/{id}/deliveries/"): Row(
        with_permission(200, pm=False), path=f"/api/v1/webhooks/{WEBHOOK_ID}/deliveries/"
    ),
    # configuration as code: any signed-in user reads it; importing needs every kind's permissions,
    # environments' included (admins)
    ("GET", "/api/v1/config/export/"): Row(signed_in(200)),
    ("POST", "/api/v1/config/import/"): Row(with_permission(200, pm=False), body={"version": 1}),
    # approvals: any signed-in user reads change requests; approving and rejecting need the approve
    # permission (product managers have it) and never the author (someone else here)
    ("GET", "/api/v1/change-requests/"): Row(signed_in(200)),
    ("GET", "/api/v1/change-requests/{id}/"): Row(
        signed_in(200), path=f"/api/v1/change-requests/{CHANGE_REQUEST_ID}/"
    ),
    ("POST", "/api/v1/change-requests/{id}/approve/"): Row(
        with_permission(200), path=f"/api/v1/change-requests/{CHANGE_REQUEST_ID}/approve/"
    ),
    ("POST", "/api/v1/change-requests/{id}/reject/"): Row(
        with_permission(200), path=f"/api/v1/change-requests/{CHANGE_REQUEST_ID}/reject/"
    ),
    # scheduled flag changes: read by anyone signed in, made and cancelled with the permissions
    ("GET", "/api/v1/scheduled-changes/"): Row(signed_in(200)),
    ("GET", "/api/v1/scheduled-changes/{id}/"): Row(
        signed_in(200), path=f"/api/v1/scheduled-changes/{SCHEDULED_CHANGE_ID}/"
    ),
    ("POST", "/api/v1/scheduled-changes/"): Row(with_permission(201), body=SCHEDULE),
    ("POST", "/api/v1/scheduled-changes/{id}/cancel/"): Row(
        with_permission(200), path=f"/api/v1/scheduled-changes/{SCHEDULED_CHANGE_ID}/cancel/"
    ),
}
# Outside the schema: the documentation is public; the admin is for staff, signed in by session.
PAGES: dict[tuple[str, str], Row] = {
    ("GET", "/api/schema"): Row(PUBLIC),
    ("GET", "/api/docs"): Row(PUBLIC),
    ("GET", "/api/redoc"): Row(PUBLIC),
    ("GET", "/admin/"): Row((302, 302, 302, 302, 302, 200, 200), session=True),
    ("GET", "/admin/features/sdkkey/"): Row((302, 302, 302, 302, 302, 200, 200), session=True),
    ("GET", "/admin/auth/user/"): Row((302, 302, 302, 302, 302, 403, 200), session=True),
}


def schema_operations(client: Client) -> set[tuple[str, str]]:
    schema = client.get("/api/schema", HTTP_ACCEPT="application/json").json()
    return {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }


def test_auth_matrix__every_schema_operation__has_a_row(db, client):
    operations = schema_operations(client)
    missing = sorted(operations - set(MATRIX))
    stale = sorted(set(MATRIX) - operations)
    assert not missing, f"operations without a row in the auth matrix: {missing}"
    assert not stale, f"rows for operations no longer in the schema: {stale}"


def call(world: World, method: str, path: str, caller: str, row: Row):
    client = Client()
    headers = credentials(world, caller)
    if row.session and caller in ("user", "pm", "admin"):
        client.force_login(Token.objects.get(key=world.tokens[caller]).user)
        headers = {}
    send: Callable = getattr(client, method.lower())
    path = row.path or path
    if "{client_key}" in path:  # the payload's key travels in its path, GrowthBook's way
        before, _, after = path.partition("{client_key}")
        path = before + (sdk_key_of(world, caller) or "pk_unknown") + after
    if method == "GET":
        return send(path, **headers)
    return send(path, row.body or {}, content_type="application/json", **headers)


@pytest.mark.parametrize(
    "method, path, row", [pytest.param(m, p, r, id=f"{m} {p}") for (m, p), r in {**MATRIX, **PAGES}.items()]
)
def test_auth_matrix__operation__expected_status_for_every_caller(world, method, path, row):
    wrong = []
    for caller, expected in zip(CALLERS, row.expected, strict=True):
        # Each caller meets the same state: what one changes is rolled back before the next.
        with transaction.atomic():
            response = call(world, method, path, caller, row)
            transaction.set_rollback(True)
        sdk_cache.memo_clear()
        sdk_cache.config_invalidate()
        cache.delete("analytics:results-refresh:exp_running")  # one refresh per experiment per 30 s
        if response.status_code != expected:
            wrong.append(f"{caller}: {response.status_code}, wanted {expected}: {response.content[:200]!r}")
        elif expected == 401 and not response.has_header("WWW-Authenticate"):
            wrong.append(f"{caller}: 401 without WWW-Authenticate")
    assert not wrong, f"{method} {row.path or path}:\n" + "\n".join(wrong)


# --- an SDK key is a credential, for the SDK endpoints only ------------------------------------------------------
@pytest.mark.parametrize(
    "method, path, body",
    [
        ("get", "/api/v1/metrics/", None),
        ("post", "/api/v1/experiments/", EXPERIMENT),
        ("get", "/api/v1/experiments/exp_running/results/", None),
        ("post", "/api/v1/power", POWER),
    ],
)
@pytest.mark.parametrize("header", ["HTTP_AUTHORIZATION", "HTTP_X_API_KEY"])
def test_sdk_key__on_a_management_endpoint__403_saying_where_it_belongs(world, method, path, body, header):
    key = world.envs.key_a
    credentials = {header: f"Bearer {key}" if header == "HTTP_AUTHORIZATION" else key}
    response = getattr(Client(), method)(path, body or {}, content_type="application/json", **credentials)
    assert response.status_code == 403, response.content
    assert "SDK key only calls the SDK endpoints" in response.json()["detail"]
    assert not response.has_header("WWW-Authenticate")


@pytest.mark.parametrize("key", ["sdk_unknown_key", "revoked"])
def test_sdk_key__unknown_or_revoked_on_a_management_endpoint__still_401(world, key):
    from features.models import SdkKey, hash_sdk_key

    if key == "revoked":
        key = world.envs.key_b
        SdkKey.objects.filter(hashed_key=hash_sdk_key(key)).update(revoked=True)
        sdk_cache.config_invalidate()
    response = Client().get("/api/v1/metrics/", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 401
    assert response.has_header("WWW-Authenticate")


# --- an SDK key reads only its own environment -----------------------------------------------------------------
@pytest.mark.parametrize(
    "path, body, read",
    [
        ("/api/v1/evaluate", {"unit_id": "u-1"}, lambda body: body["flags"]["only_in_a"]),
        ("/ofrep/v1/evaluate/flags/only_in_a", CONTEXT, lambda body: body),
        (
            "/ofrep/v1/evaluate/flags",
            CONTEXT,
            lambda body: next(flag for flag in body["flags"] if flag["key"] == "only_in_a"),
        ),
    ],
)
def test_sdk_key__flag_on_only_in_the_other_environment__disabled_default(two_environments, path, body, read):
    a = TwoEnvironments.client(two_environments.key_a).post(path, body, format="json")
    b = TwoEnvironments.client(two_environments.key_b).post(path, body, format="json")
    assert a.status_code == b.status_code == 200
    assert read(a.json())["value"] is True and read(a.json())["reason"] == "TARGETING_MATCH"
    assert read(b.json())["value"] is False and read(b.json())["reason"] == "DISABLED"


@pytest.mark.parametrize("field", ["environment", "environment_id", "env"])
def test_sdk_key__asks_for_another_environment_in_the_body__still_its_own(two_environments, field):
    b = TwoEnvironments.client(two_environments.key_b)
    body = {"unit_id": "u-1", field: "production", "attributes": {field: "production"}}
    response = b.post("/api/v1/evaluate", body, format="json")
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        assert response.json()["flags"]["only_in_a"]["value"] is False


def test_sdk_key__revoked__refused_at_once(two_environments):
    from features.models import SdkKey, hash_sdk_key

    client = TwoEnvironments.client(two_environments.key_a)
    assert client.post("/api/v1/evaluate", {"unit_id": "u"}, format="json").status_code == 200
    key = SdkKey.objects.get(hashed_key=hash_sdk_key(two_environments.key_a))
    key.revoked = True
    key.save()
    assert client.post("/api/v1/evaluate", {"unit_id": "u"}, format="json").status_code == 401
    assert client.post("/ofrep/v1/evaluate/flags", CONTEXT, format="json").status_code == 401


# --- a client key (publishable) reads the payload, nothing else -------------------------------------------------
@pytest.mark.parametrize(
    "path, body, reason_field",
    [
        ("/api/v1/assign", {"unit_id": "u-1", "log_exposure": False}, "detail"),
        ("/api/v1/evaluate", {"unit_id": "u-1"}, "detail"),
        ("/api/v1/events", EVENT, "detail"),
        ("/api/v1/exposures", EXPOSURE, "detail"),
        ("/ofrep/v1/evaluate/flags", CONTEXT, "errorDetails"),
        ("/ofrep/v1/evaluate/flags/only_in_a", CONTEXT, "errorDetails"),
    ],
)
def test_client_key__on_an_sdk_endpoint__403_with_the_reason(world, path, body, reason_field):
    response = TwoEnvironments.client(world.client_key_a).post(path, body, format="json")
    assert response.status_code == 403, response.content
    assert "client key" in response.json()[reason_field] and "secret SDK key" in response.json()[reason_field]


def test_client_key__reads_its_environments_payload__same_as_the_secret_key(world):
    by_client = Client().get(f"/api/features/{world.client_key_a}")
    by_secret = Client().get(f"/api/features/{world.envs.key_a}")
    assert by_client.status_code == by_secret.status_code == 200
    assert by_client.json()["features"] == by_secret.json()["features"]
    assert by_client.json()["features"]["only_in_a"] == {"defaultValue": False, "rules": [{"force": True}]}
    other = Client().get(f"/api/features/{world.envs.key_b}").json()
    assert other["features"]["only_in_a"] == {"defaultValue": False}  # disabled in B: the default only


def test_client_key__revoked__payload_401(world):
    from features.models import SdkKey, hash_sdk_key

    key = SdkKey.objects.get(hashed_key=hash_sdk_key(world.client_key_a))
    key.revoked = True
    key.save()
    response = Client().get(f"/api/features/{world.client_key_a}")
    assert response.status_code == 401
    assert response.has_header("WWW-Authenticate")


def test_client_key__remote_eval__its_environments_values_same_as_the_secret_key(world):
    body = {"attributes": {"id": "u-1"}}
    by_client = Client().post(f"/api/eval/{world.client_key_a}", body, content_type="application/json")
    by_secret = Client().post(f"/api/eval/{world.envs.key_a}", body, content_type="application/json")
    assert by_client.status_code == by_secret.status_code == 200
    assert by_client.json()["features"] == by_secret.json()["features"]
    assert by_client.json()["features"]["only_in_a"] == {"defaultValue": True}
    other = Client().post(f"/api/eval/{world.envs.key_b}", body, content_type="application/json").json()
    assert other["features"]["only_in_a"] == {"defaultValue": False}  # disabled in B: the default
