"""JWS / JWT signing behind one interface, with SM2 next to ES256, RS256 and EdDSA.

SM2 in JOSE (private algorithm — SM2 has no IANA JOSE registration):

* ``alg`` = ``"SM2SM3"``: SM2 signature (GB/T 32918.2) over the JWS signing input, SM3
  digest with Z computed from the default identifier ``1234567812345678``; the signature is
  the 64-byte ``r || s`` (like ES256, RFC 7518 §3.4).
* JWK: ``{"kty": "EC", "crv": "SM2", "x": b64url(32 bytes), "y": b64url(32 bytes)}`` (+ ``d``
  for private keys), ``use`` = ``"sig"``, ``alg`` = ``"SM2SM3"``, and a ``kid``.

The algorithm is registered in joserfc's JWS registry but is *not* "recommended", so
joserfc never picks it unless a call allows it explicitly.

Verification follows RFC 8725: the caller passes the allowed algorithms on *every* call;
``none`` and HMAC algorithms are never accepted; the header's ``kid`` selects the key and the
header's ``alg`` must equal the algorithm that key is registered for; header-embedded keys
(``jwk``, ``jku``, ``x5u``, ``x5c``) are refused; ``typ`` can be required (RFC 8725 §3.11).

Rotation (:class:`KeySet`): ``rotate(alg)`` adds a key and makes it the signing key;
older keys stay in the set for verification only and in the JWKS until removed.
"""

from __future__ import annotations

import functools
import json
import re
import time
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    JoseError,
    SecurityWarning,
)
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey
from joserfc.jws import JWSRegistry
from joserfc.jwt import JWTClaimsRegistry
from joserfc.util import int_to_base64, to_bytes, urlsafe_b64decode, urlsafe_b64encode

from .constants import JWS_ALGORITHMS
from .errors import (
    InvalidClaims,
    InvalidSignature,
    KeyNotFound,
    MalformedInput,
    UnsupportedAlgorithm,
)
from .sm2 import SM2PrivateKey, SM2PublicKey

__all__ = [
    "SM2JWK",
    "SM2_ALG",
    "KeySet",
    "Signer",
    "SigningKey",
    "sign_jws",
    "sign_jwt",
    "verify_jws",
    "verify_jwt",
]

SM2_ALG = "SM2SM3"
_KID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_FORBIDDEN_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c"})
_ALG_KEY_TYPE = {"SM2SM3": "EC", "ES256": "EC", "RS256": "RSA", "EdDSA": "OKP", "Ed25519": "OKP"}


# --------------------------------------------------------------------------- SM2 JWK + alg


def _b64int(value: int) -> str:
    return str(int_to_base64(value, 32))


class SM2JWK(ECKey):
    """An SM2 key as a joserfc key (kty EC, crv SM2), backed by :mod:`.sm2`."""

    def __init__(self, key: SM2PrivateKey | SM2PublicKey,
                 parameters: Mapping[str, Any] | None = None) -> None:
        super().__init__(key, key, dict(parameters) if parameters else None)  # type: ignore[arg-type]
        self._sm2 = key

    @property
    def raw_value(self) -> Any:
        return self._sm2

    @property
    def is_private(self) -> bool:
        return isinstance(self._sm2, SM2PrivateKey)

    @property
    def public_key(self) -> SM2PublicKey:  # type: ignore[override]
        return self._sm2.public_key() if isinstance(self._sm2, SM2PrivateKey) else self._sm2

    @property
    def private_key(self) -> SM2PrivateKey | None:  # type: ignore[override]
        return self._sm2 if isinstance(self._sm2, SM2PrivateKey) else None

    @property
    def curve_name(self) -> str:
        return "SM2"

    @property
    def curve_key_size(self) -> int:
        return 256

    @property
    def dict_value(self) -> dict[str, Any]:
        if not self._dict_value:
            pub = self.public_key
            data: dict[str, Any] = {"kty": "EC", "crv": "SM2", "x": _b64int(pub.x),
                                    "y": _b64int(pub.y)}
            if isinstance(self._sm2, SM2PrivateKey):
                data["d"] = str(urlsafe_b64encode(self._sm2.private_bytes()).decode("ascii"))
            if self.extra_parameters:
                data.update(self.extra_parameters)
            self._dict_value = data
        return self._dict_value

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SM2JWK:
        if data.get("kty") != "EC" or data.get("crv") != "SM2":
            raise MalformedInput("not an SM2 JWK")
        try:
            x = int.from_bytes(urlsafe_b64decode(to_bytes(data["x"])), "big")
            y = int.from_bytes(urlsafe_b64decode(to_bytes(data["y"])), "big")
            d = urlsafe_b64decode(to_bytes(data["d"])) if "d" in data else None
        except (KeyError, ValueError, TypeError) as exc:
            raise MalformedInput(f"bad SM2 JWK: {exc}") from None
        public = SM2PublicKey.from_numbers(x, y)
        params = {k: v for k, v in data.items() if k in ("kid", "use", "alg", "key_ops")}
        if d is None:
            return cls(public, params)
        private = SM2PrivateKey.from_private_bytes(d)
        if private.public_key() != public:
            raise MalformedInput("SM2 JWK: d does not match x, y")
        return cls(private, params)


