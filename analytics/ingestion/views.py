"""`POST /api/v1/events` and `POST /api/v1/exposures`: SDKs send batches; 202 once stored."""

import logging
import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import TokenAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.clickhouse import ClickHouseError
from analytics.ingestion.serializers import (
    EventBatchSerializer,
    ExposureBatchSerializer,
    IngestResultSerializer,
)
from analytics.ingestion.services import events_write, exposures_write
from analytics.ingestion.validation import (
    MAX_ITEMS,
    Rejection,
    events_validate,
    exposures_validate,
)
from experiments.models import Variant
from features.sdk.auth import IsSdkClient, SdkKeyAuthentication
from features.sdk.limits import BodyTooLarge, body_read

logger = logging.getLogger(__name__)

EXPERIMENT_KEY_RE = re.compile(r"[-a-zA-Z0-9_]{1,200}")  # a SlugField's characters
NUL_ERROR = "Strings may not contain the NUL character (\\u0000)."


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


class BatchIngestView(APIView):
    """Shared by events and exposures: size limits, JSON, per-item validation, durable write."""

    sdk_endpoint = True  # CORS, body limit and rate limit: features.sdk.middleware.SdkEdgeMiddleware
    # SDK key first (401 with `WWW-Authenticate: Bearer` without credentials); Token only to tell a
    # user token apart, which authenticates and is refused with 403, as on every SDK endpoint.
    authentication_classes = [SdkKeyAuthentication, TokenAuthentication]
    permission_classes = [IsSdkClient]
    # The body is read raw (orjson, below); this tells the schema it is JSON, never a form or multipart.
    parser_classes = [JSONParser]
    field: str = ""

    def _read_items(self, request) -> list | Response:
        try:
            # The edge refused a declared length past the limit already; a chunked body is counted here.
            body = body_read(request._request)
        except BodyTooLarge as exc:
            return Response({"detail": f"{exc}; split the batch."}, 413)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return Response({"detail": f"Malformed JSON: {exc}"}, status=400)
        # JSON can only carry a NUL as the escape \u0000: one scan of the bytes spares the rest.
        self.may_hold_nul = b"\\u0000" in body
        items = payload.get(self.field) if isinstance(payload, dict) else None
        if not isinstance(items, list) or not items:
            return Response({self.field: [f"Required: a list of 1 to {MAX_ITEMS} {self.field}."]}, status=400)
        if len(items) > MAX_ITEMS:
            return Response(
                {
                    "detail": f"At most {MAX_ITEMS} {self.field} a request (got {len(items)}); split the batch."
                },
                413,
            )
        return items

    def _validate(self, items: list, validate: Callable[[list], tuple[list, list[Rejection]]]):
        """``validate(items)``, with items holding a NUL character anywhere rejected first: the spool
        (PostgreSQL) cannot store one while ClickHouse is down, and an item must be accepted or
        refused the same whichever store takes it. Rejections keep the items' indexes."""
        if not getattr(self, "may_hold_nul", False):
            return validate(items)
        clean = [index for index, item in enumerate(items) if not _holds_nul(item)]
        rows, rejected = validate([items[index] for index in clean])
        rejected = [Rejection(clean[r.index], r.errors) for r in rejected]
        rejected += [Rejection(i, {"item": NUL_ERROR}) for i in sorted(set(range(len(items))) - set(clean))]
        return rows, sorted(rejected, key=lambda r: r.index)

    def _answer(self, accepted: int, rejected: list) -> Response:
        # Always 202 for a well-formed batch, even when every item was rejected (docs/api.md): the batch
        # was processed, and an SDK reads `rejected` to know which items to drop rather than resend.
        body = {"accepted": accepted, "rejected": [r.as_dict() for r in rejected]}
        return Response(body, status=status.HTTP_202_ACCEPTED)

    def _store(self, write, rows) -> int | Response:
        try:
            return write(rows=rows).accepted
        except ClickHouseError as exc:
            # Not a connection failure (those spool): ClickHouse refused the rows. Nothing is acknowledged.
            logger.error("ClickHouse refused a %s batch: %s", self.field, exc)
            return Response(
                {"detail": "Storage refused the batch; nothing was stored. Try again later."}, 503
            )


INGEST_RESPONSES = {
    202: OpenApiResponse(
        IngestResultSerializer,
        description="The batch was processed: `accepted` items are durably stored, `rejected` lists the "
        "others with their index and reasons. Also when every item is rejected (`accepted` 0).",
    ),
    400: OpenApiResponse(
        # Only a request that is not a batch; the management API's error shape.
        {"$ref": "#/components/schemas/Error"},
        description="Not a batch: malformed JSON (`detail`), or no list or an empty one (`events` / "
        "`exposures`: the reason). Nothing is stored.",
    ),
    401: OpenApiResponse(description="No or unknown SDK key."),
    403: OpenApiResponse(description="A user credential (Token) instead of an SDK key."),
    413: OpenApiResponse(description=f"More than {MAX_ITEMS} items or 1 MiB (`SDK_MAX_BODY_BYTES`)."),
    429: OpenApiResponse(
        description="The SDK key sent more than `SDK_RATE_LIMIT_PER_MINUTE` requests this minute; "
        "header `Retry-After`: seconds to wait."
    ),
}


