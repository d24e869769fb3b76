"""`POST /api/v1/events` and `/api/v1/exposures` over both ClickHouse backends."""

import datetime as dt
import json
import uuid

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from analytics import clickhouse as ch
from analytics.ingestion.services import spool_depth
from analytics.tasks import spool_drain
from experiments.models import Experiment
from features.models import Environment
from features.services import sdk_key_create
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db

EVENTS_URL = reverse("events")
EXPOSURES_URL = reverse("exposures")


@pytest.fixture
def sdk(api_client):
    _, raw = sdk_key_create(environment=Environment.objects.get(key="production"))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return api_client


def stored_events() -> list[dict]:
    return ch.query("SELECT * FROM events_dedup ORDER BY unit_id, timestamp")


def event(i: int, **overrides) -> dict:
    item = {
        "event_id": str(uuid.UUID(int=i + 1)),
        "name": "purchase",
        "unit_id": f"u{i:04d}",
        "value": i + 0.5,
    }
    item.update(overrides)
    return item


def test_events__valid_batch__202_and_every_column_stored(clickhouse, sdk):
    # Given
    at = (timezone.now() - dt.timedelta(hours=2)).replace(microsecond=123000)
    body = {
        "events": [
            event(0, timestamp=at.isoformat(), properties={"currency": "EUR", "ünï": "cødé"}),
            {"name": "signup", "unit_id": "u0001"},
        ]
    }
    # When
    response = sdk.post(EVENTS_URL, body, format="json")
    # Then
    assert response.status_code == 202, response.json()
    assert response.json() == {"accepted": 2, "rejected": []}
    rows = stored_events()
    assert len(rows) == 2
    first, second = rows
    assert str(first["event_id"]) == body["events"][0]["event_id"]
    assert (first["name"], first["unit_id"], first["value"]) == ("purchase", "u0000", 0.5)
    assert first["timestamp"] == at
    assert first["environment"] == "production"
    assert first["properties"] == {"currency": "EUR", "ünï": "cødé"}
    assert (second["name"], second["value"]) == ("signup", 1.0)
    assert abs((second["timestamp"] - timezone.now()).total_seconds()) < 60


def test_events__replayed_batch__stored_once(clickhouse, sdk):
    body = {"events": [event(i) for i in range(20)]}
    for _ in range(3):
        assert sdk.post(EVENTS_URL, body, format="json").status_code == 202
    assert len(stored_events()) == 20


NOW = timezone.now()


@pytest.mark.parametrize(
    ("item", "field", "fragment"),
    [
        ({"unit_id": "u"}, "name", "non-empty"),
        ({"name": "", "unit_id": "u"}, "name", "non-empty"),
        ({"name": "x" * 201, "unit_id": "u"}, "name", "200"),
        ({"name": "e"}, "unit_id", "non-empty"),
        ({"name": "e", "unit_id": 42}, "unit_id", "string"),
        ({"name": "e", "unit_id": "u" * 257}, "unit_id", "256"),
        ({"name": "e", "unit_id": "u", "value": "12"}, "value", "finite"),
        ({"name": "e", "unit_id": "u", "value": True}, "value", "finite"),
        ({"name": "e", "unit_id": "u", "timestamp": "yesterday"}, "timestamp", "ISO 8601"),
        (
            {"name": "e", "unit_id": "u", "timestamp": (NOW - dt.timedelta(days=31)).isoformat()},
            "timestamp",
            "past",
        ),
        (
            {"name": "e", "unit_id": "u", "timestamp": (NOW + dt.timedelta(hours=2)).isoformat()},
            "timestamp",
            "future",
        ),
        ({"name": "e", "unit_id": "u", "properties": {"a": {"b": "c"}}}, "properties", "flat"),
        ({"name": "e", "unit_id": "u", "properties": {"n": 1}}, "properties", "strings"),
        ({"name": "e", "unit_id": "u", "properties": ["a"]}, "properties", "object"),
        ({"name": "e", "unit_id": "u", "event_id": "not-a-uuid"}, "event_id", "UUID"),
    ],
)
def test_events__invalid_item__rejected_with_index_field_and_reason_others_stored(
    clickhouse, sdk, item, field, fragment
):
    response = sdk.post(EVENTS_URL, {"events": [event(0), item, event(2)]}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1]
    assert fragment in body["rejected"][0]["errors"][field]
    assert len(stored_events()) == 2


def test_events__nan_or_infinity_in_raw_json__400_not_json(clickhouse, sdk):
    # JSON has no NaN or Infinity; a body that uses them is not JSON at all.
    raw = '{"events": [{"name": "e", "unit_id": "u", "value": NaN}, {"name": "e", "unit_id": "u", "value": Infinity}]}'
    response = sdk.post(EVENTS_URL, raw, content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]
    assert stored_events() == []


