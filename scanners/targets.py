"""Which hosts a scan or a drill may touch: loopback, plus hosts the operator listed.

Resolution happens here once; every scanner connects to the resolved address it was
allowed, so a DNS answer cannot redirect a scan elsewhere between check and use.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from .errors import BadInput, TargetNotAllowed

LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")
LOOPBACK_V6 = ipaddress.ip_address("::1")


def resolve(host: str) -> str:
    host = host.strip().strip("[]")
    if not host or len(host) > 253:
        raise BadInput("a host name is needed (at most 253 characters)")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise BadInput(f"cannot resolve {host!r}: {exc}") from exc
    return str(infos[0][4][0])


def is_loopback(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    return ip in LOOPBACK_V4 if ip.version == 4 else ip == LOOPBACK_V6


def check_target(host: str, allowed: Iterable[str] = ()) -> str:
    """The address to use for ``host``; raises :class:`TargetNotAllowed` unless it is
    loopback or listed (by name or address) in ``allowed``."""
    addr = resolve(host)
    allow = {a.strip().strip("[]") for a in allowed}
    if is_loopback(addr) or host in allow or addr in allow:
        return addr
    raise TargetNotAllowed(
        f"{host} ({addr}) is not loopback and not in the allowed scan targets "
        "(ZTGW_SCAN_ALLOWED_HOSTS)")
