"""Webhooks against a real HTTP receiver on this machine: signed, delivered after commit, retried,
recorded; receivers refused by address when the platform is set to reach public addresses only."""

import hashlib
import hmac
import json
import socket
import time

import pytest
from django.test import override_settings
from django.urls import reverse

from analytics.results.document import Comparison, MetricResult, ResultsDocument, Srm
from analytics.results.notify import results_events_emit
from experiments.services import experiment_start, experiment_stop
from features.models import Feature
from features.services import feature_create
from features.tasks import webhook_deliver
from features.webhooks import dispatch, signing
from features.webhooks.addresses import ReceiverRefused, address_is_public, receiver_addresses
from features.webhooks.models import DeliveryStatus, EventType, Webhook, WebhookDelivery
from features.webhooks.services import event_emit, webhook_create, webhook_send_test
from tests.factories import ExperimentFactory, UserFactory

pytestmark = pytest.mark.django_db


def subscribe(receiver, *event_types: str) -> Webhook:
    return webhook_create(user=None, name="receiver", url=receiver.url, event_types=list(event_types))


def independent_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The recipe as a receiver writes it from the docs, without the platform's module."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def deliver(delivery_id: int) -> None:
    """Run the Celery task here, as a worker would, retries included (eager retries skip the
    countdown). Celery re-applies an eager retry with the app's ``task_eager_propagates``, which
    would raise ``Retry`` out of the second attempt: off for the call, so Celery's loop runs."""
    from config.celery import app

    propagates, app.conf.task_eager_propagates = app.conf.task_eager_propagates, False
    try:
        webhook_deliver.apply(args=(delivery_id,))
    finally:
        app.conf.task_eager_propagates = propagates


def header_parts(header: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in header.split(","))


# --- delivery after commit, signed ------------------------------------------------------------------
def test_flag_saved__delivery_enqueued_on_commit__not_sent_inline(
    pm_client, receiver, django_capture_on_commit_callbacks
):
    subscribe(receiver, EventType.FLAG_CHANGED)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = pm_client.post(
            reverse("feature-list"),
            {"key": "new_checkout", "name": "New checkout", "type": "boolean", "default_value": False},
            format="json",
        )
    assert response.status_code == 201
    [delivery] = WebhookDelivery.objects.all()
    # Given the save has returned, the receiver has not been called: the send waits for the commit.
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 0
    assert receiver.requests == []
    assert len(callbacks) >= 1


def test_delivery__receiver_verifies_the_signature_over_the_raw_body(receiver):
    webhook = subscribe(receiver, EventType.FLAG_CHANGED)
    feature = feature_create(
        user=None, key="dark_mode", name="Dark mode", type="boolean", default_value=False
    )
    [delivery] = WebhookDelivery.objects.all()

    deliver(delivery.pk)

    [request] = receiver.requests
    assert request.path == "/hooks/in?team=growth"
    header = request.headers[signing.SIGNATURE_HEADER]
    parts = header_parts(header)
    assert abs(int(parts["t"]) - time.time()) < 300
    assert hmac.compare_digest(parts["v1"], independent_signature(webhook.secret, parts["t"], request.body))
    assert signing.signature_verify(header, request.body, webhook.secret) == int(parts["t"])
    body = json.loads(request.body)
    assert set(body) == {"id", "type", "created", "data"}
    assert body["type"] == "flag.changed" and body["id"] == str(delivery.event_id)
    assert body["data"]["action"] == "created" and body["data"]["feature"]["key"] == feature.key
    assert request.headers["Content-Type"] == "application/json"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 1, 200)
    assert delivery.response_body == "answer 200" and delivery.duration_ms is not None


def test_signature__tampered_body_wrong_secret_or_old_timestamp__refused():
    body, secret, now = b'{"id":"1"}', "whsec_test", 1_800_000_000
    header = signing.signature_header(secret, now, body)
    assert signing.signature_verify(header, body, secret, now=now) == now
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.signature_verify(header, body + b" ", secret, now=now)
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.signature_verify(header, body, "whsec_other", now=now)
    with pytest.raises(signing.SignatureError, match="300 s"):
        signing.signature_verify(header, body, secret, now=now + 301)
    with pytest.raises(signing.SignatureError, match="no timestamp"):
        signing.signature_verify("v1=abc", body, secret, now=now)


