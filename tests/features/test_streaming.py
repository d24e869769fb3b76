"""``GET /sub/{client_key}``: GrowthBook's server-sent events, driven through the ASGI application.

The application (``features.sdk.streaming.app.StreamingApp``) is called directly on an event loop that
``async_to_sync`` runs from the test's thread, so its database work (run through ``sync_to_async``)
happens in this thread, inside the test's transaction. The SDKs against a live server are in
``test_streaming_sdk.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.urls import reverse

from experiments.services import experiment_start
from features.config import config_get
from features.encryption import decrypt
from features.models import Environment, Feature, SdkKey, SdkKeyKind
from features.sdk import streaming
from features.sdk.cache import config_invalidate
from features.sdk.streaming import hub, notify
from features.sdk.streaming.app import StreamingApp
from features.sdk.streaming.hub import sse_event
from features.services import feature_create, feature_update, sdk_key_create
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db

WAIT = 5.0  # seconds an expected message may take before the test fails (it takes milliseconds)


class SseCall:
    """One request to the ASGI app: what it sent back, parsed into server-sent events."""

    def __init__(self, app: StreamingApp, path: str, *, method: str = "GET", headers: dict | None = None):
        self.app = app
        self.scope = {
            "type": "http",
            "method": method,
            "path": path,
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        }
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.buffer = b""
        self.ended = False

    async def start(self) -> tuple[int, dict[str, str]]:
        async def receive() -> dict:
            return await self.inbox.get()

        self.task = asyncio.get_running_loop().create_task(self.app(self.scope, receive, self.outbox.put))
        message = await asyncio.wait_for(self.outbox.get(), WAIT)
        assert message["type"] == "http.response.start"
        self.status = message["status"]
        self.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        return self.status, self.headers

    async def chunk(self, timeout: float = WAIT) -> bytes:
        message = await asyncio.wait_for(self.outbox.get(), timeout)
        assert message["type"] == "http.response.body"
        if not message.get("more_body", False):
            self.ended = True
        return message["body"]

    async def body(self) -> bytes:
        parts = []
        while not self.ended:
            parts.append(await self.chunk())
        return b"".join(parts)

    async def event(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next event (comments skipped): {"event", "id", "data"}."""
        while True:
            while b"\n\n" not in self.buffer:
                if self.ended:
                    raise AssertionError("the stream ended")
                self.buffer += await self.chunk(timeout)
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            fields: dict[str, Any] = {}
            data = []
            for line in block.decode().split("\n"):
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                else:
                    fields[name] = value
            if data:
                fields["data"] = json.loads("\n".join(data))
            if fields:
                return fields

    async def disconnect(self) -> None:
        await self.inbox.put({"type": "http.disconnect"})
        await asyncio.wait_for(self.task, WAIT)


def run(test):
    """Run ``test(app)`` on an event loop driven from this thread; stop the app afterwards."""

    async def main():
        app = StreamingApp()
        try:
            return await test(app)
        finally:
            await app.stop()

    return async_to_sync(main)()


@pytest.fixture(autouse=True)
def _no_periodic_recheck(monkeypatch):
    """Only the change notification may deliver within a test's wait, not the periodic re-check."""
    monkeypatch.setattr(hub, "RECHECK_SECONDS", 60.0)


@pytest.fixture
def client_key() -> str:
    return sdk_key_create(environment=Environment.objects.get(key="production"), kind=SdkKeyKind.CLIENT)[1]


def _flag(key: str = "checkout", value: Any = False, *, enabled: bool = True, rules=()) -> Feature:
    return feature_create(
        user=None,
        key=key,
        name=key,
        type="boolean",
        default_value=value,
        environments={"production": {"enabled": enabled, "rules": list(rules)}},
    )


def _version() -> str:
    return config_get(Environment.objects.get(key="production").id).version


def _payload(api_client, key: str) -> dict:
    return api_client.get(reverse("growthbook-features", args=[key])).json()


def test_stream__client_key__first_event_is_the_payload_as_api_features_serves_it(api_client, client_key):
    # Given a flag
    _flag(value=True)

    async def test(app):
        call = SseCall(app, f"/sub/{client_key}")
        status, headers = await call.start()
        first = await call.event()
        await call.disconnect()
        return status, headers, first

    status, headers, first = run(test)
    # Then a stream of events, readable from any origin, never cached
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["access-control-allow-origin"] == "*"
    assert "no-cache" in headers["cache-control"]
    # And its first event is the payload exactly as /api/features serves it, with the configuration's
    # version as the id
    assert first["event"] == "features"
    assert first["data"] == _payload(api_client, client_key)
    assert first["id"] == _version()


