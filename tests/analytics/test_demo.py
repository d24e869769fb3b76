"""``manage.py demo``: the workspace, the simulated traffic with its stories, and idempotence."""

import datetime as dt
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from analytics import clickhouse as ch
from analytics.demo import EXPERIMENT_KEYS, HOLDOUT_KEY
from analytics.models import ExperimentResult
from experiments.models import Experiment, ExperimentStatus
from features.holdouts.models import Holdout, HoldoutStatus
from features.models import Feature, SafeRollout, SafeRolloutStatus
from metrics.models import Metric

pytestmark = pytest.mark.django_db

UNITS = 20_000  # enough for the stories at test speed; the real demo writes 100,000


@pytest.fixture(autouse=True)
def _debug_on(settings, monkeypatch):
    """The demo is for a development machine (debug on, as `make demo` runs); pytest turns debug off."""
    settings.DEBUG = True
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)


def _demo(*args: str) -> str:
    out = io.StringIO()
    call_command("demo", *args, stdout=out)
    return out.getvalue()


def _primary(payload: dict) -> dict:
    block = next(b for b in payload["metrics"] if b["role"] == "primary")
    return block["comparisons"][0]


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_demo_command__run_twice__stories_come_out_and_nothing_doubles(clickhouse):
    # When
    first = _demo("--units", str(UNITS))
    exposures_after_first = clickhouse.count("exposures")
    events_after_first = clickhouse.count("events")
    second = _demo("--units", str(UNITS))

    # Then: the workspace, once
    assert Metric.objects.count() >= 5
    assert Feature.objects.count() >= 4
    experiments = {e.key: e for e in Experiment.objects.filter(key__in=EXPERIMENT_KEYS)}
    assert set(experiments) == set(EXPERIMENT_KEYS)
    assert all(e.status == ExperimentStatus.RUNNING for e in experiments.values())
    assert "Log in at http://127.0.0.1:8000/admin/ as admin / admin" in first
    assert f"{UNITS:,}/{UNITS:,} users" in first
    # ... the traffic, once
    assert "already stored; not written again" in second
    assert "nothing to create" in second
    assert clickhouse.count("exposures") == exposures_after_first
    assert clickhouse.count("events") == events_after_first
    assert exposures_after_first >= 2.8 * UNITS
    # ... started when their traffic did, about 14 days ago, so the time series has points
    for experiment in experiments.values():
        assert timezone.now() - experiment.started_at > dt.timedelta(days=13, hours=23)

    results = {r.experiment.key: r.payload for r in ExperimentResult.objects.select_related("experiment")}
    safe = SafeRollout.objects.select_related("rule", "experiment").get(rule__feature__key="new_search")
    assert set(results) == {*EXPERIMENT_KEYS, safe.experiment.key, f"holdout-{HOLDOUT_KEY}"}
    # ... of the production traffic the demo simulates, which is what its experiments analyse
    assert all(payload["analysis"]["environments"] == ["production"] for payload in results.values())
    # checkout_button: a real lift in purchase rate, measured near its +12%
    checkout = _primary(results["checkout_button"])
    assert 0.0 < checkout["relative"]["estimate"] < 0.3
    assert results["checkout_button"]["srm"]["ok"] is True
    assert results["checkout_button"]["multiple_exposures"] > 0
    guardrail = next(b for b in results["checkout_button"]["metrics"] if b["metric"] == "errors")
    assert guardrail["comparisons"][0]["guardrail_violated"] is False
    assert len(results["checkout_button"]["timeseries"][0]["points"]) >= 14
    # homepage_aa: nothing
    assert _primary(results["homepage_aa"])["significant"] is False
    assert results["homepage_aa"]["srm"]["ok"] is True
    # pricing_banner: 45/55 users, sample ratio mismatch flagged
    srm = results["pricing_banner"]["srm"]
    assert srm["ok"] is False and srm["p_value"] < 0.001
    share = srm["units"]["treatment"] / sum(srm["units"].values())
    assert share == pytest.approx(0.45, abs=0.015)
    assert results["pricing_banner"]["warnings"][0]["code"] == "sample_ratio_mismatch"
    # ... and its p90 order value: a quantile of individual orders, with the summary it came from
    p90 = next(b for b in results["pricing_banner"]["metrics"] if b["metric"] == "p90_order_value")
    assert p90["type"] == "quantile" and p90["error"] is None
    assert all(v["quantile_stats"]["n"] > v["units"] / 20 for v in p90["variants"])
    assert 0.0 < p90["comparisons"][0]["chance_to_win"] < 1.0
    # free_shipping: the winsorized revenue capped at its 99th percentile, with a far narrower interval
    # than the uncapped revenue's, whose whales swing it
    blocks = {b["metric"]: b for b in results["free_shipping"]["metrics"]}
    winsorized, uncapped = blocks["revenue_winsorized"], blocks["revenue_uncapped"]
    assert winsorized["cap_used"] > 0 and uncapped["cap_used"] is None

    def width(block):
        low, high = block["comparisons"][0]["relative"]["ci"]
        return high - low

    assert width(uncapped) > 2 * width(winsorized)
    # new_search: the safe rollout's real check rolled it back on search errors, with the evidence
    assert safe.status == SafeRolloutStatus.ROLLED_BACK and safe.rule.coverage == 0.0
    regressed = [row["metric"] for row in safe.evidence["guardrails"] if row["regressed"]]
    assert regressed == ["search_errors"]
    assert safe.experiment.status == ExperimentStatus.STOPPED
    reasons = list(safe.rule.history.values_list("history_change_reason", flat=True))
    assert any(
        reason and reason.startswith("Safe rollout rolled back: search_errors +") for reason in reasons
    )
    assert timezone.now() - safe.started_at > dt.timedelta(days=2, hours=23)
    # checkout_holdout: 10% held out of the checkout experiments, as many measured; its results come
    # from the roll-up of its internal experiment's exposures, started when its traffic did
    holdout = Holdout.objects.select_related("experiment").get(key=HOLDOUT_KEY)
    assert holdout.status == HoldoutStatus.RUNNING and holdout.experiment.key == "holdout-checkout_holdout"
    assert timezone.now() - holdout.started_at > dt.timedelta(days=13, hours=23)
    held = results[holdout.experiment.key]
    units = held["srm"]["units"]
    assert held["srm"]["ok"] is True
    assert units["holdout"] == pytest.approx(0.1 * UNITS, rel=0.1)
    assert units["general"] == pytest.approx(0.1 * UNITS, rel=0.1)
    held_out_checkout = ch.query(
        "SELECT count() AS n FROM exposures WHERE experiment = 'checkout_button' AND unit_id IN "
        "(SELECT unit_id FROM exposures WHERE experiment = {key:String} AND variant = 'holdout')",
        {"key": holdout.experiment.key},
    )
    assert held_out_checkout[0]["n"] == 0
    lift = _primary(held)  # the general population over the held-out users: the checkout work's lift
    assert held["metrics"][0]["metric"] in ("purchase_rate", "revenue")
    assert -0.3 < lift["relative"]["estimate"] < 0.5


