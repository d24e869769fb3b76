import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from experiments.assignment import CompiledExperiment, assign, experiment_compile
from experiments.models import Experiment, ExperimentStatus
from experiments.services import experiment_create
from tests.factories import ExperimentFactory, FeatureRuleFactory, MetricFactory

pytestmark = pytest.mark.django_db

LIST_URL = reverse("experiment-list")


def detail_url(key: str) -> str:
    return reverse("experiment-detail", args=[key])


def action_url(key: str, action: str) -> str:
    return reverse(f"experiment-{action}", args=[key])


VARIANTS = [{"key": "control"}, {"key": "treatment"}]


def valid_payload(**overrides) -> dict:
    payload = {
        "key": "checkout_button",
        "name": "Green checkout button",
        "variants": [{"key": "control", "weight": 1}, {"key": "treatment", "weight": 1}],
    }
    payload.update(overrides)
    return payload


def test_experiment_create__valid_payload__201_as_draft(pm_client, product_manager):
    # Given a metric to attach
    MetricFactory(key="purchase_rate")
    # When
    response = pm_client.post(
        LIST_URL,
        valid_payload(metrics=[{"metric": "purchase_rate", "role": "primary"}], tags=["checkout"]),
        format="json",
    )
    # Then
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "draft"
    assert body["version"] == 1
    assert body["owner"] == product_manager.username
    assert [v["key"] for v in body["variants"]] == ["control", "treatment"]
    assert body["metrics"] == [{"metric": "purchase_rate", "role": "primary"}]
    assert body["tags"] == ["checkout"]
    assert body["traffic_allocation"] == 1.0


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"variants": [{"key": "control"}]}, "variants", "at least two"),
        ({"variants": [{"key": "a"}, {"key": "a"}]}, "variants", "unique"),
        ({"variants": [{"key": "a", "weight": 1}, {"key": "b", "weight": 0}]}, "variants", "greater than 0"),
        ({"variants": [{"key": "a", "weight": 1}, {"key": "b", "weight": -2}]}, "variants", "greater than 0"),
        ({"variants": [{"key": "a"}, {"key": "b c"}]}, "variants", "slug"),
        ({"traffic_allocation": 1.5}, "traffic_allocation", "less than or equal to 1"),
        ({"traffic_allocation": -0.1}, "traffic_allocation", "greater than or equal to 0"),
        ({"targeting": {"country": {"$near": 1}}}, "targeting", "$near"),
        ({"targeting": {"$or": {"a": 1}}}, "targeting", "$or"),
        ({"targeting": ["not", "a", "dict"]}, "targeting", ""),
        ({"key": "not a slug"}, "key", "slug"),
        ({"metrics": [{"metric": "nope", "role": "primary"}]}, "metrics", "nope"),
        ({"metrics": [{"metric": "m1", "role": "boss"}]}, "metrics", "boss"),
        ({"alpha": 0}, "alpha", ""),
        ({"engine": "magic"}, "engine", "magic"),
        ({"prior_mean": 0.0}, "prior_stddev", "both"),
        ({"hash_seed": "check\x1fout"}, "hash_seed", "control characters"),
        ({"layer": "home\x1fpage"}, "layer", "control characters"),
        ({"layer": "home\npage"}, "layer", "control characters"),
        ({"layer": "home\ud800"}, "layer", "surrogate"),
        ({"layer": "x" * 101}, "layer", "no more than 100 characters"),
        (
            {"scheduled_start_at": "2030-01-02T00:00:00Z", "scheduled_stop_at": "2030-01-01T00:00:00Z"},
            "scheduled_stop_at",
            "after",
        ),
    ],
)
def test_experiment_create__invalid_field__400_names_field_and_reason(pm_client, overrides, field, fragment):
    MetricFactory(key="m1")
    # Encoded here (as ASCII JSON with \u escapes): the test client cannot encode a lone surrogate itself
    body = json.dumps(valid_payload(**overrides))
    response = pm_client.post(LIST_URL, body, content_type="application/json")
    assert response.status_code == 400, response.json()
    body = response.json()
    assert field in body, body
    assert fragment.lower() in str(body[field]).lower()
    assert not Experiment.objects.exists()


def test_experiment_create__duplicate_metric__400(pm_client):
    MetricFactory(key="m1")
    payload = valid_payload(metrics=[{"metric": "m1"}, {"metric": "m1", "role": "guardrail"}])
    response = pm_client.post(LIST_URL, payload, format="json")
    assert response.status_code == 400
    assert "twice" in str(response.json()["metrics"])