# --- retries ---------------------------------------------------------------------------------------
def test_delivery__receiver_answers_500_then_503__retried_until_delivered_and_recorded(receiver):
    webhook = subscribe(receiver, EventType.FLAG_CHANGED)
    feature_create(user=None, key="dark_mode", name="Dark mode", type="boolean", default_value=False)
    [delivery] = WebhookDelivery.objects.all()
    receiver.statuses = [500, 503]

    deliver(delivery.pk)

    assert len(receiver.requests) == 3
    assert {r.headers["X-Webhook-Id"] for r in receiver.requests} == {str(delivery.event_id)}
    for request in receiver.requests:  # each attempt is signed afresh over the same body
        signing.signature_verify(request.headers[signing.SIGNATURE_HEADER], request.body, webhook.secret)
    assert receiver.requests[0].body == receiver.requests[2].body
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 3, 200)


@override_settings(WEBHOOK_MAX_ATTEMPTS=3)
def test_delivery__receiver_keeps_failing__gives_up_after_the_last_attempt(receiver):
    subscribe(receiver, EventType.FLAG_CHANGED)
    feature_create(user=None, key="dark_mode", name="Dark mode", type="boolean", default_value=False)
    [delivery] = WebhookDelivery.objects.all()
    receiver.statuses = [500] * 10

    deliver(delivery.pk)

    assert len(receiver.requests) == 3
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 3, 500)
    assert delivery.response_body == "answer 500" and "500" in delivery.error
    assert delivery.next_attempt_at is None


def test_delivery__receiver_answers_400__not_retried(receiver):
    subscribe(receiver, EventType.FLAG_CHANGED)
    feature_create(user=None, key="dark_mode", name="Dark mode", type="boolean", default_value=False)
    [delivery] = WebhookDelivery.objects.all()
    receiver.statuses = [400]

    deliver(delivery.pk)

    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 1, 400)


@override_settings(WEBHOOK_MAX_ATTEMPTS=2)
def test_delivery__nothing_listens_on_the_port__network_error_retried_and_recorded():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"
        webhook_create(user=None, name="nobody", url=url, event_types=[EventType.FLAG_CHANGED])
        feature_create(user=None, key="dark_mode", name="Dark mode", type="boolean", default_value=False)
        [delivery] = WebhookDelivery.objects.all()
        deliver(delivery.pk)
    finally:
        closed.close()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 2, None)
    assert "refused" in delivery.error.lower()


# --- the embedded mode: a hanging receiver does not hold the save -----------------------------------
# serialized_rollback: the flush at the end leaves the tables empty for the next transactional test to
# restore into (without it, the flush re-creates content types with new ids, on which the restore of
# the next test with serialized_rollback collides: whichever runs next on a pytest-xdist worker)
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_save_with_a_hanging_receiver__returns_while_the_receiver_still_holds_the_request(receiver):
    subscribe(receiver, EventType.FLAG_CHANGED)
    receiver.hold.set()
    try:
        # When a flag is saved (tasks run eagerly here, as in the embedded mode)
        feature_create(user=None, key="dark_mode", name="Dark mode", type="boolean", default_value=False)
        # Then the save has returned, the receiver has the request and has not answered it yet
        assert receiver.arrived.wait(timeout=20)
        delivery = WebhookDelivery.objects.get()
        assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 0
    finally:
        receiver.release.set()
    assert dispatch.deliveries_wait(timeout=20)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.response_code) == ("delivered", 200)


# --- receivers' addresses --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.9", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("::1", False),
        ("fc00::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),
        ("224.0.0.1", False),
    ],
)
def test_address_is_public(address, public):
    assert address_is_public(address) is public


def test_receiver_addresses__localhost_with_private_refused__named_with_the_reason():
    assert receiver_addresses("http://localhost:8380/x", allow_private=True)[3]
    with pytest.raises(ReceiverRefused, match="WEBHOOK_ALLOW_PRIVATE"):
        receiver_addresses("http://localhost:8380/x", allow_private=False)
    with pytest.raises(ReceiverRefused, match="http"):
        receiver_addresses("ftp://example.com/x", allow_private=True)


@override_settings(WEBHOOK_ALLOW_PRIVATE=False)
def test_api_create__loopback_receiver_with_private_refused__400_names_url(superuser, api_client, receiver):
    api_client.force_authenticate(superuser)
    response = api_client.post(
        reverse("webhook-list"),
        {"name": "internal", "url": receiver.url, "event_types": ["flag.changed"]},
        format="json",
    )
    assert response.status_code == 400
    assert "WEBHOOK_ALLOW_PRIVATE" in str(response.json()["url"])
    assert not Webhook.objects.exists()


