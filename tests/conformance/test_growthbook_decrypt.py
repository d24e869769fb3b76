"""GrowthBook's ``decrypt`` cases (``growthbook/decrypt_cases.json``, MIT, from the same suite as
``cases.json``) through our ``features.encryption``, and what we encrypt decrypted by an
independent implementation: GrowthBook's Python SDK's own ``decrypt``."""

import base64
import json
import random
from pathlib import Path

import pytest
from growthbook.growthbook import decrypt as sdk_decrypt

from features.encryption import decrypt, encrypt, encryption_key_generate, encryption_key_valid

CASES = json.loads((Path(__file__).parent / "growthbook" / "decrypt_cases.json").read_text(encoding="utf-8"))


def test_decrypt_cases__vendored__the_published_count() -> None:
    assert CASES["specVersion"] == "0.8.0" and len(CASES["decrypt"]) == 10


@pytest.mark.parametrize(
    ("name", "encrypted", "key", "expected"), CASES["decrypt"], ids=[c[0] for c in CASES["decrypt"]]
)
def test_decrypt__growthbook_case__same_plaintext_or_none(name, encrypted, key, expected) -> None:
    assert decrypt(encrypted, key) == expected


def test_encrypt__random_texts__the_python_sdk_decrypts_them() -> None:
    rng = random.Random(2026)
    for _ in range(200):
        key = encryption_key_generate()
        text = "".join(rng.choice('abc{}":,é€😀 \n') for _ in range(rng.randint(0, 300)))
        encrypted = encrypt(text, key)
        iv, _, body = encrypted.partition(".")
        assert len(base64.b64decode(iv)) == 16 and len(base64.b64decode(body)) % 16 == 0
        assert sdk_decrypt(encrypted, key) == text
        assert decrypt(encrypted, key) == text


def test_encrypt__same_text_same_key__same_bytes_and_other_text_other_iv() -> None:
    key = encryption_key_generate()
    assert encrypt('{"a":1}', key) == encrypt('{"a":1}', key)  # ETags hold across processes
    assert encrypt('{"a":1}', key).split(".")[0] != encrypt('{"a":2}', key).split(".")[0]
    assert decrypt(encrypt('{"a":1}', key), encryption_key_generate()) != '{"a":1}'


def test_encryption_key__generated_aes_128__valid_and_aes_256_too() -> None:
    key = encryption_key_generate()
    assert len(base64.b64decode(key)) == 16 and encryption_key_valid(key)
    aes_256 = base64.b64encode(bytes(range(32))).decode()
    assert decrypt(encrypt("x", aes_256), aes_256) == "x"
    assert not encryption_key_valid("Zvwv/+uhpFDznSX39Yjg==")  # 15 bytes
    with pytest.raises(ValueError, match="16 or 32 bytes"):
        encrypt("x", "not base64!")
