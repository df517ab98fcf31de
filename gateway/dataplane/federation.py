"""Bearer tokens from other identity platforms: federated issuers with cached, refreshed JWKS.

A city's data APIs are called by applications that sign in elsewhere too — the provincial
platform, a ministry's IdP.  Each trusted issuer is configured explicitly (``ZTGW_FEDERATED_ISSUERS``
/ ``federated_issuers`` in ztgw.toml)::

    [[federated_issuers]]
    name = "province"                       # short name, used in subjects and audit
    issuer = "https://idp.province.gov.cn"  # exact ``iss``
    jwks_uri = "https://idp.province.gov.cn/jwks"
    audience = "urn:ztgw:data-api"          # must be in ``aud``
    algorithms = ["ES256"]                  # the allow-list; HS*/none are refused at start
    client_claim = "azp"                    # where the calling application is named
    clients = { "prov-app-7" = "c-4f2…" }   # external application → local client (roles!)
    typ = ["at+jwt"]                        # accepted ``typ`` headers

What is checked (RFC 8725 as for ztgw's own tokens): the issuer is looked up from the token's
``iss`` *before* any key is chosen, and only that issuer's keys and algorithms are used; keys
come only from the configured ``jwks_uri`` (``jku``/``jwk``/``x5u``/``x5c`` headers are refused,
never fetched); ``typ``, ``iss``, ``aud``, ``exp``/``nbf`` with the gateway's leeway.  The
application must be mapped to a local client — an unmapped one is refused — so its roles and
attributes come from ztgw's directory, never from the foreign token.  A user token (``sub`` ≠
the application) is accepted only for a user linked to that provider (the same links as the
federated login, :meth:`OAuthStore.linked_user`).

JWKS: fetched at start and every ``jwks_refresh`` seconds by a background thread; a token with
an unknown ``kid`` asks for an early refresh (at most one per ``MIN_REFETCH`` seconds, so
forged kids cannot make the gateway hammer the IdP) and is refused meanwhile.  ``jwks_uri``
must be https, or http on a loopback address (tests, a sidecar).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..identity.tokens import FORBIDDEN_HEADERS, MAX_TOKEN_BYTES, AccessToken, TokenInvalid

log = logging.getLogger("ztgw.federation")
ALLOWED_ALGS = frozenset({"ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "EdDSA", "SM2SM3"})
MIN_REFETCH = 30.0  # seconds between early JWKS refreshes asked for by unknown kids
MAX_JWKS_BYTES = 256 * 1024
CACHE_MAX = 50_000


@dataclass(frozen=True, slots=True)
class FederatedIssuer:
    name: str
    issuer: str
    jwks_uri: str
    audience: str
    clients: dict[str, str]
    algorithms: tuple[str, ...] = ("ES256", "RS256")
    client_claim: str = "azp"
    typ: tuple[str, ...] = ("at+jwt",)
    jwks_refresh: float = 300.0

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> FederatedIssuer:
        """Validate one configured issuer; raises ValueError with a clear message."""
        try:
            fi = cls(
                name=str(raw["name"]), issuer=str(raw["issuer"]), jwks_uri=str(raw["jwks_uri"]),
                audience=str(raw["audience"]),
                clients={str(k): str(v) for k, v in dict(raw.get("clients", {})).items()},
                algorithms=tuple(str(a) for a in raw.get("algorithms", ("ES256", "RS256"))),
                client_claim=str(raw.get("client_claim", "azp")),
                typ=tuple(str(t) for t in raw.get("typ", ("at+jwt",))),
                jwks_refresh=float(raw.get("jwks_refresh", 300.0)),
            )
        except KeyError as exc:
            raise ValueError(f"federated issuer: {exc.args[0]!r} is required") from exc
        bad = set(fi.algorithms) - ALLOWED_ALGS
        if bad or not fi.algorithms:
            raise ValueError(f"federated issuer {fi.name!r}: algorithms {sorted(bad)} are not allowed "
                             f"(asymmetric only: {sorted(ALLOWED_ALGS)})")
        if not fi.clients:
            raise ValueError(f"federated issuer {fi.name!r}: map at least one application in "
                             "'clients' (external id → local client id)")
        if fi.client_claim not in ("azp", "client_id"):
            raise ValueError(f"federated issuer {fi.name!r}: client_claim is azp or client_id")
        if not 10 <= fi.jwks_refresh <= 86_400:
            raise ValueError(f"federated issuer {fi.name!r}: jwks_refresh is 10…86400 s")
        url = urlsplit(fi.jwks_uri)
        if url.scheme != "https" and not (url.scheme == "http" and _loopback(url.hostname)):
            raise ValueError(f"federated issuer {fi.name!r}: jwks_uri must be https "
                             "(http only on a loopback address)")
        return fi


def _loopback(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


@dataclass
class _IssuerState:
    config: FederatedIssuer
    keys: KeySet | None = None
    kids: frozenset[str] = frozenset()
    fetched_at: float = 0.0
    asked_at: float = 0.0
    errors: int = 0
    wake: threading.Event = field(default_factory=threading.Event)


def fetch_jwks(url: str, timeout: float = 5.0) -> KeySet:
    req = urllib.request.Request(url, headers={"accept": "application/json"})  # noqa: S310 - scheme checked
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
        raw = resp.read(MAX_JWKS_BYTES + 1)
    if len(raw) > MAX_JWKS_BYTES:
        raise ValueError("the JWKS document is too large")
    doc = orjson.loads(raw)
    keys = [k for k in doc.get("keys", []) if isinstance(k, dict) and k.get("kty") != "oct"]
    return KeySet.import_key_set({"keys": keys})


class FederatedVerifier:
    """Verifies tokens of the configured federated issuers; ``None`` for any other issuer."""

    def __init__(self, issuers: list[FederatedIssuer], *, leeway: int,
                 linked_user: Callable[[str, str], str | None],
                 fetch: Callable[[str], KeySet] = fetch_jwks) -> None:
        self.leeway = leeway
        self._linked_user = linked_user
        self._fetch = fetch
        self._by_iss = {i.issuer: _IssuerState(i) for i in issuers}
        self._cache: dict[bytes, AccessToken] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._by_iss)

    # --- JWKS ---------------------------------------------------------------------------
    def refresh(self, state: _IssuerState) -> bool:
        try:
            keys = self._fetch(state.config.jwks_uri)
        except Exception as exc:
            state.errors += 1
            log.warning("JWKS of %s could not be fetched: %s", state.config.name, type(exc).__name__)
            return False
        state.keys = keys
        state.kids = frozenset(str(k.kid) for k in keys.keys if k.kid)
        state.fetched_at = time.monotonic()
        return True

    def start(self) -> None:
        if not self._by_iss or self._thread is not None:
            return
        for state in self._by_iss.values():
            self.refresh(state)
        self._thread = threading.Thread(target=self._run, name="ztgw-jwks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        for state in self._by_iss.values():
            state.wake.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            due = min(s.fetched_at + (s.config.jwks_refresh if s.keys else MIN_REFETCH)
                      for s in self._by_iss.values())
            woken = any(s.wake.is_set() for s in self._by_iss.values())
            if not woken:
                self._stop.wait(min(max(0.0, due - now), 1.0))
            for state in self._by_iss.values():
                interval = state.config.jwks_refresh if state.keys else MIN_REFETCH
                if state.wake.is_set() or time.monotonic() - state.fetched_at >= interval:
                    state.wake.clear()
                    self.refresh(state)
                    if state.keys is None:
                        state.fetched_at = time.monotonic()  # retry after MIN_REFETCH

    def status(self) -> dict[str, Any]:
        return {s.config.name: {"keys": len(s.kids), "errors": s.errors,
                                "age_s": round(time.monotonic() - s.fetched_at, 1) if s.keys else None}
                for s in self._by_iss.values()}

    # --- tokens -------------------------------------------------------------------------
    def verify(self, token: str) -> AccessToken | None:
        """The token as an AccessToken if a federated issuer signed it, ``None`` if its ``iss``
        is not federated (the caller then tries ztgw's own verifier); raises TokenInvalid."""
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenInvalid("too_large", "the access token is too large")
        digest = hashlib.sha256(token.encode("ascii", "replace")).digest()
        now = time.time()
        hit = self._cache.get(digest)
        if hit is not None:
            if hit.expires_at + self.leeway > now:
                return hit
            self._cache.pop(digest, None)
            raise TokenInvalid("expired", "the access token has expired")
        state = self._by_iss.get(_peek_issuer(token))  # type: ignore[arg-type]
        if state is None:
            return None
        result = self._verify(state, token, digest, now)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[digest] = result
        return result

    def _verify(self, state: _IssuerState, token: str, digest: bytes, now: float) -> AccessToken:
        conf = state.config
        header = _peek_header(token)
        if FORBIDDEN_HEADERS & set(header):
            raise TokenInvalid("forbidden_header", "the token header names keys or extensions")
        if header.get("alg") not in conf.algorithms:
            raise TokenInvalid("bad_algorithm", "the token's algorithm is not allowed for its issuer")
        if header.get("typ") not in conf.typ:
            raise TokenInvalid("wrong_type", "the token is not an access token of its issuer")
        kid = header.get("kid")
        if state.keys is None or (kid is not None and str(kid) not in state.kids):
            if time.monotonic() - state.asked_at >= MIN_REFETCH:
                state.asked_at = time.monotonic()
                state.wake.set()  # the refresher thread fetches the JWKS again
            raise TokenInvalid("unknown_key", "the token is signed with a key the issuer has not published")
        try:
            decoded = jwt.decode(token, state.keys, algorithms=list(conf.algorithms))
        except JoseError as exc:
            raise TokenInvalid("bad_signature", f"the access token does not verify: {exc.error}") from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise TokenInvalid("malformed", "the access token is malformed") from exc
        claims = decoded.claims
        if claims.get("iss") != conf.issuer:
            raise TokenInvalid("wrong_issuer", "the access token was issued by someone else")
        aud = claims.get("aud")
        if conf.audience not in (aud if isinstance(aud, list) else [aud]):
            raise TokenInvalid("wrong_audience", "the access token is not for this API")
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
        if not isinstance(exp, int) or exp + self.leeway <= now:
            raise TokenInvalid("expired", "the access token has expired")
        if isinstance(nbf, int) and nbf - self.leeway > now:
            raise TokenInvalid("not_yet_valid", "the access token is not valid yet")
        external_client = claims.get(conf.client_claim)
        sub = claims.get("sub")
        if not isinstance(external_client, str) or not isinstance(sub, str):
            raise TokenInvalid("malformed", f"the token lacks sub or {conf.client_claim}")
        local_client = conf.clients.get(external_client)
        if local_client is None:
            raise TokenInvalid("unknown_client", "the issuer's application is not registered here")
        if sub == external_client:
            subject = f"client:{local_client}"
        else:
            username = self._linked_user(conf.name, sub)
            if username is None:
                raise TokenInvalid("unknown_user", "the issuer's user is not linked to an account here")
            subject = f"user:{username}"
        jti = claims.get("jti")
        # a token without jti still gets a stable id for revocation and detection
        token_id = jti if isinstance(jti, str) and jti else "sha256:" + digest.hex()[:32]
        scope = claims.get("scope")
        return AccessToken(
            subject=subject, client_id=local_client,
            scope=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            expires_at=exp,
            jti=f"{conf.name}:{token_id}",
            claims={**claims, "ztgw_federated_issuer": conf.name},
        )


def _segment(token: str, index: int) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenInvalid("malformed", "the access token is not a signed JWT")
    try:
        raw = base64.urlsafe_b64decode(parts[index] + "=" * (-len(parts[index]) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise TokenInvalid("malformed", "the access token is malformed") from exc
    if not isinstance(value, dict):
        raise TokenInvalid("malformed", "the access token is malformed")
    return value


def _peek_header(token: str) -> dict[str, Any]:
    return _segment(token, 0)


def _peek_issuer(token: str) -> str | None:
    """The unverified ``iss``: only used to choose which issuer's keys may verify the token."""
    iss = _segment(token, 1).get("iss")
    return iss if isinstance(iss, str) else None


class CompositeVerifier:
    """Federated issuers first (by ``iss``), then ztgw's own verifier — with no federation
    configured this is the own verifier's ``verify`` and costs nothing extra."""

    def __init__(self, own: Any, federated: FederatedVerifier | None) -> None:
        self.own = own
        self.federated = federated if federated is not None and federated.enabled else None
        if self.federated is None:
            self.verify = own.verify  # type: ignore[method-assign]

    def verify(self, token: str) -> AccessToken:
        assert self.federated is not None
        result = self.federated.verify(token)
        return result if result is not None else self.own.verify(token)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.own, name)