def test_demo_simulation__holdout__held_out_users_in_no_checkout_experiment_and_growthbook_rule():
    # Given the simulation of 20,000 users with a 10% holdout of the checkout experiments
    from analytics.demo import HOLDOUT_EXPERIMENTS, HOLDOUT_PERCENTAGE, _Arm, _HoldoutArm, _simulate_chunk
    from experiments.bucketing import bucket
    from features.evaluation import holdout_compile

    now = timezone.now()
    arms = {
        key: _Arm(key=key, seed=key, variants=("control", "treatment"), weights=(0.5, 0.5))
        for key in EXPERIMENT_KEYS
    }
    coverage = 2 * HOLDOUT_PERCENTAGE / 100
    holdout = _HoldoutArm(
        experiment="holdout-h",
        compiled=holdout_compile("h", {"experiment": "holdout-h", "seed": "h-seed", "coverage": coverage}),
        experiments=frozenset(HOLDOUT_EXPERIMENTS),
    )

    # When
    exposures, _ = _simulate_chunk(
        first=0, count=UNITS, seed=7, start=now - dt.timedelta(days=14), now=now, arms=arms, holdout=holdout
    )

    # Then the holdout's groups are GrowthBook's bucket ranges for two equal variants at coverage 2p
    # (version-2 hash of the seed in [0, p): held out; in [0.5, 0.5 + p): the general population's
    # sample), computed here independently of the platform's assignment code
    groups = {unit: variant for key, variant, unit, *_ in exposures if key == "holdout-h"}
    share = HOLDOUT_PERCENTAGE / 100
    expected = {}
    for index in range(UNITS):
        unit_id = f"demo-user-{index:06d}"
        n = bucket("h-seed", unit_id, 2)
        if n < share:
            expected[unit_id] = "holdout"
        elif 0.5 <= n < 0.5 + share:
            expected[unit_id] = "general"
    assert groups == expected
    held = {unit for unit, variant in groups.items() if variant == "holdout"}
    assert len(held) == pytest.approx(UNITS * HOLDOUT_PERCENTAGE / 100, rel=0.1)
    # ... held-out users are in none of the held-out experiments, and in the others as usual
    in_experiment = {}
    for key, _, unit, *_ in exposures:
        in_experiment.setdefault(key, set()).add(unit)
    for key in HOLDOUT_EXPERIMENTS:
        assert not in_experiment[key] & held
    assert held <= in_experiment["homepage_aa"]


