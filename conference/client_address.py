"""The client's address, trusting ``X-Forwarded-For`` only from our own proxies.

``TRUSTED_PROXIES`` (settings, CIDRs) lists the reverse proxies and load balancers in front of the web
processes. The peer address (``REMOTE_ADDR``) is the client unless the peer is one of them; then the
``X-Forwarded-For`` chain is walked from the right (the hop our proxy appended) past every trusted hop, and
the first untrusted address is the client. A client can prepend anything it likes to the header, but it
cannot change what our proxy appended, so the right-most untrusted hop is the only value it cannot forge.
Every throttle (``conference.throttles``) keys on this address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs if cidr.strip())


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (or single addresses) to networks; raises ValueError on a malformed one."""
    return _networks(tuple(cidrs))


def _address(value: str) -> IPAddress | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[v6]:port"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "v4:port"
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address_from(peer: str, forwarded_for: str, trusted: Iterable[IPNetwork]) -> str:
    """The client address given the TCP peer and the ``X-Forwarded-For`` value (pure; see the module doc).

    An empty or malformed peer gives ``"unknown"`` (all such requests then share one throttle bucket). When
    every hop is trusted the left-most one is the client; a malformed hop ends the walk at the last good one.
    """
    trusted = tuple(trusted)
    current = _address(peer)
    if current is None:
        return "unknown"

    def is_trusted(address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in trusted)

    if not is_trusted(current):
        return str(current)
    for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
        address = _address(hop)
        if address is None:
            break
        current = address
        if not is_trusted(address):
            break
    return str(current)


def client_address(request: HttpRequest) -> str:
    """The address of the client that sent ``request`` (see the module doc)."""
    return client_address_from(
        request.META.get("REMOTE_ADDR", ""),
        request.META.get("HTTP_X_FORWARDED_FOR", ""),
        parse_networks(settings.TRUSTED_PROXIES),
    )


def scope_client_address(scope: Mapping[str, Any]) -> str:
    """The same for an ASGI scope (the room socket)."""
    client = scope.get("client") or ("", 0)
    headers = dict(scope.get("headers") or [])
    forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1")
    return client_address_from(str(client[0]), forwarded, parse_networks(settings.TRUSTED_PROXIES))
