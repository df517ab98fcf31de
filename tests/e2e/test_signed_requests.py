"""AK/SK request signatures with SM2 against a running gateway: a signed request reads data as
its application; tampering, stale timestamps, replays, unknown and disabled keys are 401."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from ztgw.crypto import sm2
from ztgw.gateway.dataplane.signatures import sign_request

from .conftest import RunningGateway

pytestmark = pytest.mark.e2e
PATH = "/api/population/persons"


@pytest.fixture(scope="module")
def key(gateway: RunningGateway, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, sm2.SM2PrivateKey]:
    priv = sm2.generate_key()
    pub = tmp_path_factory.mktemp("ak") / "pub.pem"
    pub.write_bytes(priv.public_key().to_pem())
    out = gateway.cli_json("apikeys", "add", "--client-id", "demo-analytics", "--public-key", str(pub),
                           "--json")
    return out["key_id"], priv


def _call(gw: RunningGateway, auth: str, query: str = "size=2") -> httpx.Response:
    return httpx.get(f"{gw.base}{PATH}?{query}", headers={"Authorization": auth})


def test_signed_request_reads_as_the_application(gateway: RunningGateway,
                                                 key: tuple[str, sm2.SM2PrivateKey]) -> None:
    kid, priv = key
    auth = sign_request(priv, kid, "GET", PATH, [("size", "2")])
    r = _call(gateway, auth)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == 2 and "*" in items[0]["id_number"]  # demo-analytics' masks apply
    # the same signed request again is a replay
    again = _call(gateway, auth)
    assert again.status_code == 401 and again.json()["error"] == "invalid_signature"


def test_tampering_and_staleness(gateway: RunningGateway, key: tuple[str, sm2.SM2PrivateKey],
                                 tmp_path: Path) -> None:
    kid, priv = key
    # the query was changed after signing
    auth = sign_request(priv, kid, "GET", PATH, [("size", "2")])
    assert _call(gateway, auth, "size=200").status_code == 401
    # an old timestamp
    old = sign_request(priv, kid, "GET", PATH, [("size", "2")], timestamp=int(time.time()) - 3600)
    assert _call(gateway, old).status_code == 401
    # someone else's key under our key id
    other = sign_request(sm2.generate_key(), kid, "GET", PATH, [("size", "2")])
    assert _call(gateway, other).status_code == 401
    # an unknown key id, and garbage
    assert _call(gateway, sign_request(priv, "ak-0000000000000000", "GET", PATH,
                                       [("size", "2")])).status_code == 401
    assert _call(gateway, "ZTGW-SM2-SM3 keyId=x,signature=%%%").status_code == 401


def test_disabled_key_stops_within_a_second(gateway: RunningGateway, tmp_path: Path) -> None:
    priv = sm2.generate_key()
    pub = tmp_path / "pub.pem"
    pub.write_bytes(priv.public_key().to_pem())
    kid = gateway.cli_json("apikeys", "add", "--client-id", "demo-police", "--public-key", str(pub),
                           "--json")["key_id"]
    assert _call(gateway, sign_request(priv, kid, "GET", PATH, [("size", "2")])).status_code == 200
    assert gateway.cli("apikeys", "disable", kid).returncode == 0
    time.sleep(1.2)
    r = _call(gateway, sign_request(priv, kid, "GET", PATH, [("size", "2")]))
    assert r.status_code == 401