def test_stream__secret_sdk_key__streams_too(client_key):
    _, secret = sdk_key_create(environment=Environment.objects.get(key="production"))

    async def test(app):
        call = SseCall(app, f"/sub/{secret}")
        status, _ = await call.start()
        first = await call.event()
        await call.disconnect()
        return status, first

    status, first = run(test)
    assert status == 200 and first["event"] == "features"


@pytest.mark.parametrize(
    "change",
    ["value", "rule", "switch", "experiment_start", "new_flag"],
)
def test_stream__admin_change__next_event_carries_the_new_payload(api_client, client_key, change):
    # Given a flag (forced on when the change is switching its environment off), and an experiment
    flag = _flag(value=False, rules=[{"type": "force", "value": True}] if change == "switch" else ())
    experiment = ExperimentFactory(key="exp_checkout", variants=["control", "treatment"])

    def make_change():
        if change == "value":
            feature_update(feature=flag, user=None, default_value=True)
        elif change == "rule":
            feature_update(
                feature=flag,
                user=None,
                environments={"production": {"enabled": True, "rules": [{"type": "force", "value": True}]}},
            )
        elif change == "switch":
            feature_update(
                feature=flag, user=None, environments={"production": {"enabled": False, "rules": []}}
            )
        elif change == "experiment_start":
            rule = {
                "type": "experiment",
                "experiment": "exp_checkout",
                "values": {"control": False, "treatment": True},
            }
            feature_update(
                feature=flag, user=None, environments={"production": {"enabled": True, "rules": [rule]}}
            )
            experiment_start(experiment=experiment, user=None)
        else:
            _flag("another", True)

    async def test(app):
        call = SseCall(app, f"/sub/{client_key}")
        await call.start()
        before = await call.event()
        await sync_to_async(make_change)()
        after = await call.event()
        await call.disconnect()
        return before, after

    before, after = run(test)
    # Then the stream sent the payload that /api/features now serves, with a later dateUpdated
    assert after["event"] == "features"
    assert after["data"] == _payload(api_client, client_key)
    assert after["data"]["features"] != before["data"]["features"]
    assert after["data"]["dateUpdated"] > before["data"]["dateUpdated"]
    assert after["id"] != before["id"]


def test_stream__encrypted_key_beside_a_plain_one__each_gets_its_own_payload_before_and_after_a_change(
    api_client, client_key
):
    # Given a flag, and an encrypted client key of the same environment beside the plain one
    flag = _flag(value=False)
    encrypted, encrypted_key = sdk_key_create(
        environment=Environment.objects.get(key="production"), kind=SdkKeyKind.CLIENT, encrypt=True
    )

    async def test(app):
        plain_call, secret_call = SseCall(app, f"/sub/{client_key}"), SseCall(app, f"/sub/{encrypted_key}")
        await plain_call.start()
        await secret_call.start()
        before = await plain_call.event(), await secret_call.event()
        await sync_to_async(feature_update)(feature=flag, user=None, default_value=True)
        after = await plain_call.event(), await secret_call.event()
        await plain_call.disconnect()
        await secret_call.disconnect()
        return before, after

    (plain_before, secret_before), (plain_after, secret_after) = run(test)
    # Then the encrypted key's stream carries what /api/features serves it (encryptedFeatures, empty
    # features), which decrypts to the plain stream's features, before and after the change
    for plain, secret in ((plain_before, secret_before), (plain_after, secret_after)):
        assert secret["data"]["features"] == {} and "encryptedFeatures" not in plain["data"]
        decrypted = json.loads(decrypt(secret["data"]["encryptedFeatures"], encrypted.encryption_key))
        assert decrypted == plain["data"]["features"]
    assert secret_after["data"] == _payload(api_client, encrypted_key)
    assert plain_after["data"]["features"]["checkout"]["defaultValue"] is True


def test_stream__experiment_stopped__the_rule_leaves_the_payload(client_key):
    experiment = experiment_start(
        experiment=ExperimentFactory(key="exp_checkout", variants=["control", "treatment"]), user=None
    )
    rule = {
        "type": "experiment",
        "experiment": "exp_checkout",
        "values": {"control": False, "treatment": True},
    }
    _flag(rules=[rule])

    def stop():
        from experiments.services import experiment_stop

        experiment_stop(experiment=experiment, user=None)

    async def test(app):
        call = SseCall(app, f"/sub/{client_key}")
        await call.start()
        before = await call.event()
        await sync_to_async(stop)()
        after = await call.event()
        await call.disconnect()
        return before, after

    before, after = run(test)
    assert before["data"]["features"]["checkout"]["rules"][0]["key"] == "exp_checkout"
    assert "rules" not in after["data"]["features"]["checkout"]


