"""Device posture through a real gateway: a rule with ``device_in`` lets a request through only
with a fresh statement signed by a configured attester for this very caller."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ztgw.crypto.sm2 import SM2PrivateKey

from .conftest import RunningGateway, start_processes, stop_processes

BUNDLE = """\
bundle: posture-test
version: "1"
rules:
  - id: persons-from-managed-devices
    effect: allow
    subjects: [role:population-officer]
    datasets: [population.persons]
    actions: [read]
    when: {device_in: [managed, compliant]}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, SM2PrivateKey]]:
    tmp = tmp_path_factory.mktemp("ztgw-posture")
    bundle = tmp / "bundle"
    bundle.mkdir()
    (bundle / "policy.yaml").write_text(BUNDLE, encoding="utf-8")
    key = SM2PrivateKey.generate()
    pub = tmp / "edr.pub.pem"
    pub.write_bytes(key.public_key().to_pem())
    gw, procs = start_processes(tmp / "home", {
        "ZTGW_POLICY_BUNDLE": str(bundle),
        "ZTGW_DEVICE_ATTESTERS": json.dumps({"edr": str(pub)})})
    try:
        yield gw, key
    finally:
        stop_processes(procs)


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def statement(key: SM2PrivateKey, sub: str, posture: str = "managed") -> str:
    now = int(time.time())
    payload = _b64(json.dumps({"iss": "edr", "sub": sub, "device": "pc-0042", "posture": posture,
                               "iat": now, "exp": now + 120}).encode())
    return f"{payload}.{_b64(key.sign(payload.encode()))}"


def test_only_a_signed_managed_device_of_this_caller_reads(
        gw: tuple[RunningGateway, SM2PrivateKey], tmp_path: Path) -> None:
    g, key = gw
    url = f"{g.base}/api/population/persons?size=1"
    auth = {"Authorization": f"Bearer {g.token('demo-police')}"}

    def get(**headers: str) -> httpx.Response:
        return httpx.get(url, headers={**auth, **headers}, timeout=10)

    assert get().status_code == 403  # no statement: device unknown
    ok = get(**{"X-Device-Posture": statement(key, "demo-police")})
    assert ok.status_code == 200, ok.text
    assert get(**{"X-Device-Posture": statement(key, "demo-police", "unmanaged")}).status_code == 403
    # another caller's statement, a stranger's signature: not taken
    replayed = get(**{"X-Device-Posture": statement(key, "demo-analytics")})
    forged = get(**{"X-Device-Posture": statement(SM2PrivateKey.generate(), "demo-police")})
    assert replayed.status_code == 403 and forged.status_code == 403
    assert replayed.json()["error"] == "access_denied"
    allowed = g.audit_event(ok.headers["x-request-id"])
    assert allowed["ztgw"]["device"] == {"id": "pc-0042", "posture": "managed", "attester": "edr"}
    assert allowed["rule"]["id"] == "persons-from-managed-devices"
    assert g.audit_event(replayed.headers["x-request-id"])["ztgw"]["device"] == {
        "error": "not_for_this_caller"}
    assert g.audit_event(forged.headers["x-request-id"])["ztgw"]["device"] == {"error": "bad_signature"}
