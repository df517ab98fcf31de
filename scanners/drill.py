"""``ztgw drill simulate``: a scripted attack campaign against a gateway on loopback.

Each step is a small, bounded burst of real HTTP traffic (brute force on the sign-in form
and on the token endpoint, credential stuffing, token replay from several addresses,
injection probes, traversal, enumeration, bulk reads).  Afterwards the drill reads the
alerts the gateway raised from its audit store and reports, per attack, whether it was
detected, by which rule, how fast, and which responses were taken.

Only loopback (or an explicitly allowed test host) is ever targeted: :func:`check_target`.
"""

from __future__ import annotations

import html
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

from ztgw.audit.query import AuditQuery
from ztgw.audit.store import AuditStore

from .errors import BadInput
from .targets import check_target

_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
UA = "ztgw-drill/1.0"


@dataclass(slots=True)
class Attack:
    name: str
    expects: tuple[str, ...]  # alert categories (rule.category) that count as detection
    started: float = 0.0
    ended: float = 0.0
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    skipped: str | None = None


@dataclass(slots=True)
class DrillTarget:
    base: str
    client_id: str
    client_secret: str
    portal_client: str = "demo-portal"
    portal_redirect: str = "http://127.0.0.1:8090/callback"
    victim: str = "zhangwei"
    dataset_path: str = "/api/population/persons"
    allowed: tuple[str, ...] = ()


