"""Who is really calling: the TCP peer, or — only behind a *trusted* proxy — the address the
proxy reports in ``X-Forwarded-For``.  Anything else a client writes in forwarding headers is
ignored (header spoofing would otherwise let a caller choose its own network zone)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)


class ClientAddressResolver:
    def __init__(self, trusted_proxies: Iterable[str], zones: Mapping[str, Iterable[str]]) -> None:
        self.trusted = parse_networks(trusted_proxies)
        self.zones = [(name, parse_networks(nets)) for name, nets in zones.items()]
        self.zone_of = lru_cache(maxsize=65536)(self._zone_of)

    def _in(self, ip: str, nets: tuple[Network, ...]) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in n for n in nets)

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        if peer is None or not forwarded_for or not self._in(peer, self.trusted):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",")]
        # walk from the nearest hop outwards; the first address not ours is the client
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return peer  # a malformed chain is not evidence of anything
            if not self._in(hop, self.trusted):
                return hop
        return hops[0] if hops else peer

    def _zone_of(self, ip: str | None) -> str | None:
        if ip is None:
            return None
        for name, nets in self.zones:
            if self._in(ip, nets):
                return name
        return "external"
