"""JWT access tokens (RFC 9068): issued by the provider, verified by the data plane.

Verification follows RFC 8725: an algorithm allow-list fixed by configuration (never the
header's word alone), keys only from our own key ring (``jku``/``jwk``/``x5u``/``x5c`` headers
are refused, never fetched), explicit typing (``typ: at+jwt``, so an ID token is not an access
token), exact issuer, audience, ``exp``/``nbf`` with a small leeway.  Verified tokens are cached
by their SHA-256 until they expire, so a hot client costs a dict look-up, not a signature check.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ztgw.audit.events import random_hex

from .keys import KeyRing, SigningJWK, canonical_alg
from .revocation import RevocationList, RevocationUnavailable

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - a media type
ID_TOKEN_TYP = "JWT"  # noqa: S105 - ID tokens are plain JWTs, never at+jwt (RFC 9068 §2.1)
ALLOWED_ALGS = ("ES256", "RS256", "SM2SM3")  # RFC 8725 §3.1: the allow-list, per context
FORBIDDEN_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c", "crit", "b64", "zip"})
MAX_TOKEN_BYTES = 8192
CACHE_MAX = 100_000


class TokenInvalid(Exception):
    """The token is not acceptable; ``reason`` is a short code safe for audit and metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AccessToken:
    subject: str
    client_id: str
    scope: frozenset[str]
    expires_at: int
    jti: str
    claims: dict[str, Any]


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


_HEADERS: dict[bytes, bytes] = {}


def sign_compact(header: dict[str, Any], claims: dict[str, Any], key: SigningJWK) -> str:
    """A compact JWS (RFC 7515 §7.1) signed with one of our own keys.

    The token endpoint's hottest step, so it calls the signature primitive directly instead
    of a general JOSE library (whose per-call registry and header checks cost more than the
    ECDSA signature itself).  Only our key ring's keys reach this function; the algorithm is
    the key's own (``header["alg"]`` must match it).  Verification stays with joserfc.
    """
    alg = header["alg"]
    if alg != key.alg:
        raise ValueError(f"key {key.kid} is for {key.alg}, not {alg}")
    head = orjson.dumps(header)
    encoded = _HEADERS.get(head)
    if encoded is None:  # a handful of distinct headers (alg, kid, typ): encode each once
        encoded = _b64(head)
        if len(_HEADERS) > 64:
            _HEADERS.clear()
        _HEADERS[head] = encoded
    signing_input = encoded + b"." + _b64(orjson.dumps(claims))
    if alg == "ES256":
        r, s_ = decode_dss_signature(key.private_key.sign(signing_input, ECDSA(SHA256())))
        sig = r.to_bytes(32, "big") + s_.to_bytes(32, "big")
    elif alg == "RS256":
        sig = key.private_key.sign(signing_input, PKCS1v15(), SHA256())
    elif alg == "SM2SM3":
        private = key.private_key
        assert private is not None
        sig = bytes(private.sign(signing_input, encoding="raw"))
    else:
        raise ValueError(f"unsupported signing algorithm {alg}")
    return (signing_input + b"." + _b64(sig)).decode("ascii")


class TokenIssuer:
    def __init__(self, keyring: KeyRing, issuer: str, audience: str, ttl: int,
                 alg: str = "ES256") -> None:
        self.keyring, self.issuer, self.audience, self.ttl, self.alg = (
            keyring, issuer, audience, ttl, canonical_alg(alg)
        )

    def issue_access_token(self, *, subject: str, client_id: str, scope: str,
                           extra: dict[str, Any] | None = None) -> str:
        return self.issue_access_token_with_id(subject=subject, client_id=client_id, scope=scope,
                                               extra=extra)[0]

    def issue_access_token_with_id(self, *, subject: str, client_id: str, scope: str,
                                   extra: dict[str, Any] | None = None) -> tuple[str, str, int]:
        """The token, its ``jti`` and its expiry (for revocation bookkeeping)."""
        key = self.keyring.signing_key(self.alg)
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.audience,
            "client_id": client_id,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl,
            "jti": random_hex(16),  # 128 bits from the OS CSPRNG, read in blocks
        }
        if scope:
            claims["scope"] = scope
        if extra:
            claims.update({k: v for k, v in extra.items() if k not in claims})
        header = {"alg": self.alg, "kid": key.kid, "typ": ACCESS_TOKEN_TYP}
        return sign_compact(header, claims, key), claims["jti"], claims["exp"]

    def issue_id_token(self, *, client_id: str, alg: str, claims: dict[str, Any],
                       ttl: int | None = None) -> str:
        """An OpenID Connect ID token (OIDC Core §2) signed with the client's chosen algorithm."""
        alg = canonical_alg(alg)
        key = self.keyring.signing_key(alg)
        now = int(time.time())
        # never longer than an access token: key rotation retires a key one access-token
        # lifetime after it stops signing (keys.KeyRing.rotate)
        ttl = self.ttl if ttl is None else min(ttl, self.ttl)
        body = {"iss": self.issuer, "aud": client_id, "azp": client_id, "iat": now,
                "exp": now + ttl, **claims}
        header = {"alg": alg, "kid": key.kid, "typ": ID_TOKEN_TYP}
        return sign_compact(header, body, key)


