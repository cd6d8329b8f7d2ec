"""Which remote ICE candidates the media server may send connectivity checks to (pure policy).

A client names its candidates; aioice then sends STUN binding requests to each. Unfiltered, a client could
make the media server send packets to its own loopback services, to link-local addresses (cloud metadata at
169.254.169.254) or to the server's own ports: a reflector. Refused, and silently ignored (the client's
other candidates still work):

* unspecified, multicast, reserved, loopback and link-local addresses;
* the media server's own ICE and announced addresses;
* private ranges (10/8, 172.16/12, 192.168/16, 100.64/10 CGNAT, fc00::/7) when ``block_private`` is on
  (``MEDIA_ICE_BLOCK_PRIVATE=1``). Off by default: clients in the same private network (an office, the
  test harness's network namespaces at 10.231.x.2) are legitimate.

A server whose own ICE addresses are all loopback (development, the tests, the benchmarks) can only ever
reach peers on loopback: it allows loopback peers (not its own addresses, though: the same host's other
services stay out of reach only by port, which aioice does not let us check).
Hostname candidates (mDNS ``*.local``) are left to aioice.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

_PRIVATE = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class IcePolicy:
    own: frozenset[str] = frozenset()
    allow_loopback: bool = False
    block_private: bool = False

    @classmethod
    def for_server(cls, *, ice_addresses: Iterable[str], announced: Iterable[str], block_private: bool) -> IcePolicy:
        addresses = [a for a in ice_addresses if a]
        parsed = [_ip(a) for a in addresses]
        loopback_only = bool(parsed) and all(a is not None and a.is_loopback for a in parsed)
        own = frozenset(str(a) for a in (*parsed, *(_ip(x) for x in announced)) if a is not None)
        return cls(
            own=own - ({"127.0.0.1", "::1"} if loopback_only else set()),
            allow_loopback=loopback_only,
            block_private=block_private,
        )

    def allows(self, host: str) -> bool:
        """Whether checks may be sent to the candidate address ``host`` (a hostname is left to aioice)."""
        address = _ip(host)
        if address is None:
            return True
        if str(address) in self.own:
            return False
        if address.is_loopback:
            return self.allow_loopback
        if address.is_unspecified or address.is_multicast or address.is_link_local or address.is_reserved:
            return False
        if self.block_private and any(address.version == n.version and address in n for n in _PRIVATE):
            return False
        return True


# a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
_CANDIDATE_LINE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) ")


def filter_sdp_candidates(sdp: str, policy: IcePolicy) -> str:
    """``sdp`` without the ``a=candidate`` lines whose address ``policy`` refuses (``sdp`` itself if none is).

    Every subscribe answer passes here (a join re-offers the room): only candidate lines are matched, and
    each address is judged once (a bundled answer repeats its candidates on every m-line).
    """
    if "a=candidate:" not in sdp:
        return sdp
    eol = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(eol)
    allowed: dict[str, bool] = {}
    kept = []
    for line in lines:
        if line.startswith("a=candidate:"):
            match = _CANDIDATE_LINE.match(line)
            if match is not None:
                host = match.group(1)
                verdict = allowed.get(host)
                if verdict is None:
                    verdict = allowed[host] = policy.allows(host)
                if not verdict:
                    continue
        kept.append(line)
    return sdp if len(kept) == len(lines) else eol.join(kept)
