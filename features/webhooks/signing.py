"""The webhook signature: ``X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The HMAC is keyed with the subscription's secret and computed over the UTF-8 bytes of
``"<t>.<raw body>"``: the timestamp is signed with the body, so a captured delivery cannot be replayed
later with a new timestamp. Receivers recompute it over the raw body they received (before any JSON
parsing), compare in constant time, and refuse a timestamp older than a tolerance (five minutes is
usual). Several ``v1=`` entries may appear while a secret is rotated; one matching is enough.

Pure logic: no Django, so receivers and tests can use it as the reference.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """A signature header that does not verify, with the reason."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` keyed with ``secret``."""
    message = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The value of the ``X-Signature`` header for ``body`` sent at ``timestamp``."""
    return f"t={int(timestamp)},v1={signature(secret, timestamp, body)}"


def signature_verify(
    header: str,
    body: bytes,
    secret: str,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check a received ``X-Signature`` header; the signed timestamp, or ``SignatureError`` saying why."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("the timestamp t is not a whole number of seconds") from None
        elif name == "v1":
            candidates.append(value)
    if timestamp is None:
        raise SignatureError("no timestamp (t=...) in the header")
    if not candidates:
        raise SignatureError("no v1= signature in the header")
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_seconds:
        raise SignatureError(f"the timestamp is more than {tolerance_seconds} s away from now")
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("the signature does not match the body and the secret")
    return timestamp