def test_events__number_overflowing_a_double__400_and_nothing_stored(clickhouse, sdk):
    raw = '{"events": [{"name": "e", "unit_id": "u", "value": 1e400}, {"name": "e", "unit_id": "u", "value": 2}]}'
    response = sdk.post(EVENTS_URL, raw, content_type="application/json")
    assert response.status_code == 400
    assert "infinity" in response.json()["detail"]
    assert stored_events() == []


@pytest.mark.parametrize(
    "value",
    [1.7e308, -1.7e308, 1.0000001e12, -1e13, "10000000000000"],  # the last: a JSON integer
)
def test_events__value_past_event_max_abs_value__rejected_with_the_reason_others_stored(
    clickhouse, sdk, value
):
    # Given a value no metric can sum (1.7e308 + 1.7e308 overflows), between two good events
    raw = (
        '{"events": [{"name": "e", "unit_id": "u0", "value": 1e12}, '
        f'{{"name": "e", "unit_id": "u1", "value": {value}}}, {{"name": "e", "unit_id": "u2", "value": -1e12}}]}}'
    )

    response = sdk.post(EVENTS_URL, raw, content_type="application/json")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["accepted"] == 2 and [r["index"] for r in body["rejected"]] == [1]
    reason = body["rejected"][0]["errors"]["value"]
    assert "At most 1e+12 in absolute value" in reason and "EVENT_MAX_ABS_VALUE" in reason
    assert sorted(row["value"] for row in stored_events()) == [-1e12, 1e12]


def test_events__event_max_abs_value_setting__is_the_bound(clickhouse, sdk, settings):
    settings.EVENT_MAX_ABS_VALUE = 100.0

    response = sdk.post(EVENTS_URL, {"events": [event(0, value=100), event(1, value=100.5)]}, format="json")

    assert response.json()["accepted"] == 1
    assert "At most 100 in absolute value" in response.json()["rejected"][0]["errors"]["value"]


def test_events__every_item_rejected__202_with_reasons_and_nothing_stored(clickhouse, sdk):
    # CONTRACT: a batch always answers 202 {"accepted", "rejected"}, even with nothing accepted.
    response = sdk.post(EVENTS_URL, {"events": [{"name": "e"}, "not an object"]}, format="json")
    assert response.status_code == 202
    assert response.json() == {
        "accepted": 0,
        "rejected": [
            {"index": 0, "errors": {"unit_id": "Required: a non-empty string."}},
            {"index": 1, "errors": {"item": "Each event must be an object."}},
        ],
    }
    assert stored_events() == []


def test_events__unit_id_of_256_characters__accepted(clickhouse, sdk):
    # The unit id limit of every SDK endpoint (assign, evaluate and OFREP too); 257 is rejected above.
    response = sdk.post(EVENTS_URL, {"events": [event(0, unit_id="u" * 256)]}, format="json")
    assert response.json() == {"accepted": 1, "rejected": []}
    assert stored_events()[0]["unit_id"] == "u" * 256


@pytest.mark.parametrize(
    "raw",
    ["{not json", "[]", '{"events": {}}', '{"events": []}', '{"other": [1]}', '"just a string"', ""],
)
def test_events__malformed_body__400(clickhouse, sdk, raw):
    response = sdk.post(EVENTS_URL, raw, content_type="application/json")
    assert response.status_code == 400
    assert stored_events() == []


def test_events__more_than_1000_items__413_and_nothing_stored(clickhouse, sdk):
    response = sdk.post(EVENTS_URL, {"events": [event(i) for i in range(1001)]}, format="json")
    assert response.status_code == 413
    assert "1000" in response.json()["detail"]
    assert stored_events() == []


def test_events__body_over_1_mib__413(clickhouse, sdk):
    big = {"events": [event(i, properties={"blob": "x" * 999}) for i in range(1000)]}
    payload = json.dumps(big)
    assert len(payload) > 1024 * 1024
    response = sdk.post(EVENTS_URL, payload, content_type="application/json")
    assert response.status_code == 413
    assert stored_events() == []


def test_events__exactly_1000_items__202(clickhouse, sdk):
    response = sdk.post(EVENTS_URL, {"events": [event(i) for i in range(1000)]}, format="json")
    assert response.status_code == 202
    assert response.json()["accepted"] == 1000
    assert len(stored_events()) == 1000