def test_delivery__private_receiver_refused_at_delivery_after_the_setting_changed(receiver):
    subscribe(receiver, EventType.FLAG_CHANGED)  # saved while private receivers were allowed
    feature_create(user=None, key="dark_mode", name="Dark mode", type="boolean", default_value=False)
    [delivery] = WebhookDelivery.objects.all()
    with override_settings(WEBHOOK_ALLOW_PRIVATE=False):
        deliver(delivery.pk)
    assert receiver.requests == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert "private" in delivery.error


# --- events ----------------------------------------------------------------------------------------
def test_experiment_start_and_stop__events_for_subscribers_only(receiver, django_capture_on_commit_callbacks):
    subscribe(receiver, EventType.EXPERIMENT_STARTED, EventType.EXPERIMENT_STOPPED)
    webhook_create(user=None, name="flags only", url=receiver.url, event_types=[EventType.FLAG_CHANGED])
    experiment = ExperimentFactory(key="checkout_button")
    user = UserFactory(username="pm")
    # The experiments app signals once the transition has committed: the event is recorded then (the
    # commit's callbacks run here by hand; the delivery's own send waits for a commit that never comes).
    with django_capture_on_commit_callbacks() as committed:
        experiment = experiment_start(experiment=experiment, user=user)
    assert not WebhookDelivery.objects.exists()
    for callback in committed:
        callback()
    assert WebhookDelivery.objects.count() == 1
    with django_capture_on_commit_callbacks() as committed:
        experiment_stop(experiment=experiment, user=None, decision_variant="treatment", reason="won")
    for callback in committed:
        callback()
    deliveries = list(WebhookDelivery.objects.order_by("id"))
    assert [d.event_type for d in deliveries] == ["experiment.started", "experiment.stopped"]
    assert {d.webhook.name for d in deliveries} == {"receiver"}
    started, stopped = (json.loads(d.body)["data"] for d in deliveries)
    assert started["experiment"]["key"] == "checkout_button" and started["changed_by"] == "pm"
    assert started["experiment"]["status"] == "running"
    assert stopped["experiment"]["decision_variant"] == "treatment"


def test_disabled_webhook__no_delivery(receiver):
    webhook = subscribe(receiver, EventType.FLAG_CHANGED)
    Webhook.objects.filter(pk=webhook.pk).update(enabled=False)
    feature_create(user=None, key="dark_mode", name="Dark mode", type="boolean", default_value=False)
    assert not WebhookDelivery.objects.exists()


def _document(*, significant: bool, violated: bool, srm_ok: bool) -> ResultsDocument:
    return ResultsDocument(
        experiment="checkout_button",
        srm=Srm(
            p_value=0.5 if srm_ok else 1e-6,
            units={"control": 10, "treatment": 20},
            ok=srm_ok,
            threshold=0.001,
        ),
        metrics=(
            MetricResult(
                metric="purchase",
                role="primary",
                comparisons=(Comparison(variant="treatment", significant=significant, direction="improved"),),
            ),
            MetricResult(
                metric="errors",
                role="guardrail",
                comparisons=(Comparison(variant="treatment", guardrail_violated=violated),),
            ),
        ),
    )


def test_results_events__sent_when_they_become_true__not_again(receiver):
    subscribe(
        receiver,
        EventType.RESULTS_SIGNIFICANT,
        EventType.GUARDRAIL_VIOLATED,
        EventType.SAMPLE_RATIO_MISMATCH,
    )
    experiment = ExperimentFactory(key="checkout_button")
    quiet = _document(significant=False, violated=False, srm_ok=True)
    loud = _document(significant=True, violated=True, srm_ok=False)

    results_events_emit(experiment=experiment, previous=quiet, current=loud)
    assert sorted(WebhookDelivery.objects.values_list("event_type", flat=True)) == [
        "results.guardrail_violated",
        "results.sample_ratio_mismatch",
        "results.significant",
    ]
    significant = json.loads(WebhookDelivery.objects.get(event_type="results.significant").body)["data"]
    assert (significant["metric"], significant["variant"]) == ("purchase", "treatment")

    results_events_emit(experiment=experiment, previous=loud, current=loud)  # nothing new
    assert WebhookDelivery.objects.count() == 3


def test_event_emit__unknown_type__refused():
    with pytest.raises(ValueError, match="unknown"):
        event_emit("flag.exploded", {})