class EventIngestView(BatchIngestView):
    field = "events"

    @extend_schema(
        summary="Send metric events",
        description="A batch of up to 1000 events (1 MiB). Each item is validated on its own: accepted items "
        "are stored (202 only once they are durable, in ClickHouse or its spool), rejected ones are reported "
        "with their index and reasons. A batch always answers 202, even when every item is rejected "
        "(`accepted` 0); 400 only for a body that is not a batch: malformed JSON, no `events` list, or an "
        "empty one. An event's timestamp may be up to 30 days old. Replays with the same `event_id` count "
        "once.",
        request=EventBatchSerializer,
        responses=INGEST_RESPONSES,
        examples=[
            OpenApiExample(
                "Two purchases",
                request_only=True,
                value={
                    "events": [
                        {
                            "event_id": "5f0c6c2e-8c4b-4d6e-9f3a-2b1d0e7a9c11",
                            "name": "purchase",
                            "unit_id": "user-42",
                            "value": 49.9,
                            "timestamp": "2026-11-27T10:00:00Z",
                            "properties": {"currency": "EUR"},
                        },
                        {"name": "purchase", "unit_id": "user-43", "value": 12},
                    ]
                },
            ),
            OpenApiExample(
                "One rejected",
                response_only=True,
                status_codes=["202"],
                value={"accepted": 1, "rejected": [{"index": 1, "errors": {"value": "A finite number."}}]},
            ),
            OpenApiExample(
                "Every item rejected",
                response_only=True,
                status_codes=["202"],
                value={
                    "accepted": 0,
                    "rejected": [
                        {"index": 0, "errors": {"unit_id": "Required: a non-empty string."}},
                        {"index": 1, "errors": {"item": "Each event must be an object."}},
                    ],
                },
            ),
            OpenApiExample(
                "Not a batch",
                response_only=True,
                status_codes=["400"],
                value={"events": ["Required: a list of 1 to 1000 events."]},
            ),
        ],
        tags=["sdk"],
    )
    def post(self, request):
        items = self._read_items(request)
        if isinstance(items, Response):
            return items
        environment, now = request.user.environment.key, timezone.now()
        rows, rejected = self._validate(
            items, lambda batch: events_validate(batch, environment=environment, now=now)
        )
        accepted = self._store(events_write, rows) if rows else 0
        if isinstance(accepted, Response):
            return accepted
        return self._answer(accepted, rejected)


class ExposureIngestView(BatchIngestView):
    field = "exposures"

    @extend_schema(
        summary="Send exposures",
        description="Exposures from client-side evaluation: a unit saw a variant of an experiment. Up to 1000 "
        "items (1 MiB); the experiment and variant must exist. The timestamp may be as old as it likes "
        "(every exposure counts, late ones too), at most 1 hour ahead. Same answers as events: 202 for a "
        "batch, even when every item is rejected (`accepted` 0); 400 only for malformed JSON, no "
        "`exposures` list, or an empty one.",
        request=ExposureBatchSerializer,
        responses=INGEST_RESPONSES,
        examples=[
            OpenApiExample(
                "One exposure",
                request_only=True,
                value={
                    "exposures": [
                        {
                            "experiment": "checkout_button",
                            "variant": "treatment",
                            "unit_id": "user-42",
                            "timestamp": "2026-11-27T09:59:58Z",
                        }
                    ]
                },
            ),
            OpenApiExample(
                "Accepted",
                response_only=True,
                status_codes=["202"],
                value={"accepted": 1, "rejected": []},
            ),
            OpenApiExample(
                "Every item rejected",
                response_only=True,
                status_codes=["202"],
                value={
                    "accepted": 0,
                    "rejected": [
                        {"index": 0, "errors": {"experiment": "There is no experiment 'checkout'."}}
                    ],
                },
            ),
        ],
        tags=["sdk"],
    )
    def post(self, request):
        items = self._read_items(request)
        if isinstance(items, Response):
            return items
        # Only what can be an experiment's key (a slug) is looked up: an item's "experiment" may be
        # any JSON (a list or an object is unhashable; PostgreSQL refuses a NUL in a string). The
        # others are rejected by the validation below as unknown experiments.
        keys = {
            item["experiment"]
            for item in items
            if isinstance(item, dict)
            and isinstance(item.get("experiment"), str)
            and EXPERIMENT_KEY_RE.fullmatch(item["experiment"])
        }
        variants: dict[str, set[str]] = defaultdict(set)
        created: dict[str, Any] = {}
        for experiment, variant, created_at in Variant.objects.filter(experiment__key__in=keys).values_list(
            "experiment__key", "key", "experiment__created_at"
        ):
            variants[experiment].add(variant)
            created[experiment] = created_at
        environment, now = request.user.environment.key, timezone.now()
        rows, rejected = self._validate(
            items,
            lambda batch: exposures_validate(
                batch,
                environment=environment,
                now=now,
                variants_by_experiment=variants,
                created_by_experiment=created,
            ),
        )
        accepted = self._store(exposures_write, rows) if rows else 0
        if isinstance(accepted, Response):
            return accepted
        return self._answer(accepted, rejected)
