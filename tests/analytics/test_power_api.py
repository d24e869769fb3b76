"""`POST /api/v1/power`: the planning calculator answers what ``analytics.stats`` answers."""

import math

import pytest
from django.urls import reverse

from analytics.stats import days_needed, minimum_detectable_effect, statistical_power

pytestmark = pytest.mark.django_db
URL = reverse("power")


@pytest.fixture
def client(api_client, user):
    api_client.force_authenticate(user)  # any logged-in user may plan
    return api_client


def test_power__relative_lift_on_a_rate__days_needed_from_stats(client):
    body = {"baseline_mean": 0.1, "daily_units": 2000, "weights": [1, 1], "alpha": 0.05, "power": 0.8,
            "relative_lift": 0.05}  # fmt: skip

    response = client.post(URL, body, format="json")

    assert response.status_code == 200, response.json()
    answer = response.json()
    expected = days_needed(
        relative_lift=0.05, mean=0.1, daily_units=2000, weights=[1, 1], alpha=0.05, target_power=0.8
    )
    assert answer["days"] == pytest.approx(expected, rel=1e-12)
    assert answer["units"] == pytest.approx(expected * 2000, rel=1e-12)
    assert answer["power"] == pytest.approx(0.8, abs=1e-6)
    assert answer["relative_lift"] == 0.05 and answer["detectable"] is True


def test_power__days_with_variance_three_arms_sequential__mde_from_stats(client):
    body = {"baseline_mean": 12.5, "baseline_variance": 900.0, "daily_units": 5000, "weights": [2, 1, 1],
            "days": 14, "sequential": True, "sequential_tuning": 10000}  # fmt: skip

    answer = client.post(URL, body, format="json").json()

    common = {"mean": 12.5, "variance": 900.0, "weights": [2, 1, 1], "alpha": 0.05, "sequential": True,
              "sequential_tuning": 10000}  # fmt: skip
    mde = minimum_detectable_effect(days=14, daily_units=5000, target_power=0.8, **common)
    assert answer["relative_lift"] == pytest.approx(mde, rel=1e-12)
    assert answer["power"] == pytest.approx(
        statistical_power(relative_lift=mde, units=70_000, **common), rel=1e-12
    )
    assert answer["days"] == 14 and answer["detectable"] is True


def test_power__too_few_units__not_detectable(client):
    body = {"baseline_mean": 0.01, "daily_units": 1, "days": 1}

    answer = client.post(URL, body, format="json").json()

    assert answer["detectable"] is False and answer["relative_lift"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"daily_units": 100, "relative_lift": 0.1}, "baseline_mean"),
        ({"baseline_mean": 2.0, "daily_units": 100, "relative_lift": 0.1}, "baseline_mean"),  # a rate > 1
        ({"baseline_mean": 0.0, "baseline_variance": 1.0, "daily_units": 100, "relative_lift": 0.1}, "baseline_mean"),
        ({"baseline_mean": 5.0, "baseline_variance": -1.0, "daily_units": 100, "relative_lift": 0.1},
         "baseline_variance"),
        ({"baseline_mean": 0.1, "daily_units": 0, "relative_lift": 0.1}, "daily_units"),
        ({"baseline_mean": 0.1, "daily_units": 100, "weights": [1], "relative_lift": 0.1}, "weights"),
        ({"baseline_mean": 0.1, "daily_units": 100, "weights": [1, 0], "relative_lift": 0.1}, "weights"),
        ({"baseline_mean": 0.1, "daily_units": 100, "alpha": 1.5, "relative_lift": 0.1}, "alpha"),
        ({"baseline_mean": 0.1, "daily_units": 100, "power": 0, "relative_lift": 0.1}, "power"),
        ({"baseline_mean": 0.1, "daily_units": 100, "relative_lift": 0}, "relative_lift"),
        ({"baseline_mean": 0.1, "daily_units": 100}, "relative_lift"),  # neither lift nor days
        ({"baseline_mean": 0.1, "daily_units": 100, "relative_lift": 0.1, "days": 7}, "relative_lift"),  # both
        ({"baseline_mean": 0.1, "daily_units": 100, "days": -3}, "days"),
        ({"baseline_mean": "a lot", "daily_units": 100, "days": 3}, "baseline_mean"),
    ],
)  # fmt: skip
def test_power__bad_input__400_naming_the_field(client, body, field):
    response = client.post(URL, body, format="json")

    assert response.status_code == 400
    assert field in response.json(), response.json()


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"baseline_mean": 0.1, "daily_units": 2000, "relative_lift": 1e-300}, "relative_lift", "Too small to detect"),
        ({"baseline_mean": 0.1, "daily_units": 2000, "relative_lift": 1e-300, "sequential": True}, "relative_lift",
         "Too small to detect"),
        ({"baseline_mean": 0.1, "daily_units": 2000, "weights": [1e308, 1e308], "relative_lift": 0.05}, "weights",
         "at most 1,000,000"),
        ({"baseline_mean": 1e-300, "baseline_variance": 1.0, "daily_units": 2000, "relative_lift": 0.05},
         "relative_lift", "Too small to detect"),
        ({"baseline_mean": 1e308, "baseline_variance": 1.0, "daily_units": 2000, "relative_lift": 0.05},
         "baseline_mean", "less than or equal to"),
        ({"baseline_mean": 5.0, "baseline_variance": 1e308, "daily_units": 2000, "relative_lift": 0.05},
         "baseline_variance", "less than or equal to"),
        ({"baseline_mean": 0.1, "daily_units": 1e308, "relative_lift": 0.05}, "daily_units", "less than or equal to"),
        ({"baseline_mean": 0.1, "daily_units": 2000, "days": 1e308}, "days", "less than or equal to"),
        ({"baseline_mean": 0.1, "daily_units": 2000, "relative_lift": 1e308}, "relative_lift", "less than or equal to"),
        ({"baseline_mean": 0.1, "daily_units": 2000, "sequential_tuning": 1e308, "days": 14}, "sequential_tuning",
         "less than or equal to"),
    ],
)  # fmt: skip
def test_power__extreme_numbers__400_with_the_field_and_the_reason(client, body, field, reason):
    response = client.post(URL, body, format="json")

    assert response.status_code == 400, response.content
    assert reason in " ".join(response.json()[field])


@pytest.mark.parametrize("lift", [1e-100, 1e-160, -1e-300, 5e-324, 1000.0, -0.999999])
@pytest.mark.parametrize("sequential", [False, True])
@pytest.mark.parametrize("weights", [[1e6, 1e6], [1e-300, 1]])
def test_power__any_bounded_input__answers_finite_numbers_or_400(client, lift, sequential, weights):
    body = {"baseline_mean": 0.1, "daily_units": 2000, "weights": weights, "relative_lift": lift,
            "sequential": sequential}  # fmt: skip

    response = client.post(URL, body, format="json")

    assert response.status_code in (200, 400), response.content
    if response.status_code == 200:
        answer = response.json()
        assert all(math.isfinite(answer[name]) for name in ("days", "relative_lift", "units", "power"))
    else:
        assert set(response.json()) <= {"relative_lift", "weights"}, response.json()
