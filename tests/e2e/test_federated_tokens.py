"""Bearer tokens from a federated issuer (JWKS fetched over HTTP, refreshed on an unknown kid)
and fail-open 一般 routes, through a real `ztgw serve` (issue 7).

The "provincial platform" here is a JWKS document served on loopback and tokens minted with
joserfc, as any OIDC provider would sign them (ES256, kid, typ at+jwt)."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey
from scale.services import backend_env

from .conftest import ZTGW, RunningGateway, free_port, start_processes, stop_processes

ISSUER = "https://idp.province.test"
AUDIENCE = "urn:ztgw:data-api"
PERSONS = "/api/population/persons?page=1&size=3"


class _Jwks(http.server.ThreadingHTTPServer):
    keys: list[dict[str, Any]]
    hits: dict[str, int]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Jwks

    def do_GET(self) -> None:
        self.server.hits[self.path] = self.server.hits.get(self.path, 0) + 1
        if self.path == "/jwks":
            body = json.dumps({"keys": self.server.keys}).encode()
            self.send_response(200)
        elif self.path.startswith("/api/open/"):  # a 一般 data API for the fail-open test
            body = json.dumps({"items": [{"id": "1", "title": "公告"}], "page": 1, "size": 1,
                               "total": 1}).encode()
            self.send_response(200)
        else:
            body = b"{}"
            self.send_response(404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def province() -> Iterator[_Jwks]:
    server = _Jwks(("127.0.0.1", 0), _Handler)
    server.keys, server.hits = [], {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def _key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig", "alg": "ES256"})


def _mint(key: Any, *, alg: str = "ES256", typ: str = "at+jwt", extra_header: dict[str, Any] | None = None,
          **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "prov-police-app", "azp": "prov-police-app",
            "iat": now, "exp": now + 300, "jti": f"j-{time.time_ns()}", **claims}
    header = {"alg": alg, "typ": typ, **(extra_header or {})}
    if alg != "HS256":
        header["kid"] = key.kid
    return jwt.encode(header, {k: v for k, v in body.items() if v is not None}, key, algorithms=[alg])


@pytest.fixture(scope="module")
def federated(province: _Jwks, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[RunningGateway, _Jwks, ECKey]]:
    key = _key("k1")
    province.keys[:] = [key.as_dict(private=False)]
    port = province.server_address[1]
    issuers = [{"name": "province", "issuer": ISSUER, "jwks_uri": f"http://127.0.0.1:{port}/jwks",
                "audience": AUDIENCE, "algorithms": ["ES256"],
                "clients": {"prov-police-app": "demo-police"}}]
    gw, procs = start_processes(tmp_path_factory.mktemp("ztgw-federated"),
                                {"ZTGW_FEDERATED_ISSUERS": json.dumps(issuers)})
    try:
        yield gw, province, key
    finally:
        stop_processes(procs)


def _get(gw: RunningGateway, token: str, path: str = PERSONS) -> httpx.Response:
    return httpx.get(gw.base + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_federated_service_token_acts_as_its_mapped_local_client(
        federated: tuple[RunningGateway, _Jwks, ECKey]) -> None:
    gw, _, key = federated
    r = _get(gw, _mint(key))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    # demo-police's rule (population-officer-read): the mobile is masked, the ID number is not
    assert "*" in items[0]["mobile"] and "*" not in items[0]["id_number"]
    hits: list[dict[str, Any]] = []
    for _ in range(50):
        hits = gw.cli_json("audit", "search", "--request-id", r.headers["x-request-id"],
                           "--json")["events"]
        if hits:
            break
        time.sleep(0.1)
    assert hits and hits[0]["user"]["id"] == "client:demo-police"


@pytest.mark.parametrize("case", ["unmapped_app", "wrong_audience", "expired", "hs256_with_public_key",
                                  "foreign_jku", "unlinked_user", "id_token_typ", "wrong_issuer_key",
                                  "bound_to_a_certificate"])
def test_forged_or_foreign_federated_tokens_are_refused(
        federated: tuple[RunningGateway, _Jwks, ECKey], case: str) -> None:
    gw, province, key = federated
    port = province.server_address[1]
    stranger = _key("k1")  # same kid, different key: a forger who read the JWKS
    if case == "unmapped_app":
        token = _mint(key, sub="other-app", azp="other-app")
    elif case == "wrong_audience":
        token = _mint(key, aud="urn:someone-else")
    elif case == "expired":
        token = _mint(key, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    elif case == "hs256_with_public_key":
        # the classic confusion: HMAC keyed with the issuer's public key
        public = json.dumps(key.as_dict(private=False)).encode()
        token = _mint(OctKey.import_key(public), alg="HS256")
    elif case == "foreign_jku":
        token = _mint(key, extra_header={"jku": f"http://127.0.0.1:{port}/evil-jwks"})
    elif case == "unlinked_user":
        token = _mint(key, sub="citizen-123")  # a user of the province, not linked here
    elif case == "id_token_typ":
        token = _mint(key, typ="JWT")
    elif case == "bound_to_a_certificate":  # RFC 8705: usable only with that client certificate
        token = _mint(key, cnf={"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"})
    else:
        token = _mint(stranger)
    r = _get(gw, token)
    assert r.status_code == 401, (case, r.text)
    assert r.json()["error"] == "invalid_token"
    assert province.hits.get("/evil-jwks", 0) == 0, "a jku header was fetched"


def test_a_rotated_issuer_key_is_fetched_on_first_sight(
        federated: tuple[RunningGateway, _Jwks, ECKey]) -> None:
    gw, province, key = federated
    new = _key("k2")
    province.keys[:] = [key.as_dict(private=False), new.as_dict(private=False)]
    before = province.hits.get("/jwks", 0)
    token = _mint(new)
    statuses = []
    for _ in range(50):  # the first sight asks the refresher; the token works once it has run
        statuses.append(_get(gw, token).status_code)
        if statuses[-1] == 200:
            break
        time.sleep(0.1)
    assert statuses[-1] == 200, statuses
    assert province.hits.get("/jwks", 0) > before
    # a burst of forged kids does not make the gateway hammer the issuer
    fetched = province.hits.get("/jwks", 0)
    for i in range(20):
        assert _get(gw, _mint(_key(f"forged-{i}"))).status_code == 401
    time.sleep(0.5)
    assert province.hits.get("/jwks", 0) <= fetched + 1


def test_own_tokens_still_work_next_to_federation(
        federated: tuple[RunningGateway, _Jwks, ECKey]) -> None:
    gw, _, _ = federated
    assert _get(gw, gw.token("demo-police")).status_code == 200


def _serve_fails(home: Path, env: dict[str, str]) -> str:
    full = {**env, "ZTGW_HOME": str(home)}
    subprocess.run([*ZTGW, "init"], env=full, check=True, capture_output=True, timeout=60)
    subprocess.run([*ZTGW, "demo", "seed"], env=full, check=True, capture_output=True, timeout=60)
    p = subprocess.run([*ZTGW, "serve", "--port", str(free_port())], env=full, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode != 0
    return p.stdout + p.stderr


def test_unsafe_configuration_stops_the_start(tmp_path: Path) -> None:
    import os

    base = {k: v for k, v in os.environ.items() if k != "ZTGW_CONFIG"}
    hs = [{"name": "p", "issuer": ISSUER, "jwks_uri": "http://127.0.0.1:9/jwks", "audience": AUDIENCE,
           "algorithms": ["HS256"], "clients": {"a": "demo-police"}}]
    out = _serve_fails(tmp_path / "a", {**base, "ZTGW_FEDERATED_ISSUERS": json.dumps(hs)})
    assert "HS256" in out
    plain = [{**hs[0], "algorithms": ["ES256"], "jwks_uri": "http://idp.example.org/jwks"}]
    out = _serve_fails(tmp_path / "b", {**base, "ZTGW_FEDERATED_ISSUERS": json.dumps(plain)})
    assert "https" in out
    out = _serve_fails(tmp_path / "c", {**base, "ZTGW_FAIL_OPEN_DATASETS": '["population.persons"]'})
    assert "only 一般 data may fail open" in out


# --- fail-open for 一般 data ---------------------------------------------------------------
BUNDLE = """\
bundle: failopen-test
version: "1"
rules:
  - id: open-data
    effect: allow
    subjects: ["*"]
    datasets: [open.notices, open.holidays]
    actions: [read]
  - id: persons
    effect: allow
    subjects: [role:population-officer]
    datasets: [population.persons]
    actions: [read]
