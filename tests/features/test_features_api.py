import pytest
from django.urls import reverse

from features.models import Feature, FeatureRule
from tests.factories import ExperimentFactory, FeatureFactory

pytestmark = pytest.mark.django_db

LIST_URL = reverse("feature-list")


def payload(**overrides) -> dict:
    data = {"key": "new_checkout", "name": "New checkout", "type": "boolean", "default_value": False}
    data.update(overrides)
    return data


def test_feature_create__environments_and_rules__round_trip(pm_client):
    ExperimentFactory(key="checkout_exp")
    environments = {
        "production": {
            "enabled": True,
            "rules": [
                {"type": "force", "condition": {"plan": "internal"}, "value": True},
                {"type": "rollout", "condition": {}, "value": True, "coverage": 0.2},
                {
                    "type": "experiment",
                    "condition": {},
                    "experiment": "checkout_exp",
                    "values": {"control": False, "treatment": True},
                },
            ],
        },
        "staging": {"enabled": False, "rules": []},
    }
    response = pm_client.post(LIST_URL, payload(environments=environments, tags=["checkout"]), format="json")
    assert response.status_code == 201, response.json()
    got = pm_client.get(reverse("feature-detail", args=["new_checkout"])).json()
    assert got["environments"]["production"] == environments["production"]
    assert got["environments"]["staging"] == {"enabled": False, "rules": []}
    assert got["environments"]["development"] == {"enabled": False, "rules": []}
    assert got["tags"] == ["checkout"]