class AccessTokenVerifier:
    """``keys``: a live :class:`KeyRing` (follows rotation; the cache is dropped whenever the
    set of trusted keys changes, so a retired key's tokens stop at once) or a fixed KeySet."""

    def __init__(self, keys: KeySet | KeyRing, issuer: str, audience: str, leeway: int = 30,
                 algorithms: tuple[str, ...] = ALLOWED_ALGS,
                 revocations: RevocationList | None = None) -> None:
        self._keys, self.issuer, self.audience, self.leeway = keys, issuer, audience, leeway
        self._generation = keys.generation if isinstance(keys, KeyRing) else 0
        self.revocations = revocations
        self.algorithms = list(algorithms)
        self._cache: dict[bytes, AccessToken] = {}
        self._lock = threading.Lock()

    @property
    def keyset(self) -> KeySet:
        keys = self._keys
        if not isinstance(keys, KeyRing):
            return keys
        keyset = keys.keyset  # refreshes the ring
        if keys.generation != self._generation:
            with self._lock:
                self._cache.clear()
                self._generation = keys.generation
        return keyset

    def verify(self, token: str) -> AccessToken:
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenInvalid("too_large", "the access token is too large")
        if isinstance(self._keys, KeyRing):
            self._keys.refresh()
            if self._keys.generation != self._generation:
                _ = self.keyset  # the trusted keys changed: forget every verified token
        digest = hashlib.sha256(token.encode("ascii", "replace")).digest()
        now = time.time()
        hit = self._cache.get(digest)
        if hit is not None:
            if hit.expires_at + self.leeway > now:
                self._check_revoked(hit)
                return hit
            self._cache.pop(digest, None)
            raise TokenInvalid("expired", "the access token has expired")
        result = self._verify_uncached(token, now)
        self._check_revoked(result)
        with self._lock:
            if len(self._cache) >= CACHE_MAX:
                self._evict(now)
            self._cache[digest] = result
        return result

    def _check_revoked(self, token: AccessToken) -> None:
        # consulted on every call, cache hit or not: the cache must not hide a revocation
        if self.revocations is None:
            return
        try:
            revoked = self.revocations.is_revoked(token.jti)
        except RevocationUnavailable as exc:
            raise TokenInvalid("revocation_unavailable",
                               "token revocation status is unavailable") from exc
        if revoked:
            raise TokenInvalid("revoked", "the access token has been revoked")

    def forget(self, token: str) -> None:
        """Drop a token from the cache (revocation)."""
        self._cache.pop(hashlib.sha256(token.encode("ascii", "replace")).digest(), None)

    def _evict(self, now: float) -> None:
        for k in [k for k, v in self._cache.items() if v.expires_at + self.leeway <= now]:
            del self._cache[k]
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()

    def _verify_uncached(self, token: str, now: float) -> AccessToken:
        if token.count(".") != 2:
            raise TokenInvalid("malformed", "the access token is not a signed JWT")
        try:
            decoded = jwt.decode(token, self.keyset, algorithms=self.algorithms)
        except JoseError as exc:
            raise TokenInvalid("bad_signature", f"the access token does not verify: {exc.error}") from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise TokenInvalid("malformed", "the access token is malformed") from exc
        header, claims = decoded.header, decoded.claims
        if FORBIDDEN_HEADERS & set(header):
            raise TokenInvalid("forbidden_header", "the token header names keys or extensions")
        if header.get("typ") != ACCESS_TOKEN_TYP:
            raise TokenInvalid("wrong_type", "the token is not an access token (typ at+jwt)")
        if claims.get("iss") != self.issuer:
            raise TokenInvalid("wrong_issuer", "the access token was issued by someone else")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if self.audience not in auds:
            raise TokenInvalid("wrong_audience", "the access token is not for this API")
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
        if not isinstance(exp, int) or exp + self.leeway <= now:
            raise TokenInvalid("expired", "the access token has expired")
        if isinstance(nbf, int) and nbf - self.leeway > now:
            raise TokenInvalid("not_yet_valid", "the access token is not valid yet")
        sub, client_id = claims.get("sub"), claims.get("client_id")
        if not isinstance(sub, str) or not isinstance(client_id, str):
            raise TokenInvalid("malformed", "the access token lacks sub or client_id")
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            raise TokenInvalid("malformed", "the access token lacks a jti")
        scope = claims.get("scope", "")
        return AccessToken(
            subject=sub,
            client_id=client_id,
            scope=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            expires_at=exp,
            jti=str(claims.get("jti", "")),
            claims=dict(claims),
        )