def test_demo_simulation__free_shipping__bigger_baskets_in_germany_only():
    # Given the simulation of 20,000 users with the platform's own bucketing
    from analytics.demo import FREE_SHIPPING_COUNTRY, _Arm, _simulate_chunk

    now = timezone.now()
    arms = {
        key: _Arm(key=key, seed=key, variants=("control", "treatment"), weights=(0.5, 0.5))
        for key in EXPERIMENT_KEYS
    }

    # When
    exposures, events = _simulate_chunk(
        first=0, count=UNITS, seed=7, start=now - dt.timedelta(days=14), now=now, arms=arms
    )

    # Then every exposure carries the attributes, and revenue (capped at 500 per user, against the
    # whales) is up about 50% in Germany and flat elsewhere
    user = {}
    for experiment, variant, unit_id, t0, _, _, attributes in exposures:
        assert set(attributes) == {"country", "browser", "plan"}
        if experiment == "free_shipping":
            user[unit_id] = (variant, attributes["country"], t0)
    revenue = dict.fromkeys(user, 0.0)
    for _, name, unit_id, value, at, *_ in events:
        if name == "purchase" and at >= user[unit_id][2]:
            revenue[unit_id] += value

    def lift(in_germany: bool) -> float:
        means = {}
        for arm in ("control", "treatment"):
            values = [min(revenue[u], 500.0) for u, (v, country, _) in user.items()
                      if v == arm and (country == FREE_SHIPPING_COUNTRY) == in_germany]  # fmt: skip
            means[arm] = sum(values) / len(values)
        return means["treatment"] / means["control"] - 1

    countries = [country for _, country, _ in user.values()]
    assert countries.count(FREE_SHIPPING_COUNTRY) / len(countries) == pytest.approx(0.2, abs=0.02)
    assert lift(True) > 0.25
    assert abs(lift(False)) < 0.12


def test_demo_command__no_traffic__configuration_only():
    out = _demo("--no-traffic")
    assert "created experiment checkout_button" in out
    assert not ExperimentResult.objects.exists()


def test_demo_command__clickhouse_owned_by_the_server__one_clear_line(monkeypatch):
    from analytics.clickhouse import ClickHouseUnavailable, migrations

    def locked():
        raise ClickHouseUnavailable("The embedded ClickHouse data in var/chdb is in use by another process.")

    monkeypatch.setattr(migrations, "migrate", locked)
    with pytest.raises(CommandError, match="in use by another process"):
        _demo("--units", "1000")


def test_demo_command__admin_user_exists__password_and_permissions_untouched():
    # Given an "admin" that someone made, with their own password and no superuser rights
    User = get_user_model()
    their_password = "pw-of-their-own"
    User.objects.create_user(username="admin", password=their_password, is_staff=True)

    # When the demo runs, twice
    first = _demo("--no-traffic")
    _demo("--no-traffic")

    # Then the user is exactly as it was
    admin = User.objects.get(username="admin")
    assert admin.check_password(their_password)
    assert not admin.check_password("admin")
    assert admin.is_staff and not admin.is_superuser
    assert "created admin user" not in first
    assert "as admin (an existing user: its password was not changed)" in first
    assert Experiment.objects.filter(key__in=EXPERIMENT_KEYS).count() == len(EXPERIMENT_KEYS)


def test_demo_command__run_twice__second_run_keeps_a_changed_password():
    _demo("--no-traffic")
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("changed-after-the-demo")
    admin.save()

    _demo("--no-traffic")

    assert get_user_model().objects.get(username="admin").check_password("changed-after-the-demo")


def test_demo_command__debug_off__refused_and_nothing_written(settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="--allow-production") as raised:
        _demo("--no-traffic")

    assert "looks like a production deployment" in str(raised.value)
    assert not get_user_model().objects.filter(username="admin").exists()
    assert not Experiment.objects.filter(key__in=EXPERIMENT_KEYS).exists()


def test_demo_command__debug_off_allow_production__superuser_with_a_random_password(settings):
    settings.DEBUG = False

    out = _demo("--no-traffic", "--allow-production")

    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser
    assert not admin.check_password("admin")
    printed = out.rsplit("as admin / ", 1)[1].split()[0]
    assert len(printed) >= 16 and admin.check_password(printed)