def test_events__no_key__401_with_www_authenticate(clickhouse, api_client):
    response = api_client.post(EVENTS_URL, {"events": [event(0)]}, format="json")
    assert response.status_code == 401
    assert "Bearer" in response.headers["WWW-Authenticate"]


def test_events__user_token__403(clickhouse, api_client, product_manager):
    # A user token is a valid credential but not an SDK key: 403, as on every SDK endpoint (CONTRACT).
    token = Token.objects.create(user=product_manager)
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api_client.post(EVENTS_URL, {"events": [event(0)]}, format="json").status_code == 403


def test_events__x_api_key_header__accepted(clickhouse, api_client):
    _, raw = sdk_key_create(environment=Environment.objects.get(key="staging"))
    api_client.credentials(HTTP_X_API_KEY=raw)
    assert api_client.post(EVENTS_URL, {"events": [event(0)]}, format="json").status_code == 202
    assert stored_events()[0]["environment"] == "staging"


def test_events__revoked_key__401(clickhouse, api_client):
    key, raw = sdk_key_create(environment=Environment.objects.get(key="staging"))
    key.revoked = True
    key.save()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api_client.post(EVENTS_URL, {"events": [event(0)]}, format="json").status_code == 401


def test_events__clickhouse_down_mid_ingest__every_acknowledged_event_lands_once_after_drain(
    clickhouse, clickhouse_faults, sdk
):
    # Given ClickHouse answers the first two batches, then goes away
    outage = clickhouse_faults.unavailable(after=2)
    acknowledged = 0
    # When five batches are sent, the third answering "inserted" but losing its reply would be worse;
    # here ClickHouse is simply unreachable for batches 3 to 5.
    for batch in range(5):
        body = {"events": [event(batch * 100 + i) for i in range(100)]}
        response = sdk.post(EVENTS_URL, body, format="json")
        assert response.status_code == 202
        acknowledged += response.json()["accepted"]
    # Then
    assert acknowledged == 500
    assert spool_depth().rows == 300
    assert len(stored_events()) == 200
    spool_drain.delay()  # still down: nothing lost, nothing moved
    assert spool_depth().rows == 300
    outage.stop()
    from analytics.models import SpoolBatch

    SpoolBatch.objects.update(next_attempt_at=timezone.now())  # skip the backoff wait
    spool_drain.delay()
    assert spool_depth().rows == 0
    rows = stored_events()
    assert len(rows) == 500
    assert len({str(r["event_id"]) for r in rows}) == 500