def test_feature_update__one_environment__others_kept(pm_client):
    pm_client.post(
        LIST_URL,
        payload(environments={"production": {"enabled": True, "rules": [{"type": "force", "value": True}]}}),
        format="json",
    )
    response = pm_client.patch(
        reverse("feature-detail", args=["new_checkout"]),
        {"environments": {"staging": {"enabled": True}}},
        format="json",
    )
    assert response.status_code == 200, response.json()
    envs = response.json()["environments"]
    assert envs["staging"]["enabled"] is True
    assert envs["production"]["rules"] == [{"type": "force", "condition": {}, "value": True}]


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"default_value": "yes"}, "default_value", "true or false"),
        ({"type": "number", "default_value": "1"}, "default_value", "number"),
        ({"type": "number", "default_value": True}, "default_value", "number"),
        ({"type": "string", "default_value": 3}, "default_value", "string"),
        ({"type": "json", "default_value": [1]}, "default_value", "object"),
        ({"type": "colour"}, "type", "colour"),
        ({"key": "Bad Key"}, "key", "slug"),
        ({"environments": {"moon": {"enabled": True}}}, "environments", "moon"),
        ({"environments": {"production": {"enabled": "yes"}}}, "environments", "true or false"),
        ({"environments": {"production": {"rules": [{"type": "magic"}]}}}, "environments", "type"),
        ({"environments": {"production": {"rules": [{"type": "force"}]}}}, "environments", "needs a value"),
        (
            {"environments": {"production": {"rules": [{"type": "force", "value": "on"}]}}},
            "environments",
            "true or false",
        ),
        (
            {
                "environments": {
                    "production": {"rules": [{"type": "force", "value": True, "condition": {"$nor": 1}}]}
                }
            },
            "environments",
            "$nor",
        ),
        (
            {
                "environments": {
                    "production": {"rules": [{"type": "rollout", "value": True, "coverage": 1.5}]}
                }
            },
            "environments",
            "coverage",
        ),
        (
            {"environments": {"production": {"rules": [{"type": "rollout", "value": True}]}}},
            "environments",
            "coverage",
        ),
        (
            {
                "environments": {
                    "production": {"rules": [{"type": "experiment", "experiment": "ghost", "values": {}}]}
                }
            },
            "environments",
            "ghost",
        ),
        (
            {
                "environments": {
                    "production": {
                        "rules": [{"type": "experiment", "experiment": "exp", "values": {"control": True}}]
                    }
                }
            },
            "environments",
            "treatment",
        ),
        (
            {
                "environments": {
                    "production": {
                        "rules": [
                            {
                                "type": "experiment",
                                "experiment": "exp",
                                "values": {"control": True, "treatment": "yes"},
                            }
                        ]
                    }
                }
            },
            "environments",
            "true or false",
        ),
        ({"prerequisites": [{"feature": "ghost", "value": True}]}, "prerequisites", "ghost"),
        ({"prerequisites": [{"feature": "base_flag", "value": "x"}]}, "prerequisites", "true or false"),
    ],
)
def test_feature_create__invalid__400_with_field(pm_client, overrides, field, fragment):
    ExperimentFactory(key="exp")
    FeatureFactory(key="base_flag")
    response = pm_client.post(LIST_URL, payload(**overrides), format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json(), response.json()
    assert fragment.lower() in str(response.json()[field]).lower()
    assert not Feature.objects.filter(key="new_checkout").exists()
    assert not FeatureRule.objects.exists()


def test_feature_prerequisites__self__400(pm_client):
    FeatureFactory(key="a")
    response = pm_client.patch(
        reverse("feature-detail", args=["a"]),
        {"prerequisites": [{"feature": "a", "value": True}]},
        format="json",
    )
    assert response.status_code == 400
    assert "own prerequisite" in str(response.json()["prerequisites"])


def test_feature_prerequisites__indirect_cycle__400(pm_client):
    FeatureFactory(key="a")
    FeatureFactory(key="b")
    FeatureFactory(key="c")
    detail = lambda key: reverse("feature-detail", args=[key])  # noqa: E731
    assert (
        pm_client.patch(
            detail("a"), {"prerequisites": [{"feature": "b", "value": True}]}, format="json"
        ).status_code
        == 200
    )
    assert (
        pm_client.patch(
            detail("b"), {"prerequisites": [{"feature": "c", "value": True}]}, format="json"
        ).status_code
        == 200
    )
    response = pm_client.patch(
        detail("c"), {"prerequisites": [{"feature": "a", "value": True}]}, format="json"
    )
    assert response.status_code == 400
    assert "cycle" in str(response.json()["prerequisites"])


def test_feature_update__type_change_that_breaks_rules__400(pm_client):
    pm_client.post(
        LIST_URL,
        payload(environments={"production": {"rules": [{"type": "force", "value": True}]}}),
        format="json",
    )
    response = pm_client.patch(
        reverse("feature-detail", args=["new_checkout"]),
        {"type": "string", "default_value": "x"},
        format="json",
    )
    assert response.status_code == 400
    assert Feature.objects.get(key="new_checkout").type == "boolean"


def test_feature_list__filter_and_search(pm_client):
    FeatureFactory(key="dark_mode", name="Dark mode").tags.add("ui")
    FeatureFactory(key="limits", name="Limits", type="number", default_value=3)
    assert [f["key"] for f in pm_client.get(LIST_URL, {"tag": "ui"}).json()["results"]] == ["dark_mode"]
    assert [f["key"] for f in pm_client.get(LIST_URL, {"type": "number"}).json()["results"]] == ["limits"]
    assert [f["key"] for f in pm_client.get(LIST_URL, {"search": "dark"}).json()["results"]] == ["dark_mode"]


def test_feature_number__float_and_int_values__kept(pm_client):
    response = pm_client.post(
        LIST_URL, payload(key="ratio", type="number", default_value=0.25), format="json"
    )
    assert response.json()["default_value"] == 0.25
    response = pm_client.post(LIST_URL, payload(key="limit", type="number", default_value=3), format="json")
    assert response.json()["default_value"] == 3


def test_feature_prerequisites__patch_item_without_value__400_naming_it(pm_client):
    FeatureFactory(key="a")
    FeatureFactory(key="b")
    response = pm_client.patch(
        reverse("feature-detail", args=["a"]), {"prerequisites": [{"feature": "b"}]}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "value" in response.json()["prerequisites"]["0"], response.json()