def test_stream__other_environment_changes__no_event(client_key, settings):
    # Given a stream on production (keep-alives every 0.2 s) and a flag enabled only in staging
    settings.SDK_STREAM_KEEPALIVE_SECONDS = 0.2
    flag = feature_create(
        user=None,
        key="staging_only",
        name="s",
        type="boolean",
        default_value=False,
        environments={"staging": {"enabled": True, "rules": []}},
    )

    def change_staging_rules():
        feature_update(
            feature=flag,
            user=None,
            environments={"staging": {"enabled": True, "rules": [{"type": "force", "value": True}]}},
        )

    async def test(app):
        call = SseCall(app, f"/sub/{client_key}")
        await call.start()
        await call.event()
        # When only staging's rules change
        await sync_to_async(change_staging_rules)()
        # Then only keep-alives follow: production's payload did not move
        chunks = [await call.chunk(timeout=2) for _ in range(3)]
        await call.disconnect()
        return chunks, app.hub.rebuilds

    chunks, rebuilds = run(test)
    assert rebuilds >= 1  # the change was heard and production rebuilt
    assert chunks == [b": keep-alive\n\n"] * 3


def test_stream__idle__keep_alive_comments(client_key, settings):
    settings.SDK_STREAM_KEEPALIVE_SECONDS = 0.1

    async def test(app):
        call = SseCall(app, f"/sub/{client_key}")
        await call.start()
        await call.event()
        chunks = [await call.chunk(timeout=2) for _ in range(2)]
        await call.disconnect()
        return chunks

    assert run(test) == [b": keep-alive\n\n", b": keep-alive\n\n"]


def test_stream__last_event_id_is_current__payload_not_sent_again(client_key):
    version = _version()

    async def test(app):
        call = SseCall(app, f"/sub/{client_key}", headers={"Last-Event-ID": version})
        await call.start()
        first = await call.chunk()
        await call.disconnect()
        return first

    # Then the stream opens with a comment (so the client's onopen fires), not the payload again
    assert run(test) == b": keep-alive\n\n"


@pytest.mark.parametrize("key", ["unknown", "revoked", "empty"])
def test_stream__unknown_or_revoked_key__401_like_the_payload_endpoint(api_client, client_key, key):
    if key == "revoked":
        SdkKey.objects.filter(kind=SdkKeyKind.CLIENT).update(revoked=True)
        config_invalidate()
    path = {"unknown": "/sub/pk_nope", "revoked": f"/sub/{client_key}", "empty": "/sub/"}[key]

    async def test(app):
        call = SseCall(app, path)
        status, headers = await call.start()
        return status, headers, json.loads(await call.body())

    status, headers, body = run(test)
    assert status == 401
    assert headers["www-authenticate"] == 'Bearer realm="sdk"'
    assert headers["access-control-allow-origin"] == "*"
    assert "Unknown or revoked key" in body["error"]
    if key != "empty":
        assert (
            api_client.get(reverse("growthbook-features", args=[path.removeprefix("/sub/")])).status_code
            == 401
        )


def test_stream__key_revoked_while_open__stream_ends(client_key):
    def revoke():
        key = SdkKey.objects.get(kind=SdkKeyKind.CLIENT)
        key.revoked = True
        key.save()

    async def test(app):
        call = SseCall(app, f"/sub/{client_key}")
        await call.start()
        await call.event()
        await sync_to_async(revoke)()
        rest = await call.body()  # returns once the server ended the response
        await call.disconnect()
        return rest

    assert run(test) == b""


def test_stream__client_disconnects__stream_released(client_key):
    async def test(app):
        call = SseCall(app, f"/sub/{client_key}")
        await call.start()
        await call.event()
        held = app.hub.count
        await call.disconnect()
        return held, app.hub.count

    assert run(test) == (1, 0)


def test_stream__per_key_limit__429_then_admitted_once_one_closes(client_key, settings):
    settings.SDK_STREAM_MAX_PER_KEY = 2
    _, other_key = sdk_key_create(
        environment=Environment.objects.get(key="production"), kind=SdkKeyKind.CLIENT
    )

    async def test(app):
        first, second = SseCall(app, f"/sub/{client_key}"), SseCall(app, f"/sub/{client_key}")
        await first.start()
        await second.start()
        third = SseCall(app, f"/sub/{client_key}")
        refused = await third.start()
        refusal = json.loads(await third.body())
        other = SseCall(app, f"/sub/{other_key}")
        other_status, _ = await other.start()
        await first.disconnect()
        again = SseCall(app, f"/sub/{client_key}")
        again_status, _ = await again.start()
        for call in (second, other, again):
            await call.disconnect()
        return refused, refusal, other_status, again_status

    (status, headers), refusal, other_status, again_status = run(test)
    assert status == 429
    assert headers["retry-after"] == "30"
    assert "SDK_STREAM_MAX_PER_KEY" in refusal["error"]
    assert other_status == 200  # another key is not affected
    assert again_status == 200