def test_experiment_create__duplicate_key__400(pm_client):
    ExperimentFactory(key="checkout_button")
    response = pm_client.post(LIST_URL, valid_payload(), format="json")
    assert response.status_code == 400
    assert "key" in response.json()


def test_experiment_create__malformed_json__400(pm_client):
    response = pm_client.post(LIST_URL, "{not json", content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("action", "from_status", "to_status"),
    [
        ("start", "draft", "running"),
        ("pause", "running", "paused"),
        ("resume", "paused", "running"),
        ("stop", "running", "stopped"),
        ("stop", "paused", "stopped"),
        ("archive", "draft", "archived"),
        ("archive", "stopped", "archived"),
    ],
)
def test_experiment_lifecycle__allowed_transition__200_and_new_status(
    pm_client, action, from_status, to_status
):
    experiment = ExperimentFactory(status=from_status)
    response = pm_client.post(action_url(experiment.key, action), {}, format="json")
    assert response.status_code == 200, response.json()
    experiment.refresh_from_db()
    assert experiment.status == to_status
    assert response.json()["status"] == to_status
    assert experiment.version == 2


ALL_ACTIONS = ["start", "pause", "resume", "stop", "archive"]
ALLOWED = {
    "start": {"draft"},
    "pause": {"running"},
    "resume": {"paused"},
    "stop": {"running", "paused"},
    "archive": {"draft", "stopped"},
}


@pytest.mark.parametrize(
    ("action", "from_status"),
    [(a, s) for a in ALL_ACTIONS for s in ExperimentStatus.values if s not in ALLOWED[a]],
)
def test_experiment_lifecycle__refused_transition__409_and_unchanged(pm_client, action, from_status):
    experiment = ExperimentFactory(status=from_status)
    response = pm_client.post(action_url(experiment.key, action), {}, format="json")
    assert response.status_code == 409, response.json()
    assert f"cannot {action}" in response.json()["detail"].lower()
    experiment.refresh_from_db()
    assert experiment.status == from_status
    assert experiment.version == 1


def test_experiment_start__sets_started_at__and_stop_records_decision(pm_client):
    experiment = ExperimentFactory()
    assert pm_client.post(action_url(experiment.key, "start"), {}, format="json").status_code == 200
    response = pm_client.post(
        action_url(experiment.key, "stop"),
        {"decision_variant": "treatment", "reason": "It won."},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["started_at"] is not None and body["stopped_at"] is not None
    assert body["decision_variant"] == "treatment"
    assert body["decision_reason"] == "It won."


def test_experiment_stop__unknown_decision_variant__400_and_still_running(pm_client):
    experiment = ExperimentFactory(status="running")
    response = pm_client.post(action_url(experiment.key, "stop"), {"decision_variant": "nope"}, format="json")
    assert response.status_code == 400
    assert "decision_variant" in response.json()
    experiment.refresh_from_db()
    assert experiment.status == "running"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"variants": [{"key": "control", "weight": 1}, {"key": "treatment", "weight": 3}]}, "variants"),
        ({"variants": [{"key": "control"}, {"key": "treatment"}, {"key": "third"}]}, "variants"),
        ({"targeting": {"plan": "pro"}}, "targeting"),
        ({"layer": "checkout"}, "layer"),
        ({"hash_seed": "other"}, "hash_seed"),
        ({"key": "renamed"}, "key"),
    ],
)
@pytest.mark.parametrize("status", ["running", "paused"])
def test_experiment_update__locked_field_while_running__409(pm_client, change, field, status):
    experiment = ExperimentFactory(status=status)
    response = pm_client.patch(detail_url(experiment.key), change, format="json")
    assert response.status_code == 409, response.json()
    assert field in response.json()["detail"]
    experiment.refresh_from_db()
    assert experiment.version == 1
    assert experiment.targeting == {}
    assert [v.weight for v in experiment.variants.all()] == [1.0, 1.0]


