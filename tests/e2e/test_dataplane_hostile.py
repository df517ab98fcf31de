"""The data plane against hostile clients and a hostile upstream, over real HTTP (issue 7):
forged tokens, header spoofing, oversized and slow requests, an upstream that is down, slow,
broken, redirecting or flooding.  Each case gets a clear JSON error, never data, never a crash,
and an audit event."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from ztgw.gateway.dataplane.identity_header import HEADER, KEY_FILE, verify_identity_header

from .conftest import RunningGateway, free_port, start_processes, stop_processes
from .upstreams import AiohttpUpstream

pytestmark = pytest.mark.e2e
PERSONS = "/api/population/persons"
RECORD = {"id_number": "11010519491231002X", "name": "张三", "mobile": "13800138000",
          "gender": "男"}


class HostileUpstream(AiohttpUpstream):
    """A data API that misbehaves on request: ?mode=slow|garbage|500|redirect|huge|html."""

    def __init__(self) -> None:
        super().__init__()
        self.last_headers: dict[str, str] = {}
        self.last_method = ""
        self.hits = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        self.last_headers = dict(request.headers)
        self.last_method = request.method
        mode = request.query.get("mode", "")
        if mode == "slow":
            await asyncio.sleep(3)
        if mode == "garbage":
            return web.Response(body=b'{"items": [{"id_number": "1101', content_type="application/json")
        if mode == "500":
            return web.json_response({"detail": "db down"}, status=500)
        if mode == "redirect":
            raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")
        if mode == "huge":
            return web.json_response({"items": [RECORD] * 5000, "page": 1, "size": 5000,
                                      "total": 5000})
        if mode == "html":
            return web.Response(text="<html>" + RECORD["id_number"] + "</html>",
                                content_type="text/html")
        return web.json_response({"items": [RECORD], "page": 1, "size": 1, "total": 1})



@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, HostileUpstream]]:
    up = HostileUpstream()
    up.start()
    env = {
        "ZTGW_REQUEST_RECEIVE_TIMEOUT": "1.5",
        "ZTGW_MAX_REQUEST_BODY": "1024",
        "ZTGW_UPSTREAM_READ_TIMEOUT": "1",
        "ZTGW_MAX_RESPONSE_BODY": "65536",
        "ZTGW_UPSTREAM_BREAKER_FAILURES": "3",
        "ZTGW_UPSTREAM_BREAKER_RESET": "1",
        "ZTGW_RATE_LIMITS": json.dumps([{"client": "demo-hrss", "dataset": "*", "rate": 0.5,
                                         "burst": 3}]),
    }
    gw, procs = start_processes(tmp_path_factory.mktemp("hostile"), env,
                                upstream=f"http://127.0.0.1:{up.port}")
    try:
        yield gw, up
    finally:
        stop_processes(procs)
        up.stop()


def _get(gw: RunningGateway, token: str, query: str = "", **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
    return httpx.get(f"{gw.base}{PERSONS}{query}", headers=headers, timeout=10, **kw)


def _assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "message", "request_id"}
    assert body["request_id"] == r.headers["x-request-id"]
    if code:
        assert body["error"] == code
    assert RECORD["id_number"] not in r.text and "1101" not in r.text
    return body


def _audited(gw: RunningGateway, request_id: str) -> dict[str, Any]:
    for _ in range(50):
        found = gw.cli_json("audit", "search", "--request-id", request_id, "--json")
        if found["events"]:
            return found["events"][0]
        time.sleep(0.1)
    raise AssertionError(f"no audit event for {request_id}")


@pytest.fixture
def heal(hostile: tuple[RunningGateway, HostileUpstream]) -> Iterator[None]:
    """For tests that make the upstream fail: close the circuit again afterwards."""
    yield
    time.sleep(1.1)  # let an opened circuit half-open, then close it with a good request
    gw, _ = hostile
    _get(gw, gw.token("demo-police"))


# --- a hostile upstream ---------------------------------------------------------------------
@pytest.mark.parametrize("mode,status,code", [
    ("slow", 504, "upstream_timeout"),
    ("garbage", 502, "upstream_malformed"),
    ("500", 502, "upstream_error"),
    ("redirect", 502, "upstream_redirect"),
    ("huge", 502, "upstream_too_large"),
    ("html", 502, "unmaskable_response"),
])
def test_hostile_upstream(hostile: tuple[RunningGateway, HostileUpstream], mode: str, status: int,
                          code: str, heal: None) -> None:
    gw, _ = hostile
    r = _get(gw, gw.token("demo-analytics"), f"?mode={mode}")
    body = _assert_error(r, status, code)
    event = _audited(gw, body["request_id"])
    assert event["error"]["code"] == code and event["event"]["outcome"] == "failure"


def test_upstream_down(hostile: tuple[RunningGateway, HostileUpstream], tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    gw2, procs = start_processes(tmp_path, upstream=f"http://127.0.0.1:{port}")
    try:
        r = _get(gw2, gw2.token("demo-police"))
        _assert_error(r, 502, "upstream_unreachable")
        # after repeated failures the circuit opens and answers fast with 503
        codes = {_get(gw2, gw2.token("demo-police")).json()["error"] for _ in range(6)}
        assert "upstream_unavailable" in codes
    finally:
        stop_processes(procs)


def test_circuit_breaker_opens_and_recovers(hostile: tuple[RunningGateway, HostileUpstream],
                                           heal: None) -> None:
    gw, up = hostile
    token = gw.token("demo-police")
    for _ in range(3):
        _assert_error(_get(gw, token, "?mode=500"), 502)
    hits = up.hits
    r = _get(gw, token)
    _assert_error(r, 503, "upstream_unavailable")
    assert r.headers["retry-after"]
    assert up.hits == hits, "an open circuit must not call the upstream"
    time.sleep(1.2)
    assert _get(gw, token).status_code == 200  # half-open probe succeeds, circuit closes


# --- hostile clients ------------------------------------------------------------------------
def test_forwarded_headers_are_an_allow_list(hostile: tuple[RunningGateway, HostileUpstream]) -> None:
    gw, up = hostile
    token = gw.token("demo-police")
    r = _get(gw, token, headers={
        "X-Forwarded-For": "10.1.2.3", "X-Real-IP": "10.1.2.3", "Cookie": "session=x",
        "X-HTTP-Method-Override": "DELETE", "X-Method-Override": "DELETE",
        HEADER: "forged.forged", "X-Request-ID": "attacker-chosen",
    })
    assert r.status_code == 200
    sent = {k.lower(): v for k, v in up.last_headers.items()}
    assert up.last_method == "GET"
    for h in ("authorization", "cookie", "x-http-method-override", "x-method-override", "x-real-ip"):
        assert h not in sent, h
    assert sent["x-forwarded-for"] == "127.0.0.1"  # the peer, not the client's claim
    assert sent["x-request-id"] == r.headers["x-request-id"] != "attacker-chosen"
    key = bytes.fromhex((gw.home / "keys" / KEY_FILE).read_text().strip())
    claims = verify_identity_header(key, sent[HEADER])
    assert claims and claims["client_id"] == "demo-police" and claims["rid"] == r.headers["x-request-id"]
    assert verify_identity_header(key, sent[HEADER][:-2] + "AA") is None
    event = _audited(gw, r.headers["x-request-id"])
    assert event["source"]["ip"] == "127.0.0.1"


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "DELETE", "POST"])
def test_methods_refused(hostile: tuple[RunningGateway, HostileUpstream], method: str) -> None:
    gw, up = hostile
    hits = up.hits
    r = httpx.request(method, f"{gw.base}{PERSONS}",
                      headers={"Authorization": f"Bearer {gw.token('demo-police')}"})
    assert r.status_code == 405
    assert up.hits == hits


def test_oversized_body(hostile: tuple[RunningGateway, HostileUpstream]) -> None:
    gw, up = hostile
    hits = up.hits
    r = httpx.request("GET", f"{gw.base}{PERSONS}", content=b"x" * 5000,
                      headers={"Authorization": f"Bearer {gw.token('demo-police')}"})
    _assert_error(r, 413, "payload_too_large")
    assert up.hits == hits


def _raw(gw: RunningGateway, first: bytes, pause: float) -> bytes:
    host, port = gw.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(first)
        time.sleep(pause)
        chunks = []
        s.settimeout(5)
        try:
            while data := s.recv(65536):
                chunks.append(data)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def test_slow_headers_get_408(hostile: tuple[RunningGateway, HostileUpstream]) -> None:
    gw, _ = hostile
    started = time.monotonic()
    out = _raw(gw, b"GET /api/population/persons HTTP/1.1\r\nHost: x\r\nX-A: ", 0.2)
    assert out.startswith(b"HTTP/1.1 408"), out[:100]
    assert b'"request_timeout"' in out
    assert time.monotonic() - started < 8  # closed by the deadline, not by our read timeout


def test_slow_body_gets_408(hostile: tuple[RunningGateway, HostileUpstream]) -> None:
    gw, _ = hostile
    token = gw.token("demo-police").encode()
    out = _raw(gw, b"GET /api/population/persons HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
               token + b"\r\nContent-Length: 100\r\n\r\n0123456789", 0.2)
    assert b" 408 " in out.split(b"\r\n", 1)[0], out[:200]


def test_rate_limit(hostile: tuple[RunningGateway, HostileUpstream]) -> None:
    gw, _ = hostile
    token = gw.token("demo-hrss")
    url = f"{gw.base}/api/social-security/contributions"
    statuses = [httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code
                for _ in range(6)]
    assert statuses[:3] == [200, 200, 200]
    assert 429 in statuses[3:]
    r = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    if r.status_code == 429:
        _assert_error(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1


# --- forged tokens --------------------------------------------------------------------------
def _b64(d: bytes) -> str:
    return base64.urlsafe_b64encode(d).rstrip(b"=").decode()


def _signing_keys(gw: RunningGateway) -> KeySet:
    data = json.loads((gw.home / "keys" / "signing.jwks.json").read_text())
    return KeySet.import_key_set(data)


def _claims(gw: RunningGateway, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": gw.base, "sub": "client:demo-police", "aud": "urn:ztgw:data-api",
            "client_id": "demo-police", "iat": now, "nbf": now, "exp": now + 300, "jti": "t"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def _forgeries(gw: RunningGateway) -> dict[str, str]:
    real = gw.token("demo-analytics")
    h, p, s = real.split(".")
    ks = _signing_keys(gw)
    es = next(k for k in ks.keys if k.alg == "ES256")
    attacker = ECKey.generate_key("P-256", private=True, auto_kid=True)
    pub_pem = es.as_pem(private=False)
    forged_payload = _b64(orjson.dumps({**json.loads(base64.urlsafe_b64decode(p + "==")),
                                        "client_id": "demo-police", "sub": "client:demo-police"}))
    none_tok = _b64(b'{"alg":"none","typ":"at+jwt"}') + "." + _b64(orjson.dumps(_claims(gw))) + "."
    # the classic alg-confusion forgery: HMAC keyed with the public key's PEM (built by hand:
    # joserfc itself refuses to use a public key as an HMAC secret)
    signing_input = _b64(b'{"alg":"HS256","typ":"at+jwt"}') + "." + _b64(orjson.dumps(_claims(gw)))
    mac = hmac.new(pub_pem, signing_input.encode(), "sha256").digest()
    hs = signing_input + "." + _b64(mac)

    def sign(key: Any, header: dict[str, Any], **claims: Any) -> str:
        return jwt.encode({"alg": "ES256", "typ": "at+jwt", **header}, _claims(gw, **claims), key,
                          algorithms=["ES256"])

    return {
        "alg_none": none_tok,
        "hs256_with_public_key": hs,
        "altered_signature": f"{h}.{p}.{s[:-4]}{'AAAA' if s[-4:] != 'AAAA' else 'BBBB'}",
        "stripped_signature": f"{h}.{p}.",
        "altered_payload": f"{h}.{forged_payload}.{s}",
        "embedded_jwk": sign(attacker, {"kid": attacker.kid,
                                        "jwk": attacker.as_dict(private=False)}),
        "foreign_jku": sign(attacker, {"kid": attacker.kid, "jku": "http://127.0.0.1:1/jwks"}),
        "kid_traversal": sign(attacker, {"kid": "../../keys/signing.jwks.json"}),
        "expired": sign(es, {"kid": es.kid}, exp=int(time.time()) - 3600,
                        iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200),
        "not_yet_valid": sign(es, {"kid": es.kid}, nbf=int(time.time()) + 3600),
        "wrong_audience": sign(es, {"kid": es.kid}, aud="other-api"),
        "wrong_issuer": sign(es, {"kid": es.kid}, iss="http://evil.example"),
        "id_token_type": jwt.encode({"alg": "ES256", "typ": "JWT", "kid": es.kid}, _claims(gw), es,
                                    algorithms=["ES256"]),
        "no_client_id": sign(es, {"kid": es.kid}, client_id=None),
    }


def test_forged_tokens_are_refused(hostile: tuple[RunningGateway, HostileUpstream]) -> None:
    gw, up = hostile
    hits = up.hits
    # a control: the same construction with the real key and honest claims does work
    es = next(k for k in _signing_keys(gw).keys if k.alg == "ES256")
    good = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": es.kid}, _claims(gw), es,
                      algorithms=["ES256"])
    assert _get(gw, good).status_code == 200
    hits += 1
    for name, token in _forgeries(gw).items():
        r = _get(gw, token)
        assert r.status_code == 401, f"{name}: {r.status_code} {r.text}"
        body = _assert_error(r, 401)
        assert body["error"] in ("invalid_token", "invalid_request"), name
    assert up.hits == hits, "a forged token reached the upstream"
