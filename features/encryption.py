"""GrowthBook's payload encryption (``encryptedFeatures``): AES-CBC, PKCS#7. Pure: no ORM, no I/O.

GrowthBook's SDKs decrypt an encrypted payload with the ``decryptionKey`` they are given
(``build-your-own-sdk.mdx``, "Encrypted Features" and ``decrypt``):

- the key is 16 random bytes (AES-128, what GrowthBook issues and what its Python SDK accepts; the
  JavaScript SDK's WebCrypto also takes 32), written in standard base64;
- the plaintext is the JSON of ``features``, UTF-8, padded with PKCS#7 to the 16-byte block;
- the ciphertext travels as ``"<base64 iv>.<base64 ciphertext>"``.

The IV is derived from the key and the plaintext (the first 16 bytes of HMAC-SHA256(key,
plaintext)) rather than drawn at random: the same configuration then encrypts to the same bytes in
every process, so the payload's ETag holds across processes, and all it tells an observer is
whether two payloads are equal, which ``dateUpdated`` and the ETag tell anyway. Different plaintexts
get unrelated IVs, which is what CBC needs.

``decrypt`` answers ``None`` for anything that does not decrypt (wrong key, damaged text), as the
specification's ``decrypt`` cases expect; it does not parse the JSON.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["KEY_BYTES", "decrypt", "encrypt", "encryption_key_generate", "encryption_key_valid"]

KEY_BYTES = 16  # AES-128, as GrowthBook issues them (its Python SDK decrypts only AES-128)
_BLOCK_BITS = 128


def encryption_key_generate() -> str:
    """A new random AES-128 key in base64 (24 characters), as an SDK's ``decryptionKey`` takes it."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def _key_bytes(key: str) -> bytes | None:
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) in (16, 32) else None


def encryption_key_valid(key: str) -> bool:
    """A base64 AES key of 16 (AES-128) or 32 bytes (AES-256)."""
    return _key_bytes(key) is not None


def encrypt(plaintext: str, key: str) -> str:
    """``plaintext`` encrypted with the base64 ``key``, as ``"<base64 iv>.<base64 ciphertext>"``."""
    secret = _key_bytes(key)
    if secret is None:
        raise ValueError("The encryption key must be base64 of 16 or 32 bytes.")
    data = plaintext.encode("utf-8")
    iv = hmac.new(secret, data, hashlib.sha256).digest()[:16]
    padder = padding.PKCS7(_BLOCK_BITS).padder()
    padded = padder.update(data) + padder.finalize()
    encryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return base64.b64encode(iv).decode("ascii") + "." + base64.b64encode(ciphertext).decode("ascii")


def decrypt(encrypted: str, key: str) -> str | None:
    """The plaintext of ``"<base64 iv>.<base64 ciphertext>"`` under the base64 ``key``, or None."""
    secret = _key_bytes(key)
    if secret is None or "." not in encrypted:
        return None
    iv_text, _, body_text = encrypted.partition(".")
    try:
        iv = base64.b64decode(iv_text, validate=True)
        ciphertext = base64.b64decode(body_text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(iv) != 16 or not ciphertext or len(ciphertext) % 16:
        return None
    decryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(_BLOCK_BITS).unpadder()
    try:
        data = unpadder.update(padded) + unpadder.finalize()
        return data.decode("utf-8")
    except ValueError:  # bad padding (a wrong key, mostly) or not UTF-8
        return None