def test_experiment_update__ramp_up_and_description_while_running__200(pm_client):
    experiment = ExperimentFactory(status="running", traffic_allocation=0.2)
    # The variants as stored (the factory names them "Control" and "Treatment"), sent back unchanged
    response = pm_client.patch(
        detail_url(experiment.key),
        {
            "traffic_allocation": 0.6,
            "description": "ramped",
            "variants": [{"key": "control", "name": "Control"}, {"key": "treatment", "name": "Treatment"}],
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["traffic_allocation"] == 0.6
    assert response.json()["version"] == 2


def test_experiment_update__draft_variants__replaced(pm_client):
    experiment = ExperimentFactory()
    response = pm_client.patch(
        detail_url(experiment.key),
        {"variants": [{"key": "a", "weight": 2}, {"key": "b"}, {"key": "c", "payload": {"x": 1}}]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert [(v["key"], v["weight"]) for v in response.json()["variants"]] == [
        ("a", 2.0),
        ("b", 1.0),
        ("c", 1.0),
    ]


def test_experiment_update__stale_version__409_and_nothing_written(pm_client):
    experiment = ExperimentFactory()
    first = pm_client.patch(detail_url(experiment.key), {"name": "First", "version": 1}, format="json")
    assert first.status_code == 200 and first.json()["version"] == 2
    stale = pm_client.patch(detail_url(experiment.key), {"name": "Second", "version": 1}, format="json")
    assert stale.status_code == 409
    assert "version" in stale.json()
    experiment.refresh_from_db()
    assert experiment.name == "First"


def test_experiment_start__stale_version__409(pm_client):
    experiment = ExperimentFactory(version=3)
    response = pm_client.post(action_url(experiment.key, "start"), {"version": 2}, format="json")
    assert response.status_code == 409
    experiment.refresh_from_db()
    assert experiment.status == "draft"


@pytest.mark.parametrize(
    ("status", "expected"), [("draft", 204), ("archived", 204), ("running", 409), ("stopped", 409)]
)
def test_experiment_delete__by_status__only_drafts_and_archived(pm_client, status, expected):
    experiment = ExperimentFactory(status=status)
    response = pm_client.delete(detail_url(experiment.key))
    assert response.status_code == expected
    assert Experiment.objects.filter(pk=experiment.pk).exists() == (expected != 204)


def test_experiment_delete__used_by_a_flag_rule__409_naming_the_flag(pm_client):
    experiment = ExperimentFactory(status="draft")
    FeatureRuleFactory(feature__key="new_checkout", type="experiment", experiment=experiment, value=None)
    response = pm_client.delete(detail_url(experiment.key))
    assert response.status_code == 409
    assert "new_checkout" in json.dumps(response.json())
    assert Experiment.objects.filter(pk=experiment.pk).exists()


def test_experiment_list__filters_by_status_tag_and_search(pm_client):
    running = ExperimentFactory(key="running_one", name="Checkout colour", status="running")
    running.tags.add("checkout")
    ExperimentFactory(key="draft_one", name="Search ranking")
    assert [e["key"] for e in pm_client.get(LIST_URL, {"status": "running"}).json()["results"]] == [
        "running_one"
    ]
    assert [e["key"] for e in pm_client.get(LIST_URL, {"tag": "checkout"}).json()["results"]] == [
        "running_one"
    ]
    assert [e["key"] for e in pm_client.get(LIST_URL, {"search": "ranking"}).json()["results"]] == [
        "draft_one"
    ]
    body = pm_client.get(LIST_URL).json()
    assert body["count"] == 2 and "next" in body


def test_experiment_layer__second_experiment_that_does_not_fit__409(pm_client):
    first = ExperimentFactory(layer="checkout", traffic_allocation=0.6)
    second = ExperimentFactory(layer="checkout", traffic_allocation=0.5)
    assert pm_client.post(action_url(first.key, "start"), {}, format="json").status_code == 200
    response = pm_client.post(action_url(second.key, "start"), {}, format="json")
    assert response.status_code == 409
    assert "checkout" in response.json()["detail"]
    # Lowering the second to what is left lets it in, and the slices do not overlap.
    assert (
        pm_client.patch(detail_url(second.key), {"traffic_allocation": 0.4}, format="json").status_code == 200
    )
    assert pm_client.post(action_url(second.key, "start"), {}, format="json").status_code == 200
    first.refresh_from_db()
    second.refresh_from_db()
    a, b = sorted([(first.layer_slice_start, 0.6), (second.layer_slice_start, 0.4)])
    assert a[0] + a[1] <= b[0] + 1e-12


def test_experiment_layer__ramp_up_into_a_neighbour__409(pm_client):
    first = ExperimentFactory(layer="l", traffic_allocation=0.5)
    second = ExperimentFactory(layer="l", traffic_allocation=0.5)
    for experiment in (first, second):
        assert pm_client.post(action_url(experiment.key, "start"), {}, format="json").status_code == 200
    response = pm_client.patch(detail_url(first.key), {"traffic_allocation": 0.7}, format="json")
    assert response.status_code == 409
    assert "traffic_allocation" in response.json()


def test_experiment_create__service_with_lone_surrogate_in_layer__refused_naming_layer(product_manager):
    # The API's serializer already refuses surrogates; the model refuses them on every other path.
    with pytest.raises(ValidationError) as excinfo:
        experiment_create(user=product_manager, key="k", name="K", layer="home\ud800", variants=VARIANTS)
    assert "surrogate" in str(excinfo.value.message_dict["layer"])


@pytest.mark.parametrize("layer", ["home page/v2", "  home page/v2  ", "Startseite · Ü/ä:1"])
def test_experiment_create__free_text_layer__201_stored_without_surrounding_spaces(pm_client, layer):
    response = pm_client.post(LIST_URL, valid_payload(layer=layer), format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["layer"] == layer.strip()
    assert Experiment.objects.get().layer == layer.strip()


def test_experiment_create__free_text_layer_through_the_service__stripped(product_manager):
    experiment = experiment_create(
        user=product_manager, key="k", name="K", layer="  home page/v2\t", variants=VARIANTS
    )
    assert experiment.layer == "home page/v2"


@pytest.mark.parametrize("hash_seed", ["checkout-2024", "my-layer:1", "layer:1", "rollout:x", "__home"])
def test_experiment_create__any_printable_hash_seed__201(pm_client, hash_seed):
    response = pm_client.post(LIST_URL, valid_payload(hash_seed=hash_seed), format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["hash_seed"] == hash_seed


def test_experiment_update__running_with_a_seed_stored_before_the_prefix_rule__ramp_up_200(pm_client):
    # Given a running experiment whose seed was stored before the reserved prefixes were refused
    experiment = ExperimentFactory(status="running", traffic_allocation=0.5)
    Experiment.objects.filter(pk=experiment.pk).update(hash_seed="layer:legacy")
    # When it is ramped up, the seed unchanged
    response = pm_client.patch(detail_url(experiment.key), {"traffic_allocation": 0.8}, format="json")
    # Then the save goes through (refusing the old seed would lock the experiment for good)
    assert response.status_code == 200, response.json()
    experiment.refresh_from_db()
    assert (experiment.traffic_allocation, experiment.hash_seed) == (0.8, "layer:legacy")


def _compiled(experiment: Experiment) -> CompiledExperiment:
    """The experiment as the decision plane sees it, read back from the database."""
    return experiment_compile(
        {
            "key": experiment.key,
            "status": experiment.status,
            "seed": experiment.seed,
            "variants": [
                {"key": v.key, "weight": v.weight, "payload": v.payload} for v in experiment.variants.all()
            ],
            "traffic_allocation": experiment.traffic_allocation,
            "targeting": experiment.targeting,
            "layer": experiment.layer,
            "layer_slice_start": experiment.layer_slice_start,
        }
    )


def test_experiment_layer__free_text_key__two_running_experiments_never_share_a_unit(pm_client):
    # Given two experiments created and started through the API in the layer "home page/v2"
    for key, allocation in (("hero_image", 0.4), ("search_box", 0.6)):
        payload = valid_payload(key=key, layer="home page/v2", traffic_allocation=allocation)
        assert pm_client.post(LIST_URL, payload, format="json").status_code == 201
        assert pm_client.post(action_url(key, "start"), {}, format="json").status_code == 200
    # When 4,000 units are assigned to both
    compiled = {e.key: _compiled(e) for e in Experiment.objects.all()}
    units = [f"user-{i}" for i in range(4000)]
    memberships = {key: {u for u in units if assign(c, u, {}).in_experiment} for key, c in compiled.items()}
    # Then no unit is in both, and together they fill the layer, each with about its share
    assert not memberships["hero_image"] & memberships["search_box"]
    assert memberships["hero_image"] | memberships["search_box"] == set(units)
    assert abs(len(memberships["hero_image"]) / len(units) - 0.4) < 0.03
    # And a third experiment in the same layer has no room left
    banner = valid_payload(key="banner", layer="home page/v2")
    assert pm_client.post(LIST_URL, banner, format="json").status_code == 201
    response = pm_client.post(action_url("banner", "start"), {}, format="json")
    assert response.status_code == 409
    assert "home page/v2" in response.json()["detail"]


def _variants(experiment: Experiment) -> list[tuple]:
    return [(v.pk, v.key, v.name, v.weight, v.payload, v.position) for v in experiment.variants.all()]


STORED_VARIANTS = [
    {"key": "control", "name": "Control", "weight": 1.0, "payload": None},
    {"key": "treatment", "name": "Treatment", "weight": 1.0, "payload": {"color": "green", "size": 1}},
]


def _with(index: int, **changes) -> list[dict]:
    variants = [dict(v) for v in STORED_VARIANTS]
    variants[index].update(changes)
    return variants


@pytest.mark.parametrize(
    ("variants", "fragment"),
    [
        (_with(0, name="Blue"), "the name of variant “control”"),
        (_with(1, name=""), "the name of variant “treatment”"),  # an empty name is stored as the key
        (_with(1, payload={"color": "blue", "size": 1}), "the payload of variant “treatment”"),
        (_with(1, payload={"color": "green", "size": True}), "the payload of variant “treatment”"),
        (_with(1, payload=None), "the payload of variant “treatment”"),
        (_with(0, weight=2.0), "the weight of variant “control”"),
        (_with(1, key="green"), "variant 2 would be “green” instead of “treatment”"),
        (list(reversed(STORED_VARIANTS)), "variant 1 would be “treatment” instead of “control”"),
        (STORED_VARIANTS[:1], "1 variants instead of 2"),
        ([*STORED_VARIANTS, {"key": "third", "name": "Third"}], "3 variants instead of 2"),
    ],
)
@pytest.mark.parametrize("status", ["running", "paused"])
@pytest.mark.parametrize("method", ["patch", "put"])
def test_experiment_update__any_variant_change_while_running__409_and_nothing_written(
    pm_client, variants, fragment, status, method
):
    # Given a running (or paused) experiment with named variants and a payload
    experiment = ExperimentFactory(status=status, traffic_allocation=0.2)
    experiment.variants.filter(key="treatment").update(payload=STORED_VARIANTS[1]["payload"])
    before = _variants(experiment)
    body = pm_client.get(detail_url(experiment.key)).json() if method == "put" else {}
    # When the variants are sent changed, along with a ramp-up
    body.update(variants=variants, traffic_allocation=0.5)
    response = getattr(pm_client, method)(detail_url(experiment.key), body, format="json")
    # Then the write is refused as a whole, saying what changed
    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "locked"
    assert "variants cannot change once the experiment has started" in response.json()["detail"]
    assert fragment in response.json()["detail"]
    assert response.json()["variants"] == [response.json()["detail"]]
    experiment.refresh_from_db()
    assert (experiment.version, experiment.traffic_allocation) == (1, 0.2)
    assert _variants(experiment) == before


@pytest.mark.parametrize("status", ["running", "paused"])
def test_experiment_update__put_full_object_while_running__200_ramped_and_variants_kept(pm_client, status):
    # Given a running experiment whose variants have a payload and an empty name (possible from the admin)
    experiment = ExperimentFactory(status=status, traffic_allocation=0.2)
    experiment.variants.filter(key="treatment").update(name="", payload={"color": "green", "size": 1.5})
    before = _variants(experiment)
    # When the object read is written back with a higher traffic allocation
    body = pm_client.get(detail_url(experiment.key)).json()
    body["traffic_allocation"] = 0.7
    response = pm_client.put(detail_url(experiment.key), body, format="json")
    # Then the ramp-up is saved, and the variants are untouched (the same rows)
    assert response.status_code == 200, response.json()
    assert response.json()["traffic_allocation"] == 0.7
    assert response.json()["variants"] == body["variants"]
    experiment.refresh_from_db()
    assert (experiment.version, experiment.traffic_allocation) == (2, 0.7)
    assert _variants(experiment) == before


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"metrics": [{}]}, ("metrics", 0, "metric")),
        ({"metrics": [{"role": "guardrail"}]}, ("metrics", 0, "metric")),
        ({"variants": [{"weight": 1}, {"key": "treatment"}]}, ("variants", 0, "key")),
    ],
)
def test_experiment_patch__list_item_without_required_field__400_naming_it(pm_client, change, path):
    # Given a draft (a PATCH is partial, but a list in it replaces the list whole)
    experiment = ExperimentFactory()
    # When an item of the list lacks a required field
    response = pm_client.patch(detail_url(experiment.key), change, format="json")
    # Then 400 names the field (it was a 500: KeyError in the service), and nothing changed
    assert response.status_code == 400, response.content
    errors = response.json()
    field, index, name = path
    assert name in errors[field][str(index)], errors
    assert Experiment.objects.get(pk=experiment.pk).version == experiment.version


def test_experiment_patch__metric_link_without_role__primary_by_default(pm_client):
    experiment = ExperimentFactory()
    MetricFactory(key="purchase_rate")
    response = pm_client.patch(
        detail_url(experiment.key), {"metrics": [{"metric": "purchase_rate"}]}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["metrics"] == [{"metric": "purchase_rate", "role": "primary"}]