class SM2Algorithm(JWSAlgModel):
    name = SM2_ALG
    description = "SM2 signature with SM3 (GB/T 32918.2, ID 1234567812345678), r || s"
    recommended = False
    key_type = "EC"
    algorithm_security = 256

    def check_key(self, key: Any) -> None:
        super().check_key(key)
        if not isinstance(key, SM2JWK):
            raise UnsupportedAlgorithm(f"{SM2_ALG} requires an SM2 key")

    def sign(self, msg: bytes, key: Any) -> bytes:
        private = key.private_key
        if private is None:
            raise UnsupportedAlgorithm("an SM2 public key cannot sign")
        return bytes(private.sign(msg, encoding="raw"))

    def verify(self, msg: bytes, sig: bytes, key: Any) -> bool:
        try:
            key.public_key.verify(sig, msg, encoding="raw")
        except (InvalidSignature, MalformedInput):
            return False
        return True


JWSRegistry.register(SM2Algorithm())


# --------------------------------------------------------------------------- key set


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    alg: str
    key: Any  # a joserfc key: SM2JWK, ECKey, RSAKey or OKPKey


class KeySet:
    """Keys by ``kid``; one of them signs, all of them verify."""

    def __init__(self) -> None:
        self._keys: dict[str, SigningKey] = {}
        self._active: str | None = None

    # -- building
    def add(self, key: Any, *, kid: str, alg: str, activate: bool = False) -> SigningKey:
        if alg not in JWS_ALGORITHMS:
            raise UnsupportedAlgorithm(f"{alg!r} is not an allowed JWS algorithm")
        if not _KID.match(kid):
            raise MalformedInput("kid must match [A-Za-z0-9._-]{1,64}")
        if kid in self._keys:
            raise MalformedInput(f"duplicate kid {kid!r}")
        if isinstance(key, SM2PrivateKey | SM2PublicKey):
            key = SM2JWK(key)
        if getattr(key, "key_type", None) != _ALG_KEY_TYPE[alg]:
            raise UnsupportedAlgorithm(f"key type does not fit {alg}")
        params = {"kid": kid, "alg": alg, "use": "sig"}
        if isinstance(key, SM2JWK):
            key = SM2JWK(key.raw_value, params)
        else:
            key = type(key).import_key(key.as_dict(private=key.is_private), params)
        try:
            _alg_model(alg).check_key(key)
        except JoseError as exc:
            raise UnsupportedAlgorithm(f"key does not fit {alg}: {exc}") from None
        entry = SigningKey(kid, alg, key)
        self._keys[kid] = entry
        if activate:
            self.activate(kid)
        return entry

    def generate(self, alg: str, *, kid: str | None = None, activate: bool = True) -> str:
        """Generate a key for ``alg`` (SM2SM3, ES256, RS256 (3072-bit), EdDSA/Ed25519)."""
        key: Any
        if alg == SM2_ALG:
            key = SM2PrivateKey.generate()
        elif alg == "ES256":
            key = ECKey.generate_key("P-256")
        elif alg == "RS256":
            key = RSAKey.generate_key(3072)
        elif alg in ("EdDSA", "Ed25519"):
            key = OKPKey.generate_key("Ed25519")
        else:
            raise UnsupportedAlgorithm(f"cannot generate keys for {alg!r}")
        kid = kid or f"{alg.lower()}-{int(time.time())}-{len(self._keys)}"
        self.add(key, kid=kid, alg=alg, activate=activate)
        return kid

    def activate(self, kid: str) -> None:
        entry = self.get(kid)
        if not entry.key.is_private:
            raise UnsupportedAlgorithm(f"{kid!r} is a public key and cannot sign")
        self._active = kid

    def rotate(self, alg: str | None = None) -> str:
        """New signing key (same algorithm unless given); old keys become verify-only."""
        alg = alg or (self.signing_key().alg if self._active else SM2_ALG)
        return self.generate(alg, activate=True)

    def remove(self, kid: str) -> None:
        self.get(kid)
        del self._keys[kid]
        if self._active == kid:
            self._active = None

    # -- lookup
    def get(self, kid: str) -> SigningKey:
        if not isinstance(kid, str) or not _KID.match(kid):
            raise MalformedInput("invalid kid")  # RFC 8725 §3.10: never trust kid content
        try:
            return self._keys[kid]
        except KeyError:
            raise KeyNotFound(f"unknown kid {kid!r}") from None

    def signing_key(self) -> SigningKey:
        if self._active is None:
            raise KeyNotFound("no active signing key")
        return self._keys[self._active]

    def kids(self) -> list[str]:
        return list(self._keys)

    # -- JWKS
    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """Public JWK Set (RFC 7517 §5) for ``/.well-known/jwks.json``."""
        return {"keys": [_public_dict(e.key) for e in self._keys.values()]}

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> KeySet:
        """A verify-only key set from a public JWKS (each key needs kid and alg)."""
        out = cls()
        for data in jwks.get("keys", []):
            if not isinstance(data, Mapping) or "kid" not in data or "alg" not in data:
                raise MalformedInput("JWKS keys need kid and alg")
            if any(k in data for k in ("d", "p", "q", "dp", "dq", "qi")):
                raise MalformedInput("private key material in a public JWKS")
            key = _import_jwk(data)
            out.add(key, kid=str(data["kid"]), alg=str(data["alg"]))
        return out