class Campaign:
    def __init__(self, target: DrillTarget, *, exfil_pages: int = 8, page_size: int = 1000) -> None:
        parts = urlsplit(target.base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadInput("the drill needs an http(s):// base URL")
        check_target(parts.hostname, target.allowed)
        self.t = target
        self.exfil_pages = exfil_pages
        self.page_size = page_size
        self.http = httpx.Client(base_url=target.base.rstrip("/"), timeout=15,
                                 headers={"User-Agent": UA}, follow_redirects=False)
        self.attacks: list[Attack] = []

    def close(self) -> None:
        self.http.close()

    def _step(self, attack: Attack, fn: Callable[[Attack], None]) -> None:
        attack.started = time.time()
        try:
            fn(attack)
        except httpx.HTTPError as exc:
            attack.skipped = f"transport error: {exc}"
        attack.ended = time.time()
        self.attacks.append(attack)

    def _req(self, a: Attack, method: str, url: str, **kw: Any) -> httpx.Response:
        r = self.http.request(method, url, **kw)
        a.requests += 1
        a.statuses[r.status_code] = a.statuses.get(r.status_code, 0) + 1
        return r

    def _token(self) -> str:
        r = self.http.post("/oauth2/token", data={"grant_type": "client_credentials"},
                           auth=(self.t.client_id, self.t.client_secret))
        if r.status_code != 200:
            raise BadInput(f"the drill client cannot get a token ({r.status_code})")
        return str(r.json()["access_token"])

    def _login_form(self, client: httpx.Client) -> dict[str, str] | None:
        params = {"response_type": "code", "client_id": self.t.portal_client,
                  "redirect_uri": self.t.portal_redirect, "scope": "openid",
                  "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8),
                  "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                  "code_challenge_method": "S256"}
        r = client.get("/oauth2/authorize?" + urlencode(params))
        fields = {k: html.unescape(v) for k, v in _HIDDEN.findall(r.text)}
        return fields if "csrf_token" in fields else None

    def _logins(self, a: Attack, names: list[str], password: str) -> None:
        with httpx.Client(base_url=self.http.base_url, timeout=15, headers={"User-Agent": UA}) as c:
            for name in names:
                fields = self._login_form(c)
                if fields is None:
                    a.skipped = "no sign-in form"
                    return
                r = c.post("/login", data={**fields, "username": name, "password": password})
                a.requests += 2
                a.statuses[r.status_code] = a.statuses.get(r.status_code, 0) + 1

    # --- the attacks ---------------------------------------------------------------------------
    def brute_force(self, a: Attack) -> None:
        self._logins(a, [self.t.victim] * 6, "Wrong-" + secrets.token_hex(4))
        for _ in range(6):  # and the token endpoint, with a guessed client secret
            self._req(a, "POST", "/oauth2/token", data={"grant_type": "client_credentials"},
                      auth=(self.t.client_id, "guess-" + secrets.token_hex(6)))

    def stuffing(self, a: Attack) -> None:
        names = [f"leaked{secrets.token_hex(3)}" for _ in range(10)]
        self._logins(a, names, "P@ssw0rd123")

    def token_replay(self, a: Attack) -> None:
        token = self._token()
        for i in range(4):  # the same token from four addresses (needs a trusted proxy hop)
            self._req(a, "GET", f"{self.t.dataset_path}?size=1", headers={
                "Authorization": f"Bearer {token}", "X-Forwarded-For": f"198.51.100.{10 + i}",
                "User-Agent": f"{UA} replay-{i}"})

    def injection(self, a: Attack) -> None:
        token = self._token()
        auth = {"Authorization": f"Bearer {token}"}
        for payload in ("1' OR '1'='1", "1 UNION SELECT username,password FROM users--",
                        "1' AND SLEEP(5)--", "<script>alert(1)</script>",
                        "http://169.254.169.254/latest/meta-data/"):
            self._req(a, "GET", f"{self.t.dataset_path}/{quote(payload, safe='')}", headers=auth)

    def traversal(self, a: Attack) -> None:
        token = self._token()
        for payload in ("..%2f..%2f..%2fetc%2fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fshadow",
                        "....//....//etc/passwd"):
            self._req(a, "GET", f"{self.t.dataset_path}/{payload}",
                      headers={"Authorization": f"Bearer {token}"})

    def enumeration(self, a: Attack) -> None:
        for i in range(24):  # no token: every answer is a 401
            self._req(a, "GET", f"{self.t.dataset_path}/11010119900307{1000 + i:04d}")

    def scanner(self, a: Attack) -> None:
        for path in ("/.env", "/admin.php", "/wp-login.php"):
            self._req(a, "GET", f"{self.t.dataset_path}{path}",
                      headers={"User-Agent": "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None)"})

    def exfiltration(self, a: Attack) -> None:
        token = self._token()
        for page in range(1, self.exfil_pages + 1):
            self._req(a, "GET", f"{self.t.dataset_path}?page={page}&size={self.page_size}",
                      headers={"Authorization": f"Bearer {token}"})

    def run(self, only: list[str] | None = None) -> list[Attack]:
        steps: list[tuple[Attack, Callable[[Attack], None]]] = [
            (Attack("brute-force", ("brute-force",)), self.brute_force),
            (Attack("credential-stuffing", ("credential-stuffing", "password-spraying")), self.stuffing),
            (Attack("token-replay", ("token-replay",)), self.token_replay),
            (Attack("injection", ("injection",)), self.injection),
            (Attack("traversal", ("traversal",)), self.traversal),
            (Attack("enumeration", ("enumeration",)), self.enumeration),
            (Attack("scanner", ("scanner",)), self.scanner),
            (Attack("exfiltration", ("exfiltration",)), self.exfiltration),
        ]
        for attack, fn in steps:
            if only and attack.name not in only:
                continue
            self._step(attack, fn)
        return self.attacks


def _trigger_time(alert: dict[str, Any]) -> str:
    first = alert.get("ztgw", {}).get("alert", {}).get("first_event_time")
    return first if isinstance(first, str) else str(alert["@timestamp"])


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def alerts_since(store: AuditStore, since: float) -> list[dict[str, Any]]:
    q = AuditQuery(since=datetime.fromtimestamp(since, UTC).isoformat(), event_dataset="ztgw.alert",
                   limit=10_000)
    return store.search(q)


def score(attacks: list[Attack], alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """Per attack: detected or missed, by which rules, time to detect and to respond."""
    rows = []
    for a in attacks:
        # an alert belongs to the attack whose traffic triggered it (the triggering event's
        # time, with half a second of slack for clocks and batching)
        hits = [al for al in alerts if al.get("rule", {}).get("category") in a.expects
                and a.started - 0.5 <= _epoch(_trigger_time(al)) <= a.ended + 0.5]
        first = min((_epoch(h["event"].get("created") or h["@timestamp"]) for h in hits), default=None)
        responses = list({(r["action"], r["target"]): r for h in hits
                          for r in h.get("ztgw", {}).get("alert", {}).get("responses", [])}.values())
        rows.append({
            "attack": a.name, "requests": a.requests, "statuses": a.statuses, "skipped": a.skipped,
            "detected": bool(hits), "rules": sorted({h["rule"]["name"] for h in hits}),
            "alerts": len(hits),
            "time_to_detect_s": round(max(0.0, first - a.started), 3) if first else None,
            "responses": responses,
            "started": datetime.fromtimestamp(a.started, UTC).isoformat(),
        })
    detected = sum(1 for r in rows if r["detected"])
    return {"attacks": rows, "detected": detected, "missed": len(rows) - detected,
            "detection_rate": round(detected / len(rows), 3) if rows else 0.0}


def wait_for_alerts(store_path: Path, attacks: list[Attack], timeout: float = 20.0
                    ) -> dict[str, Any]:
    """Poll the audit store until every attack is detected or ``timeout`` passes."""
    since = min((a.started for a in attacks), default=time.time())
    deadline = time.monotonic() + timeout
    while True:
        store = AuditStore(store_path)
        try:
            result = score(attacks, alerts_since(store, since - 1))
        finally:
            store.close()
        if result["missed"] == 0 or time.monotonic() >= deadline:
            return result
        time.sleep(0.5)
