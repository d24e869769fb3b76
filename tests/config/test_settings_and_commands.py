import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.urls import reverse

from features.models import SdkKey, hash_sdk_key


def _settings_process(show: str = "DEBUG", **env_overrides) -> subprocess.CompletedProcess:
    """Load the settings in a new process with ``env_overrides``; it prints the setting ``show``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ROLLUP_"))}
    env.update(env_overrides)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE','config.settings'); django.setup(); from django.conf import settings; "
            f"print(settings.{show})",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.slow  # starts Python processes of its own
def test_settings__debug_off_without_secret_key__improperly_configured():
    result = _settings_process(DJANGO_DEBUG="false")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "DJANGO_SECRET_KEY" in result.stderr


@pytest.mark.slow  # starts Python processes of its own
@pytest.mark.parametrize(
    "name, value",
    [
        ("RESULTS_BREAKDOWN_MAX_CONCURRENT", "0"),
        ("RESULTS_BREAKDOWN_WAIT_SECONDS", "-1"),
        ("ROLLUP_INCREMENTAL", "sometimes"),
        ("ROLLUP_INCREMENTAL_AUTO_MS", "-1"),
    ],
)
def test_settings__impossible_values__improperly_configured_naming_the_setting(name, value):
    result = _settings_process(**{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and name in result.stderr


@pytest.mark.slow  # starts Python processes of its own
@pytest.mark.parametrize(
    "value, mode", [(None, "auto"), ("true", "on"), ("False", "off"), (" On ", "on"), ("auto", "auto")]
)
def test_settings__rollup_incremental__read_as_auto_on_or_off(value, mode):
    result = _settings_process(
        show="ROLLUP_INCREMENTAL", **({} if value is None else {"ROLLUP_INCREMENTAL": value})
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == mode


@pytest.mark.slow  # starts Python processes of its own
def test_settings__debug_off_with_secret_key_and_hosts__loads():
    result = _settings_process(
        DJANGO_DEBUG="false", DJANGO_SECRET_KEY="x" * 50, DJANGO_ALLOWED_HOSTS="example.com"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.django_db
def test_create_sdk_key__environment__key_alone_on_last_line_and_authenticates(capsys, api_client):
    call_command("create_sdk_key", "production", "--name", "web")
    lines = capsys.readouterr().out.strip().splitlines()
    raw = lines[-1]
    key = SdkKey.objects.get(hashed_key=hash_sdk_key(raw))
    assert key.environment.key == "production"
    assert raw.startswith(key.prefix)
    assert raw not in key.prefix


@pytest.mark.django_db
def test_create_sdk_key__client__publishable_key_alone_on_last_line(capsys):
    call_command("create_sdk_key", "production", "--client")
    raw = capsys.readouterr().out.strip().splitlines()[-1]
    key = SdkKey.objects.get(hashed_key=hash_sdk_key(raw))
    assert key.kind == "client" and raw.startswith("pk_")
    call_command("create_sdk_key", "production")
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert SdkKey.objects.get(hashed_key=hash_sdk_key(secret)).kind == "secret" and secret.startswith("sdk_")


@pytest.mark.django_db
def test_create_sdk_key__unknown_environment__clear_error():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no environment 'moon'"):
        call_command("create_sdk_key", "moon")


@pytest.mark.django_db
def test_health__all_up__200_ok(client):
    response = client.get(reverse("health"))
    body = response.json()
    assert response.status_code == 200, body
    assert set(body["checks"]) == {"database", "cache", "clickhouse"}
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["cache"]["status"] == "ok"
