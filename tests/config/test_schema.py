import subprocess
import sys

import pytest
from django.urls import reverse


def test_openapi_schema__generates__no_warnings_and_valid(tmp_path):
    # A separate process, so drf-spectacular's warnings are not hidden by an already-warm cache.
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "spectacular",
            "--fail-on-warn",
            "--validate",
            "--file",
            str(tmp_path / "s.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
    text = (tmp_path / "s.yml").read_text()
    for path in [
        "/api/v1/experiments/{key}/start/",
        "/api/v1/metrics/",
        "/api/v1/features/",
        "/api/v1/environments/",
    ]:
        assert path in text


@pytest.mark.django_db
def test_openapi_schema__every_operation__has_description_example_and_security(client):
    schema = client.get(reverse("schema"), HTTP_ACCEPT="application/json").json()
    assert {"tokenAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary") or operation.get("description"), (path, method)
            has_example = any(
                "examples" in content or "example" in content
                for part in [operation.get("requestBody", {}), *operation.get("responses", {}).values()]
                for content in part.get("content", {}).values()
            )
            assert has_example or method in ("delete",), (path, method)


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/docs", "/api/redoc", "/api/schema"])
def test_docs_pages__render(client, url):
    assert client.get(url).status_code == 200