def test_exposures__valid_and_invalid_items__stored_and_rejected(clickhouse, sdk):
    ExperimentFactory(key="checkout", status="running")
    items = [
        {
            "experiment": "checkout",
            "variant": "treatment",
            "unit_id": "u1",
            "attributes": {"plan": "pro", "age": 30},
        },
        {"experiment": "nope", "variant": "control", "unit_id": "u2"},
        {"experiment": "checkout", "variant": "purple", "unit_id": "u3"},
        {"experiment": "checkout", "variant": "control", "unit_id": ""},
    ]
    response = sdk.post(EXPOSURES_URL, {"exposures": items}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1
    reasons = {r["index"]: r["errors"] for r in body["rejected"]}
    assert "no experiment" in reasons[1]["experiment"]
    assert "purple" in reasons[2]["variant"] and "control" in reasons[2]["variant"]
    assert "unit_id" in reasons[3]
    rows = ch.query("SELECT * FROM exposures_dedup")
    assert len(rows) == 1
    assert rows[0]["attributes"] == {"plan": "pro", "age": "30"}
    assert (rows[0]["experiment"], rows[0]["variant"], rows[0]["environment"]) == (
        "checkout",
        "treatment",
        "production",
    )


def test_exposures__more_than_1000__413(clickhouse, sdk):
    items = [{"experiment": "x", "variant": "y", "unit_id": "z"}] * 1001
    assert sdk.post(EXPOSURES_URL, {"exposures": items}, format="json").status_code == 413


def test_exposures__every_item_rejected__202_with_reasons_and_nothing_stored(clickhouse, sdk):
    items = [{"experiment": "nope", "variant": "control", "unit_id": "u1"}, ["not", "an", "object"]]
    response = sdk.post(EXPOSURES_URL, {"exposures": items}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 0
    assert [r["index"] for r in body["rejected"]] == [0, 1]
    assert "no experiment" in body["rejected"][0]["errors"]["experiment"]
    assert ch.query("SELECT * FROM exposures_dedup") == []


@pytest.mark.parametrize("raw", ["{not json", '{"exposures": {}}', '{"exposures": []}', '{"other": [1]}'])
def test_exposures__malformed_body__400(clickhouse, sdk, raw):
    response = sdk.post(EXPOSURES_URL, raw, content_type="application/json")
    assert response.status_code == 400
    assert "accepted" not in response.json()


@pytest.mark.parametrize("age", [dt.timedelta(days=31), dt.timedelta(days=400), dt.timedelta(days=3650)])
def test_exposures__sent_late__accepted_with_their_timestamp(clickhouse, sdk, age):
    # CONTRACT: every exposure counts whatever its timestamp (clients may send late); events keep
    # their 30-day window (test_events__invalid_item__... above).
    ExperimentFactory(key="checkout", status="running")
    Experiment.objects.filter(key="checkout").update(created_at=timezone.now() - age - dt.timedelta(days=1))
    at = (timezone.now() - age).replace(microsecond=0)
    item = {"experiment": "checkout", "variant": "control", "unit_id": "u1", "timestamp": at.isoformat()}
    response = sdk.post(EXPOSURES_URL, {"exposures": [item]}, format="json")
    assert response.json() == {"accepted": 1, "rejected": []}
    assert ch.query("SELECT timestamp FROM exposures_dedup") == [{"timestamp": at}]


@pytest.mark.parametrize(
    ("timestamp", "fragment"),
    [
        ((NOW + dt.timedelta(hours=2)).isoformat(), "future"),
        ("last tuesday", "ISO 8601"),
        (1700000000, "ISO 8601"),
    ],
    ids=["two-hours-ahead", "words", "a-number"],  # stable ids: the same in every xdist worker
)
def test_exposures__future_or_unparsable_timestamp__rejected(clickhouse, sdk, timestamp, fragment):
    ExperimentFactory(key="checkout", status="running")
    item = {"experiment": "checkout", "variant": "control", "unit_id": "u1", "timestamp": timestamp}
    response = sdk.post(EXPOSURES_URL, {"exposures": [item]}, format="json")
    assert response.status_code == 202
    assert response.json()["accepted"] == 0
    assert fragment in response.json()["rejected"][0]["errors"]["timestamp"]


def test_exposures__dated_before_the_experiment_existed__rejected_within_the_skew_accepted(clickhouse, sdk):
    # An exposure may arrive as late as it likes, but nobody saw a variant before the experiment was
    # created (a day of clock skew allowed); a bogus date would also make a ClickHouse partition of its own
    ExperimentFactory(key="checkout", status="running")
    created = Experiment.objects.get(key="checkout").created_at
    items = [
        {"experiment": "checkout", "variant": "control", "unit_id": unit, "timestamp": at.isoformat()}
        for unit, at in [
            ("skewed", created - dt.timedelta(hours=23)),
            ("before", created - dt.timedelta(hours=25)),
            ("year-one", dt.datetime(1, 1, 1, tzinfo=dt.UTC)),
        ]
    ]
    response = sdk.post(EXPOSURES_URL, {"exposures": items}, format="json")
    body = response.json()
    assert response.status_code == 202 and body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == [1, 2]
    assert all("Before the experiment existed" in r["errors"]["timestamp"] for r in body["rejected"])
    assert ch.query("SELECT unit_id FROM exposures_dedup") == [{"unit_id": "skewed"}]


def test_exposures__batch_spanning_more_than_100_months__every_exposure_stored(clickhouse, sdk):
    # A ClickHouse INSERT may touch at most 100 monthly partitions (chDB silently dropped a bigger
    # one); once late exposures were accepted, a batch can span years.
    ExperimentFactory(key="checkout", status="running")
    Experiment.objects.filter(key="checkout").update(created_at=timezone.now() - dt.timedelta(days=31 * 151))
    now = timezone.now().replace(microsecond=0)
    items = [
        {
            "experiment": "checkout",
            "variant": "control",
            "unit_id": f"u{month}",
            "timestamp": (now - dt.timedelta(days=31 * month)).isoformat(),
        }
        for month in range(150)
    ]
    response = sdk.post(EXPOSURES_URL, {"exposures": items}, format="json")
    assert response.json() == {"accepted": 150, "rejected": []}
    assert ch.query("SELECT count() AS n FROM exposures_dedup") == [{"n": 150}]


def test_exposures__unit_id_of_256_accepted_257_rejected(clickhouse, sdk):
    ExperimentFactory(key="checkout", status="running")
    items = [
        {"experiment": "checkout", "variant": "control", "unit_id": "u" * length} for length in (256, 257)
    ]
    response = sdk.post(EXPOSURES_URL, {"exposures": items}, format="json")
    assert response.json()["accepted"] == 1
    assert [r["index"] for r in response.json()["rejected"]] == [1]
    assert "256" in response.json()["rejected"][0]["errors"]["unit_id"]