"""


def _register(gw_env: dict[str, str], name: str, prefix: str, upstream: str, tmp: Path) -> None:
    doc = {"dataset": name, "title": name, "route_prefix": prefix, "upstream_url": upstream,
           "owner_department": "市政务服务中心",
           "fields": {"id": {"classification": "一般"}, "title": {"classification": "一般"}}}
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    subprocess.run([*ZTGW, "datasets", "register", str(path)], env=gw_env,
                   check=True, capture_output=True, text=True, timeout=60)


def test_fail_open_serves_only_configured_general_data_when_the_trail_is_down(
        province: _Jwks, tmp_path: Path) -> None:
    import os

    home = tmp_path / "home"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "policy.yaml").write_text(BUNDLE, encoding="utf-8")
    backend = backend_env()  # ZTGW_TEST_BACKEND: the datasets go where the gateway reads
    env = {**{k: v for k, v in os.environ.items() if k != "ZTGW_CONFIG"}, "ZTGW_HOME": str(home),
           **backend}
    subprocess.run([*ZTGW, "init"], env=env, check=True, capture_output=True, timeout=60)
    upstream = f"http://127.0.0.1:{province.server_address[1]}"
    _register(env, "open.notices", "/api/open/notices", upstream, tmp_path)
    _register(env, "open.holidays", "/api/open/holidays", upstream, tmp_path)
    gw, procs = start_processes(home, {**backend, "ZTGW_AUDIT_SPOOL_QUOTA_MB": "1",
                                       "ZTGW_POLICY_BUNDLE": str(bundle),
                                       "ZTGW_FAIL_OPEN_DATASETS": '["open.notices"]'})
    try:
        token = gw.token("demo-police")
        assert _get(gw, token, "/api/open/notices").status_code == 200
        assert _get(gw, token, "/api/open/holidays").status_code == 200
        _fill(gw)
        # the trail is down: the fail-open 一般 route is served, nothing else is
        assert _get(gw, token, "/api/open/notices").status_code == 200
        r = _get(gw, token, "/api/open/holidays")
        assert (r.status_code, r.json()["error"]) == (503, "audit_unavailable")
        r = _get(gw, token, PERSONS)
        assert (r.status_code, r.json()["error"]) == (503, "audit_unavailable")
        metrics = httpx.get(gw.base + "/metrics", timeout=10).text
        assert 'ztgw_audit_events_total{dataset="fail_open_unaudited"}' in metrics
    finally:
        stop_processes(procs)


def _fill(gw: RunningGateway) -> None:
    junk = "x" * 120
    with httpx.Client(base_url=gw.base, timeout=10) as c:
        for i in range(20_000):
            c.post("/oauth2/token", data={"grant_type": "client_credentials", "scope": junk},
                   auth=(f"no-such-client-{junk}"[:120], "wrong"))
            if i % 100 == 99 and not c.get("/readyz").json()["checks"]["audit"]:
                return
    raise AssertionError("the audit spool never filled")
