"""``POST /api/eval/{client_key}``: GrowthBook's remote evaluation, decided by our own evaluation.

GrowthBook's SDKs in ``remote_eval`` mode (Python ``remote_eval=True``, JavaScript ``remoteEval:
true``) never see the rules: they POST the unit's context and receive every flag already decided,
then evaluate that trivial payload locally. The request, as both SDKs send it::

    {"attributes": {"id": "user-42", ...}, "forcedVariations": {"exp": 1},
     "forcedFeatures": [["flag", value], ...], "url": "https://..."}

The answer is a GrowthBook payload in which each flag of the key's environment is
``{"defaultValue": value}``, the value ``features.evaluation`` gives the unit (the same decision as
``/api/v1/evaluate``: ``attributes.id`` is the unit id, and the attributes, ``id`` included, are what
conditions read, as in an SDK evaluating locally). A
flag whose value came from an experiment (its own, or a prerequisite's) also gets
``"rules": [{"force": value, "tracks": [{"experiment", "result"}]}]``: the SDK then fires its
tracking callback with the experiment and the variant (``result.key``, from the variant keys in
``meta``), exactly as GrowthBook's own remote evaluation does, so exposures still leave through the
callback (``docs/sdks.md``, "Exposures from GrowthBook's SDKs"). This endpoint records no exposure
itself: the callback does, once, when the unit really sees the flag.

Differences from GrowthBook's server, on purpose: every flag is answered, including those whose
value is off (GrowthBook leaves them out, so its SDKs answer null for them); ``attributes.id`` is
required (the unit id: a flag with a rollout or an experiment cannot be decided without it).

QA overrides, as GrowthBook's SDKs apply them when they evaluate locally: ``forcedFeatures`` gives a
flag the forced value, also where another flag has it as a prerequisite; ``forcedVariations``
(experiment key -> variation index) puts the unit in that variant of a running experiment wherever
a flag's evaluation reaches its rule, whatever the rule's condition, targeting and traffic, and
fires no tracking (an index out of range leaves the rule out). ``url`` is accepted and not used:
no targeting here reads the URL.

The edge (the SDK endpoints' limits, ``features.sdk.limits``): a body larger than
``SDK_MAX_BODY_BYTES`` is refused with 413, the key's requests count against
``SDK_RATE_LIMIT_PER_MINUTE`` (429 with ``Retry-After``), and any origin may call it
(``features.sdk.path_key``, as for the payload). Bad input is a 400 ``{"status": 400, "error": ...}``
naming the field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema

from experiments.bucketing import UNIT_ID_ATTRIBUTE
from features.config import config_get
from features.evaluation import (
    FORCE,
    CompiledConfig,
    CompiledFeature,
    CompiledRule,
    Evaluation,
    Reason,
    evaluate_all,
)
from features.growthbook import features_payload
from features.sdk.cache import VersionMemo
from features.sdk.exposures import hash_value_of
from features.sdk.limits import body_check, body_read, rate_check
from features.sdk.path_key import BadRequest, PathKeyView
from features.sdk.serializers import UNIT_ID_MAX_LENGTH, non_finite_number_path

URL_MAX_LENGTH = 4096
FORCED_MAX = 1000  # forced features or variations a request may carry
OVERRIDE = "override"  # the variant label of a forced value


class RemoteEvalError(BadRequest):
    """Bad input: the message names the field and says why."""


# --- the request ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RemoteEvalRequest:
    unit_id: str
    attributes: dict[str, Any]
    forced_variations: dict[str, int]
    forced_features: dict[str, Any]
    url: str


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def remote_eval_request(body: bytes) -> RemoteEvalRequest:
    """The request as both SDKs send it, checked strictly (types as sent, never coerced)."""
    try:
        data = json.loads(body, parse_constant=_reject_constant) if body.strip() else {}
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise RemoteEvalError(f"The body is not valid JSON: {exc}") from None
    if type(data) is not dict:
        raise RemoteEvalError('The body must be a JSON object: {"attributes": {"id": ...}, ...}.')
    attributes = data.get("attributes", {})
    if type(attributes) is not dict:
        raise RemoteEvalError("attributes must be an object.")
    where = non_finite_number_path(attributes, "attributes")
    if where is not None:
        raise RemoteEvalError(f"{where}: numbers must be finite (1e400 reads as infinity).")
    unit_id = attributes.get("id")
    if unit_id is None or unit_id == "":
        raise RemoteEvalError("attributes.id is required: the unit id (a user, device or account id).")
    if type(unit_id) is not str:
        raise RemoteEvalError("attributes.id must be a string (the unit id).")
    if len(unit_id) > UNIT_ID_MAX_LENGTH:
        raise RemoteEvalError(f"attributes.id is longer than {UNIT_ID_MAX_LENGTH} characters.")

    forced_variations = data.get("forcedVariations")
    if forced_variations is None:
        forced_variations = {}
    if type(forced_variations) is not dict:
        raise RemoteEvalError("forcedVariations must be an object: {experiment key: variation index}.")
    if len(forced_variations) > FORCED_MAX:
        raise RemoteEvalError(f"forcedVariations has more than {FORCED_MAX} entries.")
    for key, index in forced_variations.items():
        if type(index) is not int or index < 0:
            raise RemoteEvalError(f"forcedVariations.{key} must be a variation index (an integer >= 0).")

    raw_forced = data.get("forcedFeatures")
    if raw_forced is None:
        raw_forced = []
    if type(raw_forced) is not list:
        raise RemoteEvalError("forcedFeatures must be a list of [flag key, value] pairs.")
    if len(raw_forced) > FORCED_MAX:
        raise RemoteEvalError(f"forcedFeatures has more than {FORCED_MAX} entries.")
    forced_features: dict[str, Any] = {}
    for index, pair in enumerate(raw_forced):
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
            raise RemoteEvalError(f"forcedFeatures[{index}] must be a [flag key, value] pair.")
        where = non_finite_number_path(pair[1], f"forcedFeatures[{index}]")
        if where is not None:
            raise RemoteEvalError(f"{where}: numbers must be finite.")
        forced_features[pair[0]] = pair[1]

    url = data.get("url", "")
    if url is None:
        url = ""
    if type(url) is not str:
        raise RemoteEvalError("url must be a string.")
    if len(url) > URL_MAX_LENGTH:
        raise RemoteEvalError(f"url is longer than {URL_MAX_LENGTH} characters.")
    # ``id`` stays among the attributes: an SDK evaluating locally lets conditions read it too.
    return RemoteEvalRequest(unit_id, attributes, forced_variations, forced_features, url)


# --- overrides ---------------------------------------------------------------------------------------------
def _forced_variation_rule(
    rule: CompiledRule, config_: CompiledConfig, forced_variations: Mapping[str, int]
) -> CompiledRule | None:
    """An experiment rule with a forced variation as the force rule it becomes (None: skipped)."""
    experiment = config_.experiments.get(rule.experiment or "")
    if experiment is None or not experiment.running or experiment.error is not None:
        return rule  # assigns nobody anyway; the SDK's payload has no such rule
    index = forced_variations[rule.experiment]
    if index >= len(experiment.variant_keys):
        return None
    variant = experiment.variant_keys[index]
    hit = (rule.hits or {}).get(variant)
    if hit is None:
        return None
    # No exposure: a forced variation is not a randomised assignment (GrowthBook tracks none). The
    # experiment stays named, so a holdout of it still skips its held-out units (features.evaluation).
    return CompiledRule(
        FORCE, rule.label, None, experiment=rule.experiment, hit=dataclasses.replace(hit, exposures=())
    )


def config_with_overrides(
    config_: CompiledConfig, forced_features: Mapping[str, Any], forced_variations: Mapping[str, int]
) -> CompiledConfig:
    """The configuration as the QA overrides make it for this request (the stored one is untouched)."""
    if not forced_features and not forced_variations:
        return config_
    features: dict[str, CompiledFeature] = {}
    for key, feature in config_.features.items():
        if key in forced_features:
            hit = Evaluation(key, forced_features[key], OVERRIDE, Reason.TARGETING_MATCH)
            feature = dataclasses.replace(
                feature,
                enabled=True,
                error=None,
                holdout=None,  # a forced value overrides a holdout too
                prerequisites=(),
                rules=(CompiledRule(FORCE, OVERRIDE, None, hit=hit),),
            )
        elif forced_variations and any(r.experiment in forced_variations for r in feature.rules):
            rules = []
            for rule in feature.rules:
                if rule.experiment in forced_variations:
                    rule = _forced_variation_rule(rule, config_, forced_variations)
                if rule is not None:
                    rules.append(rule)
            feature = dataclasses.replace(feature, rules=tuple(rules))
        features[key] = feature
    return dataclasses.replace(config_, features=features)


# --- the answer --------------------------------------------------------------------------------------------
# (environment id, generation, version) -> {(flag key, experiment key): the payload's experiment rule}
_rules_memo: VersionMemo[dict[tuple[str, str], dict[str, Any]]] = VersionMemo()


def _experiment_rules(config_: CompiledConfig) -> dict[tuple[str, str], dict[str, Any]]:
    """Each flag's experiment rules as the payload writes them (``features.growthbook``), by
    (flag, experiment) and by (``""``, experiment) for the first flag that has the experiment."""
    memo_key = (config_.environment_id, config_.generation, config_.version)
    return _rules_memo.get(memo_key, lambda: _experiment_rules_build(config_))


def _experiment_rules_build(config_: CompiledConfig) -> dict[tuple[str, str], dict[str, Any]]:
    running = {k for k, e in config_.experiments.items() if e.running and not e.error}
    broken = {k for k, f in config_.features.items() if f.error is not None}
    payload = features_payload(config_.snapshot or {}, running=running, broken=broken)
    rules: dict[tuple[str, str], dict[str, Any]] = {}
    for flag, definition in payload.items():
        for rule in definition.get("rules") or ():
            if "variations" in rule:  # the first of a rule and its fallback copy (same key)
                rules.setdefault((flag, rule["key"]), rule)
                rules.setdefault(("", rule["key"]), rule)
    return rules


def _track(
    rules: Mapping[tuple[str, str], Mapping[str, Any]],
    flag: str,
    experiment: str,
    variant: str,
    hash_attribute: str,
    attributes: Mapping[str, Any],
) -> dict[str, Any] | None:
    """GrowthBook's ``TrackData`` for one exposure: the experiment (without its targeting) and the result."""
    own = rules.get((flag, experiment))
    rule = own or rules.get(("", experiment))
    if rule is None:
        return None
    keys = [meta["key"] for meta in rule["meta"]]
    if variant not in keys:
        return None
    index = keys.index(variant)
    experiment_fields = {
        field: rule[field]
        for field in ("key", "variations", "meta", "name", "phase", "hashAttribute", "hashVersion")
    }
    return {
        "experiment": experiment_fields,
        "result": {
            "featureId": flag if own is not None else None,
            "inExperiment": True,
            "variationId": index,
            "value": rule["variations"][index],
            "hashUsed": True,
            # The id the unit was hashed on: the experiment's hash attribute, or its fallback.
            "hashAttribute": hash_attribute,
            "hashValue": hash_value_of(
                hash_attribute, str(attributes.get(UNIT_ID_ATTRIBUTE, "")), attributes
            ),
            "key": variant,
            "name": rule["meta"][index]["name"],
            "stickyBucketUsed": False,
        },
    }


