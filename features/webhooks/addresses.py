"""Which receivers a webhook may reach: every address by default, or only public ones.

A self-hosted platform usually talks to internal services (a chat bridge on 10.x, a deploy hook on
the same host), so private and loopback receivers are allowed by default. Where the people who can
create webhooks should not reach the internal network through the platform (server-side request
forgery), ``WEBHOOK_ALLOW_PRIVATE=false`` refuses every receiver whose host resolves to a private,
loopback, link-local, reserved, multicast or unspecified address. The check runs when a
subscription is saved and again at each delivery, on the addresses the name resolves to then; the
delivery connects to the address that was checked (``transport``), so a name that changes its
answer between the check and the connection (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class ReceiverRefused(ValueError):
    """A receiver URL that may not be used, with the reason."""


def url_parts(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, or ``ReceiverRefused`` saying what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ReceiverRefused("not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ReceiverRefused("the URL must start with http:// or https://")
    if not parts.hostname:
        raise ReceiverRefused("the URL has no host")
    if parts.username or parts.password:
        raise ReceiverRefused("put credentials in the receiver, not in the URL (they would show in logs)")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def host_resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to now (IPv4 and IPv6), in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ReceiverRefused(f"the host {host} does not resolve ({exc})") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def receiver_addresses(url: str, *, allow_private: bool) -> tuple[str, str, int, list[str]]:
    """(scheme, host, port, addresses to connect to) for ``url``; ``ReceiverRefused`` when the URL is
    malformed, does not resolve, or (with ``allow_private`` off) reaches a non-public address."""
    scheme, host, port = url_parts(url)
    addresses = host_resolve(host, port)
    if not allow_private:
        refused = [address for address in addresses if not address_is_public(address)]
        if refused:
            raise ReceiverRefused(
                f"{host} resolves to {', '.join(refused)}, a private, loopback or link-local address; "
                "this platform is set to reach public addresses only (WEBHOOK_ALLOW_PRIVATE=false)"
            )
    return scheme, host, port, addresses