# --- API -------------------------------------------------------------------------------------------
def test_api__secret_shown_on_create_only__test_action_and_log(superuser, api_client, receiver):
    api_client.force_authenticate(superuser)
    created = api_client.post(
        reverse("webhook-list"),
        {"name": "bridge", "url": receiver.url, "event_types": ["flag.changed", "experiment.started"]},
        format="json",
    )
    assert created.status_code == 201, created.json()
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    detail_url = reverse("webhook-detail", args=[created.json()["id"]])
    assert "secret" not in api_client.get(detail_url).json()

    tested = api_client.post(reverse("webhook-test", args=[created.json()["id"]]))
    assert tested.status_code == 202 and tested.json()["event_type"] == "webhook.test"
    deliver(tested.json()["id"])
    [request] = receiver.requests
    signing.signature_verify(request.headers[signing.SIGNATURE_HEADER], request.body, secret)

    log = api_client.get(reverse("webhook-deliveries", args=[created.json()["id"]])).json()
    assert [(d["event_type"], d["status"], d["response_code"]) for d in log["results"]] == [
        ("webhook.test", "delivered", 200)
    ]
    rotated = api_client.post(reverse("webhook-rotate-secret", args=[created.json()["id"]])).json()["secret"]
    assert rotated != secret and Webhook.objects.get().secret == rotated


def test_api__unknown_event_type__400_names_the_field(superuser, api_client, receiver):
    api_client.force_authenticate(superuser)
    response = api_client.post(
        reverse("webhook-list"),
        {"name": "x", "url": receiver.url, "event_types": ["flag.exploded"]},
        format="json",
    )
    assert response.status_code == 400 and "event_types" in response.json()


def test_api__user_without_webhook_permissions__cannot_read_or_test(pm_client, receiver):
    webhook = subscribe(receiver, EventType.FLAG_CHANGED)
    assert pm_client.get(reverse("webhook-list")).status_code == 403
    assert pm_client.post(reverse("webhook-test", args=[webhook.pk])).status_code == 403


# --- admin -----------------------------------------------------------------------------------------
def test_admin__send_test_button_and_delivery_log(client, superuser, receiver):
    client.force_login(superuser)
    webhook = subscribe(receiver, EventType.FLAG_CHANGED)
    page = client.get(reverse("admin:features_webhook_change", args=[webhook.pk]))
    assert page.status_code == 200 and b"Send test event" in page.content
    response = client.post(reverse("admin:features_webhook_send_test", args=[webhook.pk]))
    assert response.status_code == 302
    delivery = WebhookDelivery.objects.get(event_type="webhook.test")
    deliver(delivery.pk)
    log = client.get(reverse("admin:features_webhookdelivery_changelist"))
    assert log.status_code == 200 and b"webhook.test" in log.content and b"Delivered" in log.content
    assert client.get(reverse("admin:features_webhookdelivery_change", args=[delivery.pk])).status_code == 200


def test_admin__create_shows_the_secret_once(client, superuser, receiver):
    client.force_login(superuser)
    response = client.post(
        reverse("admin:features_webhook_add"),
        {
            "name": "bridge",
            "url": receiver.url,
            "event_types": ["flag.changed"],
            "enabled": "on",
            "description": "",
        },
        follow=True,
    )
    webhook = Webhook.objects.get()
    assert webhook.secret in response.content.decode()
    assert (
        webhook.secret
        not in client.get(reverse("admin:features_webhook_change", args=[webhook.pk])).content.decode()
    )


def test_send_test__disabled_webhook_still_tested(receiver):
    webhook = subscribe(receiver, EventType.FLAG_CHANGED)
    Webhook.objects.filter(pk=webhook.pk).update(enabled=False)
    delivery = webhook_send_test(webhook=Webhook.objects.get())
    deliver(delivery.pk)
    assert len(receiver.requests) == 1
    assert Feature.objects.count() == 0