def remote_eval_features(
    config_: CompiledConfig, evaluations: list[Evaluation], attributes: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Every flag decided, as GrowthBook's remote evaluation writes it (module docstring)."""
    rules = _experiment_rules(config_) if any(e.exposures for e in evaluations) else {}
    features: dict[str, dict[str, Any]] = {}
    for evaluation in evaluations:
        definition: dict[str, Any] = {"defaultValue": evaluation.value}
        if evaluation.exposures:
            tracks = [
                track
                for experiment, variant, hash_attribute in evaluation.exposures
                if (track := _track(rules, evaluation.key, experiment, variant, hash_attribute, attributes))
                is not None
            ]
            if tracks:
                definition["rules"] = [{"force": evaluation.value, "tracks": tracks}]
        features[evaluation.key] = definition
    return features


# --- the view ------------------------------------------------------------------------------------------------
REQUEST_EXAMPLE = {
    "attributes": {"id": "user-42", "country": "US", "plan": "pro"},
    "forcedVariations": {},
    "forcedFeatures": [],
    "url": "https://shop.example.com/checkout",
}
RESPONSE_EXAMPLE = {
    "status": 200,
    "features": {
        "new_checkout": {"defaultValue": True},
        "button_color": {
            "defaultValue": "green",
            "rules": [
                {
                    "force": "green",
                    "tracks": [
                        {
                            "experiment": {
                                "key": "checkout_button",
                                "variations": ["blue", "green"],
                                "meta": [
                                    {"key": "control", "name": "Control"},
                                    {"key": "treatment", "name": "Green"},
                                ],
                                "name": "Checkout button",
                                "phase": "0",
                                "hashAttribute": "id",
                                "hashVersion": 2,
                            },
                            "result": {
                                "featureId": "button_color",
                                "inExperiment": True,
                                "variationId": 1,
                                "value": "green",
                                "hashUsed": True,
                                "hashAttribute": "id",
                                "hashValue": "user-42",
                                "key": "treatment",
                                "name": "Green",
                                "stickyBucketUsed": False,
                            },
                        }
                    ],
                }
            ],
        },
    },
    "dateUpdated": "2026-12-06T23:00:00.000Z",
}


class RemoteEvalView(PathKeyView):
    methods = ("POST",)
    allow_headers = "Content-Type"
    expose_headers = "Retry-After"
    name = "Remote evaluation"

    def answer(self, request: HttpRequest, client_key: str) -> HttpResponse:
        body_check(request)
        client = self.client(client_key)
        rate_check(client)
        context = remote_eval_request(body_read(request))
        stored = config_get(client.environment.id, generation=client.generation)
        config_ = config_with_overrides(stored, context.forced_features, context.forced_variations)
        evaluations = evaluate_all(config_, context.unit_id, context.attributes)
        moment = dt.datetime.fromtimestamp(stored.built_at, tz=dt.UTC)
        payload = {
            "status": 200,
            "features": remote_eval_features(stored, evaluations, context.attributes),
            "dateUpdated": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        response = HttpResponse(
            json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(),
            content_type="application/json",
        )
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(
        operation_id="growthbook_remote_eval",
        summary="GrowthBook remote evaluation",
        description="Every flag of the key's environment decided for one unit, as GrowthBook's SDKs ask "
        "in remote-evaluation mode (`remote_eval` / `remoteEval`), for clients that must not see the "
        "rules. `attributes.id` is the unit id; the values are those of `/api/v1/evaluate`. A flag "
        "served by an experiment carries a force rule with `tracks`, so the SDK's tracking callback "
        "fires with the variant. `forcedFeatures` and `forcedVariations` are applied as the SDKs apply "
        "them locally; `url` is not used. No exposure is recorded here (the SDK's callback sends it). "
        "Client (`pk_`) or secret key, in the path; any origin.",
        tags=["sdk"],
        auth=[],
        parameters=[
            OpenApiParameter(
                "client_key", OpenApiTypes.STR, OpenApiParameter.PATH, description="A client or SDK key."
            )
        ],
        request={"application/json": OpenApiTypes.OBJECT},
        examples=[OpenApiExample("Context", value=REQUEST_EXAMPLE, request_only=True)],
        responses={
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="The decided payload.",
                examples=[OpenApiExample("Decided", value=RESPONSE_EXAMPLE)],
            ),
            400: OpenApiResponse(description="A field and why (JSON `error`)."),
            401: OpenApiResponse(description="An unknown or revoked key (JSON `error`)."),
            413: OpenApiResponse(description="The body is larger than `SDK_MAX_BODY_BYTES` (1 MiB)."),
            429: OpenApiResponse(
                description="More than `SDK_RATE_LIMIT_PER_MINUTE` requests from the key this minute; "
                "`Retry-After` in seconds."
            ),
            503: OpenApiResponse(description="The flag configuration is unavailable; retry shortly."),
        },
    )
    def post(self, request, client_key: str):  # pragma: no cover - dispatch answers; for the schema only
        raise NotImplementedError
