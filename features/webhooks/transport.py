"""One webhook POST over HTTP(S), to an address checked beforehand, with a bounded time.

urllib3 (requests' engine) is used directly so the connection goes to the address ``addresses``
checked, while the ``Host`` header, TLS's server name (SNI) and the certificate check keep the URL's
host name. Redirects are not followed: a receiver answers where it was registered.
"""

from __future__ import annotations

import dataclasses
import time
from urllib.parse import urlsplit

import certifi
import urllib3

from features.webhooks.addresses import receiver_addresses

RESPONSE_BODY_LIMIT = 1000  # characters of the receiver's answer kept in the delivery log
USER_AGENT = "experimentation-platform-webhooks/1"


@dataclasses.dataclass(frozen=True)
class PostResult:
    status: int | None  # HTTP status, None when no answer came (network error, timeout)
    body: str  # the start of the answer's body, or the error in words
    duration_ms: int
    error: str = ""


def post(
    url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool
) -> PostResult:
    """POST ``body`` to ``url``; never raises for a receiver's failure (see ``PostResult``).
    ``addresses.ReceiverRefused`` propagates: the URL may not be reached at all."""
    scheme, host, port, addresses = receiver_addresses(url, allow_private=allow_private)
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    default_port = 443 if scheme == "https" else 80
    host_header = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets
    all_headers = {
        "Host": host_header if port == default_port else f"{host_header}:{port}",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **headers,
    }
    started = time.perf_counter()
    error = ""
    for address in addresses:  # the resolver's order, as a browser would try them
        if scheme == "https":
            pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
                address,
                port,
                server_hostname=host,
                assert_hostname=host,
                cert_reqs="CERT_REQUIRED",
                ca_certs=certifi.where(),
                maxsize=1,
            )
        else:
            pool = urllib3.HTTPConnectionPool(address, port, maxsize=1)
        try:
            response = pool.urlopen(
                "POST",
                target,
                body=body,
                headers=all_headers,
                timeout=urllib3.Timeout(total=timeout),
                retries=False,
                redirect=False,
                preload_content=False,
                assert_same_host=False,
            )
            try:
                text = response.read(RESPONSE_BODY_LIMIT * 4, decode_content=True).decode("utf-8", "replace")
            finally:
                response.release_conn()
            return PostResult(
                status=response.status,
                body=text[:RESPONSE_BODY_LIMIT],
                duration_ms=round((time.perf_counter() - started) * 1000),
            )
        except urllib3.exceptions.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            pool.close()
    return PostResult(
        status=None,
        body="",
        duration_ms=round((time.perf_counter() - started) * 1000),
        error=error[:RESPONSE_BODY_LIMIT],
    )
