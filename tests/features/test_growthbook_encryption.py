"""Payload encryption per SDK key: the real SDKs decrypt what we encrypt to the same features.

A key made with encryption (``create_sdk_key --encrypt``, the admin's checkbox) answers
``GET /api/features/{key}`` with an empty ``features`` and GrowthBook's ``encryptedFeatures``; the
Python SDK (``decryption_key``) and the JavaScript SDK (``decryptionKey``) must decrypt it to exactly
the features an unencrypted key reads, and evaluate them as ``/api/v1/evaluate`` does.
"""

import json
import random
import re

import pytest
from django.core.management import call_command
from django.urls import reverse
from growthbook import GrowthBook
from rest_framework.test import APIClient

from features.encryption import decrypt
from features.models import Environment, SdkKey, hash_sdk_key
from features.services import sdk_key_create
from tests.features.growthbook_flags import (
    evaluate_ours,
    experiment_variant,
    payload_flags,
    random_unit,
    run_node_sdk,
    same_value,
)
from tests.features.test_growthbook_sdk import close_python_sdk_pool


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_encrypted_payload__python_and_javascript_sdks__decrypt_to_the_same_features(
    live_server, fresh_decision_plane, growthbook_flags, growthbook_node, tmp_path
):
    flags = growthbook_flags
    production = Environment.objects.get(key="production")
    _, plain_key = sdk_key_create(environment=production, name="plain", kind="client")
    encrypted, client_key = sdk_key_create(environment=production, name="web", kind="client", encrypt=True)
    _, secret_key = sdk_key_create(environment=production, name="server")
    plain = APIClient().get(f"/api/features/{plain_key}").json()
    response = APIClient().get(f"/api/features/{client_key}")
    body = response.json()
    # The rules are not readable without the key; our decrypt gives the plain payload's features.
    assert body["features"] == {} and set(body) == {"status", "features", "encryptedFeatures", "dateUpdated"}
    assert "f_force" not in response.content.decode()
    assert json.loads(decrypt(body["encryptedFeatures"], encrypted.encryption_key)) == plain["features"]
    assert APIClient().get(f"/api/features/{client_key}")["ETag"] == response["ETag"]

    # The Python SDK decrypts it to the same features as it reads through the plain key
    def sdk_features(key: str, **options) -> dict:
        gb = GrowthBook(api_host=live_server.url, client_key=key, **options)
        gb.load_features()
        features = {key: feature.to_dict() for key, feature in gb.get_features().items()}
        gb.destroy()
        return features

    from_plain = sdk_features(plain_key)
    assert payload_flags(from_plain) == set(flags)
    assert sdk_features(client_key, decryption_key=encrypted.encryption_key) == from_plain
    close_python_sdk_pool()

    # The JavaScript SDK decrypts it and evaluates units as /api/v1/evaluate does
    rng = random.Random(99)
    units = [random_unit(rng) for _ in range(500)]
    server = APIClient()
    server.credentials(HTTP_AUTHORIZATION=f"Bearer {secret_key}")
    ours = evaluate_ours(server, units)
    node = run_node_sdk(
        growthbook_node,
        {
            "apiHost": live_server.url,
            "clientKey": client_key,
            "decryptionKey": encrypted.encryption_key,
            "mode": "local",
            "flags": flags,
            "units": units,
        },
        tmp_path,
    )
    assert payload_flags(node["features"]) == set(flags)
    differences = [
        (unit_id, flag, value, variant, answer[flag])
        for (unit_id, _), answer, row in zip(units, ours, node["results"], strict=True)
        for flag, (value, variant) in zip(flags, row, strict=True)
        if not same_value(value, answer[flag]["value"]) or variant != experiment_variant(answer[flag])
    ]
    assert differences == []

    # With a wrong key the JavaScript SDK gets no features: every flag is unknown to it (null)
    wrong = run_node_sdk(
        growthbook_node,
        {"apiHost": live_server.url, "clientKey": client_key, "decryptionKey": "Zvwv/+uhpFDznZ6SX39Yjg==",
         "mode": "local", "flags": flags, "units": units[:1]},
        tmp_path,
    )  # fmt: skip
    assert wrong["features"] == [] and wrong["results"] == [[[None, None]] * len(flags)]


@pytest.mark.django_db
def test_create_sdk_key__encrypt__decryption_key_printed_and_key_alone_on_last_line(capsys):
    call_command("create_sdk_key", "production", "--client", "--encrypt")
    lines = capsys.readouterr().out.strip().splitlines()
    key = SdkKey.objects.get(hashed_key=hash_sdk_key(lines[-1]))
    assert key.encryption_key and f"Decryption key (the SDK's decryptionKey): {key.encryption_key}" in lines
    call_command("create_sdk_key", "production", "--client")
    plain = capsys.readouterr().out.strip().splitlines()
    assert SdkKey.objects.get(hashed_key=hash_sdk_key(plain[-1])).encryption_key == ""
    assert not any("Decryption key" in line for line in plain)


@pytest.mark.django_db
def test_admin_sdk_key_add__encrypt_checked__decryption_key_shown_and_payload_encrypted(
    client, superuser, fresh_decision_plane
):
    client.force_login(superuser)
    env = Environment.objects.get(key="production")
    response = client.post(
        reverse("admin:features_sdkkey_add"),
        {"environment": env.pk, "name": "web", "kind": "client", "encrypt_payload": "on"},
        follow=True,
    )
    page = response.content.decode()
    raw = re.search(r"(pk_[A-Za-z0-9_\-]{20,})", page).group(1)
    key = SdkKey.objects.get()
    assert key.encryption_key and key.encryption_key in page
    change = client.get(reverse("admin:features_sdkkey_change", args=[key.pk])).content.decode()
    assert key.encryption_key in change and "encrypt_payload" not in change
    assert "encryptedFeatures" in APIClient().get(f"/api/features/{raw}").json()