def _public_dict(key: Any) -> dict[str, Any]:
    data = key.as_dict(private=False) if not isinstance(key, SM2JWK) else key.dict_value
    data.pop("d", None)
    return dict(data)


def _import_jwk(data: Mapping[str, Any]) -> Any:
    if data.get("kty") == "EC" and data.get("crv") == "SM2":
        return SM2JWK.from_dict(data)
    try:
        return JWKRegistry.import_key(dict(data))
    except (JoseError, ValueError) as exc:
        raise MalformedInput(f"bad JWK: {exc}") from None


def _alg_model(alg: str) -> Any:
    model = JWSRegistry.algorithms.get(alg)
    if model is None:
        raise UnsupportedAlgorithm(f"unknown JWS algorithm {alg!r}")
    return model


@functools.lru_cache(maxsize=16)
def _registry(alg: str) -> JWSRegistry:
    """A joserfc registry that allows exactly ``alg`` (cached: it is immutable in use)."""
    return JWSRegistry(algorithms=[alg])


# --------------------------------------------------------------------------- sign / verify


def sign_jws(keys: KeySet, payload: bytes, *, typ: str | None = None,
             headers: Mapping[str, Any] | None = None) -> str:
    """Compact JWS with the key set's signing key; ``kid`` and ``alg`` come from the key."""
    entry = keys.signing_key()
    protected: dict[str, Any] = dict(headers or {})
    if _FORBIDDEN_HEADERS & protected.keys():
        raise MalformedInput("embedding keys in the header is not allowed")
    protected.update({"alg": entry.alg, "kid": entry.kid})
    if typ:
        protected["typ"] = typ
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc flags "EdDSA" (RFC 9864)
        return str(jws.serialize_compact(protected, payload, entry.key,
                                         registry=_registry(entry.alg)))


def sign_jwt(keys: KeySet, claims: Mapping[str, Any], *, typ: str = "JWT") -> str:
    payload = json.dumps(dict(claims), separators=(",", ":"), ensure_ascii=False)
    return sign_jws(keys, payload.encode("utf-8"), typ=typ)