# --- the documented recipe -------------------------------------------------------------------------
def documented_verify():
    """The ``verify`` function of docs/api.md, "Verifying the signature", exactly as printed there."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    section = text.split("### Verifying the signature", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(snippet, "docs/api.md", "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["verify"]


def test_docs_recipe__verifies_a_real_delivery__refuses_tampering(receiver):
    verify = documented_verify()
    webhook = subscribe(receiver, EventType.FLAG_CHANGED)
    feature_create(user=None, key="dark_mode", name="Dark mode", type="boolean", default_value=False)
    deliver(WebhookDelivery.objects.get().pk)
    [request] = receiver.requests
    header = request.headers[signing.SIGNATURE_HEADER]

    assert verify(header, request.body, webhook.secret)
    assert not verify(header, request.body.replace(b"dark_mode", b"dark_mod3"), webhook.secret)
    assert not verify(header, request.body, "whsec_wrong")
    old = signing.signature_header(webhook.secret, int(time.time()) - 301, request.body)
    assert not verify(old, request.body, webhook.secret)
    assert not verify("garbage", request.body, webhook.secret)


def test_stalled_delivery__sweep_sends_it__a_fresh_one_is_left_alone(
    receiver, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from features.tasks import webhooks_resend_stalled

    subscribe(receiver, EventType.FLAG_CHANGED)
    feature_create(user=None, key="dark_mode", name="Dark mode", type="boolean", default_value=False)
    feature_create(user=None, key="light_mode", name="Light mode", type="boolean", default_value=False)
    stalled, fresh = WebhookDelivery.objects.order_by("id")
    WebhookDelivery.objects.filter(pk=stalled.pk).update(
        next_attempt_at=timezone.now() - timedelta(minutes=6)
    )

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert webhooks_resend_stalled.apply().get() == 1
    assert len(callbacks) == 1
    deliver(stalled.pk)  # what the callback hands to the sender
    stalled.refresh_from_db()
    fresh.refresh_from_db()
    assert (stalled.status, fresh.status) == ("delivered", "pending")
    assert len(receiver.requests) == 1
    assert webhooks_resend_stalled.apply().get() == 0


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("http://chat-bridge:8080/hook", True),  # an internal service's name, without a dot
        ("https://hooks.example.com/in?team=growth", True),
        ("http://[::1]:8380/hook", True),
        ("ftp://example.com/hook", False),
        ("hooks.example.com/in", False),
        ("http://user:pw@example.com/in", False),
        ("http://example.com:99999/in", False),
    ],
)
def test_api_create__receiver_urls(superuser, api_client, url, accepted):
    api_client.force_authenticate(superuser)
    response = api_client.post(
        reverse("webhook-list"), {"name": "x", "url": url, "event_types": ["flag.changed"]}, format="json"
    )
    assert response.status_code == (201 if accepted else 400), response.json()
    if not accepted:
        assert "url" in response.json()


def test_delivery__ipv6_loopback_receiver__host_header_bracketed():
    import http.server
    import threading

    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    class Server6(http.server.HTTPServer):
        address_family = socket.AF_INET6

    try:
        server = Server6(("::1", 0), Handler)  # a port the system picks: tests run side by side
    except OSError as exc:  # no IPv6 loopback on this machine
        pytest.skip(f"IPv6 loopback unavailable: {exc}")
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        webhook_create(
            user=None, name="v6", url=f"http://[::1]:{port}/hook", event_types=[EventType.FLAG_CHANGED]
        )
        feature_create(user=None, key="dark_mode", name="Dark mode", type="boolean", default_value=False)
        delivery = WebhookDelivery.objects.get()
        deliver(delivery.pk)
    finally:
        server.shutdown()
        server.server_close()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.response_code) == ("delivered", 204)
    assert seen == [f"[::1]:{port}"]


def test_admin__send_again__failed_delivery_queued_and_delivered(
    client, superuser, receiver, django_capture_on_commit_callbacks
):
    client.force_login(superuser)
    subscribe(receiver, EventType.FLAG_CHANGED)
    feature_create(user=None, key="dark_mode", name="Dark mode", type="boolean", default_value=False)
    delivery = WebhookDelivery.objects.get()
    receiver.statuses = [404]
    deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "failed"

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            reverse("admin:features_webhookdelivery_changelist"),
            {"action": "send_again", "_selected_action": [delivery.pk]},
        )
    assert response.status_code == 302 and len(callbacks) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    deliver(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 1, 200)


# --- the production path: a Celery worker ----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # (as above)
def test_celery_worker__flag_saved__sent_by_the_worker_retried_after_a_500(receiver, monkeypatch):
    """Tasks not eager (as with a broker): the commit hands the delivery to Celery, a real worker
    (Celery's embedded test worker, in a thread, on the configured broker) sends it, and the 500
    brings a retry with its countdown (shortened here) through the broker."""
    from celery.contrib.testing.worker import start_worker

    from config.celery import app
    from features.webhooks import services

    monkeypatch.setattr(services, "RETRY_BASE_SECONDS", 0.2)
    webhook = subscribe(receiver, EventType.FLAG_CHANGED)
    receiver.statuses = [500]
    app.conf.task_always_eager = False
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            feature_create(user=None, key="dark_mode", name="Dark mode", type="boolean", default_value=False)
            assert receiver.wait_answers(2, timeout=60)
    finally:
        app.conf.task_always_eager = True  # as tests/conftest.py sets it for the session
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 2, 200)
    for request in receiver.requests:
        signing.signature_verify(request.headers[signing.SIGNATURE_HEADER], request.body, webhook.secret)
