"""The edge's lean lane (features.sdk.middleware, point 5): OFREP served without the middleware it never uses,
and with everything the full stack gives every answer."""

import json
import re

import pytest
from django.conf import settings as django_settings
from django.contrib.sessions.middleware import SessionMiddleware
from django.test import Client

from features.sdk import ofrep as ofrep_views
from features.sdk.middleware import LEAN_LANE_KEEPS, LEAN_LANE_SKIPS

pytestmark = pytest.mark.django_db

OFREP_FLAG = "/ofrep/v1/evaluate/flags/only_in_a"
BODY = json.dumps({"context": {"targetingKey": "u-1", "plan": "pro"}})


def ofrep(key: str, path: str = OFREP_FLAG, **extra):
    return Client().post(
        path, BODY, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}", **extra
    )


def test_lean_lane__middleware_after_the_edge__each_kept_or_skipped_on_purpose():
    # A middleware added after the edge must be placed in the lane (kept) or skipped, knowingly.
    after = django_settings.MIDDLEWARE[
        django_settings.MIDDLEWARE.index("features.sdk.middleware.SdkEdgeMiddleware") + 1 :
    ]
    assert sorted(after) == sorted(LEAN_LANE_KEEPS + LEAN_LANE_SKIPS)


def test_lean_lane__ofrep__served_without_the_session_middleware(two_environments, monkeypatch):
    def refuse(self, request):
        raise AssertionError("the session middleware ran")

    monkeypatch.setattr(SessionMiddleware, "process_request", refuse)
    response = ofrep(two_environments.key_a)
    assert response.status_code == 200, response.content
    assert response.json()["value"] is True


def test_lean_lane__ofrep__headers_of_the_full_stack(two_environments):
    response = ofrep(two_environments.key_a)
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Content-Length"] == str(len(response.content))
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware, outside the lane


def test_lean_lane__host_not_allowed__400_as_on_every_path(two_environments, settings):
    settings.ALLOWED_HOSTS = ["flags.example.com"]
    assert ofrep(two_environments.key_a, HTTP_HOST="evil.example.net").status_code == 400
    assert ofrep(two_environments.key_a, HTTP_HOST="flags.example.com").status_code == 200


def test_lean_lane__disallowed_user_agent__403(two_environments, settings):
    settings.DISALLOWED_USER_AGENTS = [re.compile("badbot")]
    assert ofrep(two_environments.key_a, HTTP_USER_AGENT="badbot/1.0").status_code == 403


def test_lean_lane__view_raises__500_json_with_cors_headers(two_environments, monkeypatch):
    two_environments.a.cors_allowed_origins = "https://shop.example.com"
    two_environments.a.save()

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(ofrep_views, "evaluate_feature", broken)
    client = Client(raise_request_exception=False)
    response = client.post(
        OFREP_FLAG,
        BODY,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {two_environments.key_a}",
        HTTP_ORIGIN="https://shop.example.com",
    )
    assert response.status_code == 500
    assert response.json() == {"detail": "A server error occurred; it has been logged."}
    assert response.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"


def test_lean_lane__unknown_ofrep_path__json_404_from_the_full_stack(two_environments):
    response = ofrep(two_environments.key_a, path="/ofrep/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