def verify_jws(keys: KeySet, token: str | bytes, *, algorithms: Collection[str],
               typ: str | None = None) -> tuple[dict[str, Any], bytes]:
    """Verify a compact JWS; return (protected header, payload).

    :class:`MalformedInput` — not a compact JWS, bad kid, forbidden header;
    :class:`UnsupportedAlgorithm` — ``alg`` not allowed by this call or not the key's;
    :class:`KeyNotFound` — unknown ``kid``; :class:`InvalidSignature` — forged or altered.
    """
    allowed = set(algorithms)
    if not allowed or not allowed <= JWS_ALGORITHMS:
        raise UnsupportedAlgorithm(
            f"algorithms must be a non-empty subset of {sorted(JWS_ALGORITHMS)}"
        )
    try:
        obj = jws.extract_compact(to_bytes(token))
    except (JoseError, ValueError, TypeError) as exc:
        raise MalformedInput(f"not a compact JWS: {exc}") from None
    header = obj.headers()
    alg, kid = header.get("alg"), header.get("kid")
    if _FORBIDDEN_HEADERS & header.keys():
        raise MalformedInput("token header embeds key material or key URLs")
    if not isinstance(alg, str) or alg not in allowed:
        raise UnsupportedAlgorithm(f"alg {alg!r} is not allowed here")
    if kid is None:
        raise MalformedInput("token has no kid")
    entry = keys.get(kid)
    if entry.alg != alg:
        raise UnsupportedAlgorithm(f"key {kid!r} is for {entry.alg}, token says {alg}")
    if typ is not None and str(header.get("typ", "")).lower() != typ.lower():
        raise InvalidClaims(f"typ must be {typ!r}")
    try:
        if alg == "EdDSA":  # joserfc warns that RFC 9864 deprecates the name; accepted here
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SecurityWarning)
                ok = jws.validate_compact(obj, entry.key, registry=_registry(alg))
        else:
            ok = jws.validate_compact(obj, entry.key, registry=_registry(alg))
    except BadSignatureError:
        ok = False
    except JoseError as exc:
        raise MalformedInput(f"JWS rejected: {exc}") from None
    if not ok:
        raise InvalidSignature("JWS signature does not verify")
    return dict(header), bytes(obj.payload)


@functools.lru_cache(maxsize=64)
def _claims_registry(issuer: str | None, audience: str | None, leeway: int,
                     required: tuple[str, ...]) -> JWTClaimsRegistry:
    options: dict[str, Any] = {name: {"essential": True} for name in required}
    if issuer is not None:
        options["iss"] = {"essential": True, "value": issuer}
    if audience is not None:
        options["aud"] = {"essential": True, "value": audience}
    return JWTClaimsRegistry(leeway=leeway, **options)  # "now" is read at each validate


def verify_jwt(keys: KeySet, token: str | bytes, *, algorithms: Collection[str],
               issuer: str | None = None, audience: str | None = None,
               typ: str | None = "JWT", leeway: int = 60,
               required: Collection[str] = ("exp",), now: int | None = None) -> dict[str, Any]:
    """Verify signature then claims (exp/nbf/iat with ``leeway`` seconds, iss, aud).

    Claim failures raise :class:`InvalidClaims`.
    """
    _, payload = verify_jws(keys, token, algorithms=algorithms, typ=typ)
    try:
        claims = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MalformedInput("JWT payload is not UTF-8 JSON") from None
    if not isinstance(claims, dict):
        raise MalformedInput("JWT payload is not a JSON object")
    if now is None:
        registry = _claims_registry(issuer, audience, leeway, tuple(required))
    else:
        options: dict[str, Any] = {name: {"essential": True} for name in required}
        options.update({k: {"essential": True, "value": v}
                        for k, v in (("iss", issuer), ("aud", audience)) if v is not None})
        registry = JWTClaimsRegistry(now=now, leeway=leeway, **options)
    try:
        registry.validate(claims)
    except ExpiredTokenError as exc:
        raise InvalidClaims(f"token expired: {exc}") from None
    except ClaimError as exc:
        raise InvalidClaims(str(exc)) from None
    return claims


@dataclass(frozen=True, slots=True)
class Signer:
    """One kind of token, configured once: key set, allowed algorithms, iss/aud/typ.

    RFC 8725 §3.12: give each kind of JWT its own ``Signer`` (own ``typ``, audience and
    allow-list), so a token of one kind is never accepted as another.
    """

    keys: KeySet
    algorithms: frozenset[str]
    issuer: str | None = None
    audience: str | None = None
    typ: str = "JWT"
    leeway: int = 60
    required: tuple[str, ...] = ("exp",)

    def sign(self, claims: Mapping[str, Any]) -> str:
        if self.keys.signing_key().alg not in self.algorithms:
            raise UnsupportedAlgorithm("the active key's algorithm is not in this signer's list")
        full = dict(claims)
        if self.issuer is not None:
            full.setdefault("iss", self.issuer)
        if self.audience is not None:
            full.setdefault("aud", self.audience)
        return sign_jwt(self.keys, full, typ=self.typ)

    def verify(self, token: str | bytes) -> dict[str, Any]:
        return verify_jwt(self.keys, token, algorithms=self.algorithms, issuer=self.issuer,
                          audience=self.audience, typ=self.typ, leeway=self.leeway,
                          required=self.required)