def test_stream__process_limit__503(client_key, settings):
    settings.SDK_STREAM_MAX_CONNECTIONS = 1
    _, other_key = sdk_key_create(
        environment=Environment.objects.get(key="production"), kind=SdkKeyKind.CLIENT
    )

    async def test(app):
        first = SseCall(app, f"/sub/{client_key}")
        await first.start()
        second = SseCall(app, f"/sub/{other_key}")
        refused = await second.start()
        refusal = json.loads(await second.body())
        await first.disconnect()
        return refused, refusal

    (status, headers), refusal = run(test)
    assert status == 503
    assert headers["retry-after"] == "30"
    assert "SDK_STREAM_MAX_CONNECTIONS" in refusal["error"]


@pytest.mark.parametrize(
    ("method", "status"),
    [("OPTIONS", 204), ("POST", 405), ("PUT", 405)],
)
def test_stream__methods__preflight_answered_writes_refused(client_key, method, status):
    async def test(app):
        call = SseCall(app, f"/sub/{client_key}", method=method)
        answer = await call.start()
        await call.body()
        return answer

    answer_status, headers = run(test)
    assert answer_status == status
    assert headers["access-control-allow-origin"] == "*"
    if method == "OPTIONS":
        assert "GET" in headers["access-control-allow-methods"]


def test_stream__streaming_off__404_and_not_advertised(api_client, client_key, settings):
    settings.SDK_STREAMING = "off"

    async def test(app):
        app.start()  # a running stream server, which would otherwise be advertised
        advertised = streaming.advertised()
        call = SseCall(app, f"/sub/{client_key}")
        status, _ = await call.start()
        await call.body()
        return status, advertised

    assert run(test) == (404, False)


def test_payload__streaming_served_in_this_process__advertised_and_exposed_to_browsers(
    api_client, client_key
):
    url = reverse("growthbook-features", args=[client_key])
    # Given no stream server in this process (a plain WSGI server): not advertised
    assert "x-sse-support" not in api_client.get(url)

    async def test(app):
        app.start()
        return await sync_to_async(api_client.get)(url)

    # When this process serves /sub (auto): advertised, and the header is readable by browsers
    response = run(test)
    assert response["x-sse-support"] == "enabled"
    assert "x-sse-support" in response["Access-Control-Expose-Headers"]
    # And once it stopped, no longer
    assert "x-sse-support" not in api_client.get(url)


def test_payload__streaming_on__advertised_from_a_wsgi_process(api_client, client_key, settings):
    # A proxy routes /sub/* to a stream process (docker-compose.yml): SDK_STREAMING=on on the web service
    settings.SDK_STREAMING = "on"
    response = api_client.get(reverse("growthbook-features", args=[client_key]))
    assert response["x-sse-support"] == "enabled"
    etag = response["ETag"]
    not_modified = api_client.get(reverse("growthbook-features", args=[client_key]), HTTP_IF_NONE_MATCH=etag)
    assert not_modified.status_code == 304 and not_modified["x-sse-support"] == "enabled"


def test_sse_event__large_payload__short_lines_that_join_back_into_the_payload():
    # Given a payload of 400 flags whose rules make it ~600 KB (aiohttp, under the Python SDK, refuses
    # lines over 128 KiB)
    rules = [{"condition": {"country": {"$in": [f"C{i}" for i in range(200)]}}, "force": True}]
    payload = {
        "status": 200,
        "features": {f"flag_{i}": {"defaultValue": False, "rules": rules} for i in range(400)},
        "dateUpdated": "2026-12-07T00:00:00.000Z",
    }
    body = json.dumps(payload).encode()
    assert len(body) > 600_000
    event = sse_event(body, "abc").decode()
    lines = event.split("\n")
    assert lines[:2] == ["id: abc", "event: features"]
    assert max(len(line.encode()) for line in lines) < 8 * 1024
    data = "\n".join(line.removeprefix("data: ") for line in lines if line.startswith("data: "))
    assert json.loads(data) == payload
    assert event.endswith("\n\n")


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL): CI sets it")
def test_notify__redis__a_change_published_by_a_writer_reaches_a_subscriber():
    # Given a subscriber on the channel (as a stream process runs it)
    heard: list[float] = []

    async def main():
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(notify.listen(lambda: heard.append(1), stop))
        try:
            while not heard:  # subscribed: it calls back once on (re)subscribing
                await asyncio.sleep(0.01)
            # When a writer (another thread here; the web or a worker in production) invalidates
            await asyncio.to_thread(config_invalidate)
            async with asyncio.timeout(WAIT):
                while len(heard) < 2:
                    await asyncio.sleep(0.01)
        finally:
            stop.set()
            await asyncio.wait_for(task, WAIT)

    asyncio.run(main())
    # Then the subscriber heard it through Redis
    assert len(heard) >= 2
