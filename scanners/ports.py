"""``ztgw scan ports``: TCP connect scan of allowed hosts for high-risk ports.

A plain ``connect()`` with a short timeout per port (no raw packets, no root), a bounded
number in flight, and only to hosts :func:`.targets.check_target` allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import asdict, dataclass
from typing import Any

from .errors import BadInput
from .targets import check_target

# port → (service, why it is high-risk): the list of the national drill plans and CIS
HIGH_RISK_PORTS: dict[int, tuple[str, str]] = {
    21: ("ftp", "clear-text credentials"), 22: ("ssh", "remote administration"),
    23: ("telnet", "clear-text remote shell"), 25: ("smtp", "open relay / user enumeration"),
    111: ("rpcbind", "RPC service discovery"), 135: ("msrpc", "Windows RPC, lateral movement"),
    137: ("netbios-ns", "NetBIOS name service"), 139: ("netbios-ssn", "SMB over NetBIOS"),
    161: ("snmp", "default communities"), 389: ("ldap", "directory, anonymous binds"),
    445: ("smb", "SMB: EternalBlue class exploits"), 873: ("rsync", "unauthenticated modules"),
    1099: ("java-rmi", "deserialisation"), 1433: ("mssql", "database exposed"),
    1521: ("oracle", "database exposed"), 2049: ("nfs", "file shares"),
    2181: ("zookeeper", "unauthenticated access"), 2375: ("docker", "unauthenticated Docker API"),
    2379: ("etcd", "cluster secrets"), 3306: ("mysql", "database exposed"),
    3389: ("rdp", "remote desktop"), 4848: ("glassfish", "admin console"),
    5000: ("docker-registry", "image registry"), 5432: ("postgresql", "database exposed"),
    5601: ("kibana", "log console"), 5900: ("vnc", "remote desktop, weak auth"),
    5984: ("couchdb", "database exposed"), 6379: ("redis", "unauthenticated by default"),
    7001: ("weblogic", "deserialisation"), 8009: ("ajp", "Ghostcat"),
    8161: ("activemq", "admin console"), 8848: ("nacos", "default credentials"),
    9000: ("php-fpm", "FastCGI exposed"), 9092: ("kafka", "unauthenticated broker"),
    9200: ("elasticsearch", "unauthenticated data"), 10250: ("kubelet", "node takeover"),
    11211: ("memcached", "amplification, data leak"), 27017: ("mongodb", "database exposed"),
    50070: ("hadoop", "HDFS web UI"),
}
MAX_PORTS = 2048  # per host per run
MAX_HOSTS = 64
CONCURRENCY = 64
TIMEOUT = 0.5  # seconds per connect: loopback or a test host answers at once


@dataclass(frozen=True, slots=True)
class PortFinding:
    host: str
    address: str
    port: int
    service: str
    risk: str
    state: str  # open (closed/filtered ports are not reported)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_ports(spec: str | None) -> list[int]:
    """``None`` → the high-risk list; else ``22,80,8000-8010``."""
    if not spec:
        return sorted(HIGH_RISK_PORTS)
    ports: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError as exc:
            raise BadInput(f"bad port range {part!r}") from exc
        if not (1 <= a <= b <= 65535):
            raise BadInput(f"bad port range {part!r}")
        ports.update(range(a, b + 1))
    if len(ports) > MAX_PORTS:
        raise BadInput(f"at most {MAX_PORTS} ports per scan")
    return sorted(ports)


async def _probe(addr: str, port: int, sem: asyncio.Semaphore, timeout: float) -> bool:
    async with sem:
        try:
            _r, w = await asyncio.wait_for(asyncio.open_connection(addr, port), timeout)
        except (OSError, TimeoutError):
            return False
        w.close()
        with contextlib.suppress(OSError):
            await w.wait_closed()
        return True


async def scan_ports_async(hosts: list[str], ports: list[int], *, allowed: tuple[str, ...] = (),
                           timeout: float = TIMEOUT) -> dict[str, Any]:
    if not hosts:
        raise BadInput("give at least one host")
    if len(hosts) > MAX_HOSTS:
        raise BadInput(f"at most {MAX_HOSTS} hosts per scan")
    targets = [(h, check_target(h, allowed)) for h in hosts]  # every host checked before any probe
    sem = asyncio.Semaphore(CONCURRENCY)
    started = time.monotonic()
    findings: list[PortFinding] = []
    for host, addr in targets:
        results = await asyncio.gather(*(_probe(addr, p, sem, timeout) for p in ports))
        for port, is_open in zip(ports, results, strict=True):
            if is_open:
                service, risk = HIGH_RISK_PORTS.get(port, ("unknown", "not in the high-risk list"))
                findings.append(PortFinding(host, addr, port, service, risk, "open"))
    return {
        "hosts": [h for h, _ in targets], "ports_checked": len(ports),
        "open": [f.as_dict() for f in findings],
        "high_risk_open": sum(1 for f in findings if f.port in HIGH_RISK_PORTS),
        "seconds": round(time.monotonic() - started, 3),
    }


def scan_ports(hosts: list[str], ports: list[int], *, allowed: tuple[str, ...] = (),
               timeout: float = TIMEOUT) -> dict[str, Any]:
    return asyncio.run(scan_ports_async(hosts, ports, allowed=allowed, timeout=timeout))
