"""Backend seam for SM2: the system's OpenSSL 3 ``libcrypto`` through cffi (ABI mode).

Why this and not tongsuopy: tongsuopy 1.0.1 bundles Tongsuo 8.3.2, which reports itself as
"OpenSSL 1.1.1h (2020)"; its Python API signs only with the default SM2 identifier and exposes
neither ``EVP_PKEY_CTX_set1_id`` nor SM2 encryption (its speed is comparable to ``openssl
speed sm2``, within the noise of this shared machine). The system libcrypto is the library
the ``openssl`` CLI uses, receives the distribution's security updates, and implements SM2
sign/verify with any identifier (GB/T 32918.2 §6.1 Z value) and SM2 encryption
(GB/T 32918.4) natively.

This module is the only place that touches native pointers. Everything it accepts or
returns is ``bytes`` (DER keys, DER signatures, DER ciphertexts); all format parsing and
validation happens in Python before a call reaches here. No secret ever passes through
a Python ``int`` here except where the key DER is built by the caller.
"""

from __future__ import annotations

import ctypes.util
import threading
from typing import Any

from cffi import FFI

from .errors import BackendUnavailable, MalformedInput

_CDEF = """
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
typedef struct evp_md_ctx_st EVP_MD_CTX;

unsigned long OpenSSL_version_num(void);
const char *OpenSSL_version(int type);

unsigned long ERR_get_error(void);
void ERR_clear_error(void);
void ERR_error_string_n(unsigned long e, char *buf, size_t len);

EVP_PKEY *EVP_PKEY_Q_keygen(void *libctx, const char *propq, const char *type, ...);
void EVP_PKEY_free(EVP_PKEY *pkey);
int EVP_PKEY_is_a(const EVP_PKEY *pkey, const char *name);
EVP_PKEY *d2i_AutoPrivateKey(EVP_PKEY **a, const unsigned char **pp, long length);
EVP_PKEY *d2i_PUBKEY(EVP_PKEY **a, const unsigned char **pp, long length);
int i2d_PrivateKey(const EVP_PKEY *a, unsigned char **pp);
int i2d_PUBKEY(const EVP_PKEY *a, unsigned char **pp);

EVP_PKEY_CTX *EVP_PKEY_CTX_new_from_pkey(void *libctx, EVP_PKEY *pkey, const char *propq);
void EVP_PKEY_CTX_free(EVP_PKEY_CTX *ctx);
int EVP_PKEY_CTX_set1_id(EVP_PKEY_CTX *ctx, const void *id, int len);

EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
void EVP_MD_CTX_set_pkey_ctx(EVP_MD_CTX *ctx, EVP_PKEY_CTX *pctx);
const void *EVP_sm3(void);
int EVP_DigestSignInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const void *type, void *e,
                       EVP_PKEY *pkey);
int EVP_DigestVerifyInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const void *type, void *e,
                         EVP_PKEY *pkey);
int EVP_DigestSign(EVP_MD_CTX *ctx, unsigned char *sigret, size_t *siglen,
                   const unsigned char *tbs, size_t tbslen);
int EVP_DigestVerify(EVP_MD_CTX *ctx, const unsigned char *sigret, size_t siglen,
                     const unsigned char *tbs, size_t tbslen);

typedef struct ec_group_st EC_GROUP;
typedef struct ec_point_st EC_POINT;
typedef struct bignum_st BIGNUM;
int OBJ_sn2nid(const char *s);
EC_GROUP *EC_GROUP_new_by_curve_name(int nid);
void EC_GROUP_free(EC_GROUP *group);
EC_POINT *EC_POINT_new(const EC_GROUP *group);
void EC_POINT_free(EC_POINT *point);
int EC_POINT_mul(const EC_GROUP *group, EC_POINT *r, const BIGNUM *n, const EC_POINT *q,
                 const BIGNUM *m, void *ctx);
size_t EC_POINT_point2oct(const EC_GROUP *group, const EC_POINT *p, int form,
                          unsigned char *buf, size_t len, void *ctx);
BIGNUM *BN_bin2bn(const unsigned char *s, int len, BIGNUM *ret);
void BN_set_flags(BIGNUM *b, int n);
void BN_clear_free(BIGNUM *a);

int EVP_PKEY_encrypt_init(EVP_PKEY_CTX *ctx);
int EVP_PKEY_encrypt(EVP_PKEY_CTX *ctx, unsigned char *out, size_t *outlen,
                     const unsigned char *in, size_t inlen);
int EVP_PKEY_decrypt_init(EVP_PKEY_CTX *ctx);
int EVP_PKEY_decrypt(EVP_PKEY_CTX *ctx, unsigned char *out, size_t *outlen,
                     const unsigned char *in, size_t inlen);
"""

_MIN_VERSION = 0x30000000  # OpenSSL 3.0.0: provider-based SM2 with EVP_PKEY_CTX_set1_id
_SIG_MAX = 72  # DER SEQUENCE of two 33-byte INTEGERs: 2 + 2 * 35

ffi = FFI()
ffi.cdef(_CDEF)

_lib: Any = None
_load_lock = threading.Lock()


def _candidates() -> list[str]:
    names = ["libcrypto.so.3", "libcrypto.3.dylib"]
    found = ctypes.util.find_library("crypto")
    if found:
        names.append(found)
    return names


def lib() -> Any:
    """The loaded libcrypto handle (loaded once, on first use)."""
    global _lib
    if _lib is not None:
        return _lib
    with _load_lock:
        if _lib is None:
            errors: list[str] = []
            for name in _candidates():
                try:
                    handle: Any = ffi.dlopen(name)
                    version = handle.OpenSSL_version_num()
                except (OSError, AttributeError) as exc:
                    errors.append(f"{name}: {exc}")
                    continue
                if version < _MIN_VERSION:
                    errors.append(f"{name}: version 0x{version:08x} < 3.0")
                    continue
                _lib = handle
                break
            else:
                raise BackendUnavailable(
                    "OpenSSL 3 libcrypto not found (install libssl3): " + "; ".join(errors)
                )
    return _lib


def version_text() -> str:
    return str(ffi.string(lib().OpenSSL_version(0)).decode("ascii"))


def _error_text() -> str:
    """Drain the thread's OpenSSL error queue into one string."""
    L = lib()
    parts: list[str] = []
    buf = ffi.new("char[]", 256)
    while True:
        code = L.ERR_get_error()
        if code == 0:
            break
        L.ERR_error_string_n(code, buf, 256)
        parts.append(ffi.string(buf).decode("ascii", "replace"))
    return "; ".join(parts) or "unknown OpenSSL error"


class _SigContext:
    """An ``EVP_MD_CTX`` bound to an ``EVP_PKEY_CTX`` that carries the SM2 identifier.

    Re-initialised for every signature, as ``openssl speed`` does: creating the two contexts
    per call cost ~7 % of an SM2 verification. Owned by one thread only (see PKey._tls).
    """

    __slots__ = ("mctx", "pctx")

    def __init__(self, key: PKey, ident: bytes) -> None:
        L = lib()
        self.pctx = _new_pkey_ctx(key, ident)
        self.mctx = L.EVP_MD_CTX_new()
        if self.mctx == ffi.NULL:
            L.EVP_PKEY_CTX_free(self.pctx)
            raise BackendUnavailable("EVP_MD_CTX_new failed")
        L.EVP_MD_CTX_set_pkey_ctx(self.mctx, self.pctx)

    def __del__(self) -> None:
        # The MD context does not own the PKEY context (EVP_MD_CTX_set_pkey_ctx): free the
        # MD context first, then the PKEY context.
        L = _lib
        if L is not None:
            L.EVP_MD_CTX_free(self.mctx)
            L.EVP_PKEY_CTX_free(self.pctx)


_MAX_CACHED_IDS = 8


class PKey:
    """An owned ``EVP_PKEY *`` (freed with the object). Immutable after construction."""

    __slots__ = ("__weakref__", "_ptr", "_tls")

    def __init__(self, ptr: Any) -> None:
        self._ptr = ffi.gc(ptr, lib().EVP_PKEY_free)
        self._tls = threading.local()

    @property
    def ptr(self) -> Any:
        return self._ptr

    def sig_context(self, ident: bytes) -> _SigContext:
        """This thread's signing/verification context for ``ident`` (a few IDs cached)."""
        cache: dict[bytes, _SigContext] | None = getattr(self._tls, "contexts", None)
        if cache is None:
            cache = self._tls.contexts = {}
        ctx = cache.get(ident)
        if ctx is None:
            if len(cache) >= _MAX_CACHED_IDS:
                cache.pop(next(iter(cache)))
            ctx = cache[ident] = _SigContext(self, ident)
        return ctx


def _require_sm2(ptr: Any) -> Any:
    L = lib()
    if ptr == ffi.NULL:
        raise MalformedInput(f"key rejected by OpenSSL: {_error_text()}")
    # Without this check an EC key on another curve would silently produce ECDSA-with-SM3.
    if not L.EVP_PKEY_is_a(ptr, b"SM2"):
        L.EVP_PKEY_free(ptr)
        raise MalformedInput("not an SM2 key")
    return ptr


def generate_sm2() -> PKey:
    L = lib()
    ptr = L.EVP_PKEY_Q_keygen(ffi.NULL, ffi.NULL, b"SM2")
    if ptr == ffi.NULL:
        raise BackendUnavailable(f"SM2 key generation failed: {_error_text()}")
    return PKey(_require_sm2(ptr))


def load_private_der(der: bytes) -> PKey:
    """Load a PKCS#8 or RFC 5915 SM2 private key."""
    L = lib()
    buf = ffi.from_buffer(der)
    pp = ffi.new("const unsigned char **", buf)
    ptr = L.d2i_AutoPrivateKey(ffi.NULL, pp, len(der))
    return PKey(_require_sm2(ptr))


def load_public_der(der: bytes) -> PKey:
    """Load a SubjectPublicKeyInfo; OpenSSL rejects points that are not on the curve."""
    L = lib()
    buf = ffi.from_buffer(der)
    pp = ffi.new("const unsigned char **", buf)
    ptr = L.d2i_PUBKEY(ffi.NULL, pp, len(der))
    return PKey(_require_sm2(ptr))


def _i2d(func: Any, key: PKey) -> bytes:
    n = func(key.ptr, ffi.NULL)
    if n <= 0:
        raise MalformedInput(f"key export failed: {_error_text()}")
    out = ffi.new("unsigned char[]", n)
    pp = ffi.new("unsigned char **", out)
    if func(key.ptr, pp) != n:
        raise MalformedInput(f"key export failed: {_error_text()}")
    return bytes(ffi.buffer(out, n))


def export_private_der(key: PKey) -> bytes:
    """The RFC 5915 ECPrivateKey encoding OpenSSL writes for SM2 keys."""
    return _i2d(lib().i2d_PrivateKey, key)


def export_public_der(key: PKey) -> bytes:
    return _i2d(lib().i2d_PUBKEY, key)


_BN_FLG_CONSTTIME = 0x04
_POINT_CONVERSION_UNCOMPRESSED = 4


def sm2_public_point(d: bytes) -> bytes:
    """[d]G on the SM2 curve as ``04 || x || y`` (OpenSSL's constant-time ladder).

    Needed because OpenSSL 3 does not derive the public key when it decodes an
    ECPrivateKey that omits it.
    """
    L = lib()
    group = L.EC_GROUP_new_by_curve_name(L.OBJ_sn2nid(b"SM2"))
    if group == ffi.NULL:
        raise BackendUnavailable(f"SM2 curve unavailable: {_error_text()}")
    point = L.EC_POINT_new(group)
    bn = L.BN_bin2bn(d, len(d), ffi.NULL)
    try:
        if point == ffi.NULL or bn == ffi.NULL:
            raise BackendUnavailable(f"allocation failed: {_error_text()}")
        L.BN_set_flags(bn, _BN_FLG_CONSTTIME)
        if L.EC_POINT_mul(group, point, bn, ffi.NULL, ffi.NULL, ffi.NULL) != 1:
            raise MalformedInput(f"scalar multiplication failed: {_error_text()}")
        out = ffi.new("unsigned char[]", 65)
        n = L.EC_POINT_point2oct(group, point, _POINT_CONVERSION_UNCOMPRESSED, out, 65,
                                 ffi.NULL)
        if n != 65:
            raise MalformedInput(f"point encoding failed: {_error_text()}")
        return bytes(ffi.buffer(out, 65))
    finally:
        L.BN_clear_free(bn)
        L.EC_POINT_free(point)
        L.EC_GROUP_free(group)


def _new_pkey_ctx(key: PKey, ident: bytes | None) -> Any:
    L = lib()
    pctx = L.EVP_PKEY_CTX_new_from_pkey(ffi.NULL, key.ptr, ffi.NULL)
    if pctx == ffi.NULL:
        raise BackendUnavailable(f"EVP_PKEY_CTX_new failed: {_error_text()}")
    if ident is not None and L.EVP_PKEY_CTX_set1_id(pctx, ident, len(ident)) != 1:
        L.EVP_PKEY_CTX_free(pctx)
        raise MalformedInput(f"SM2 identifier rejected: {_error_text()}")
    return pctx


def sm2_sign(key: PKey, ident: bytes, data: bytes) -> bytes:
    """SM2 signature (GB/T 32918.2 §6.1, e = SM3(Z_A || M)), DER ``SEQUENCE {r, s}``."""
    L = lib()
    ctx = key.sig_context(ident)
    # Init re-applies the cached identifier and re-arms the Z computation (sm2_sig.c).
    if L.EVP_DigestSignInit(ctx.mctx, ffi.NULL, L.EVP_sm3(), ffi.NULL, key.ptr) != 1:
        raise BackendUnavailable(f"SM2 sign init failed: {_error_text()}")
    sig = ffi.new("unsigned char[]", _SIG_MAX)
    siglen = ffi.new("size_t *", _SIG_MAX)
    if L.EVP_DigestSign(ctx.mctx, sig, siglen, ffi.from_buffer(data), len(data)) != 1:
        raise BackendUnavailable(f"SM2 sign failed: {_error_text()}")
    return bytes(ffi.buffer(sig, siglen[0]))


def sm2_verify(key: PKey, ident: bytes, signature_der: bytes, data: bytes) -> bool:
    """True iff the (already well-formed) DER signature verifies."""
    L = lib()
    ctx = key.sig_context(ident)
    if L.EVP_DigestVerifyInit(ctx.mctx, ffi.NULL, L.EVP_sm3(), ffi.NULL, key.ptr) != 1:
        raise BackendUnavailable(f"SM2 verify init failed: {_error_text()}")
    rc = L.EVP_DigestVerify(ctx.mctx, signature_der, len(signature_der),
                            ffi.from_buffer(data), len(data))
    if rc != 1:
        L.ERR_clear_error()
    return bool(rc == 1)


def sm2_encrypt(key: PKey, plaintext: bytes) -> bytes:
    """SM2 public-key encryption with SM3 (GB/T 32918.4 §6.1); GM/T 0009 DER C1C3C2."""
    L = lib()
    pctx = _new_pkey_ctx(key, None)
    try:
        if L.EVP_PKEY_encrypt_init(pctx) != 1:
            raise BackendUnavailable(f"SM2 encrypt init failed: {_error_text()}")
        outlen = ffi.new("size_t *")
        src = ffi.from_buffer(plaintext)
        if L.EVP_PKEY_encrypt(pctx, ffi.NULL, outlen, src, len(plaintext)) != 1:
            raise BackendUnavailable(f"SM2 encrypt failed: {_error_text()}")
        out = ffi.new("unsigned char[]", outlen[0])
        if L.EVP_PKEY_encrypt(pctx, out, outlen, src, len(plaintext)) != 1:
            raise BackendUnavailable(f"SM2 encrypt failed: {_error_text()}")
        return bytes(ffi.buffer(out, outlen[0]))
    finally:
        L.EVP_PKEY_CTX_free(pctx)


def sm2_decrypt(key: PKey, ciphertext_der: bytes) -> bytes | None:
    """Plaintext, or None when OpenSSL rejects the ciphertext (C3 mismatch, bad C1)."""
    L = lib()
    pctx = _new_pkey_ctx(key, None)
    try:
        if L.EVP_PKEY_decrypt_init(pctx) != 1:
            raise BackendUnavailable(f"SM2 decrypt init failed: {_error_text()}")
        outlen = ffi.new("size_t *")
        src = ffi.from_buffer(ciphertext_der)
        if L.EVP_PKEY_decrypt(pctx, ffi.NULL, outlen, src, len(ciphertext_der)) != 1:
            L.ERR_clear_error()
            return None
        out = ffi.new("unsigned char[]", max(outlen[0], 1))
        rc = L.EVP_PKEY_decrypt(pctx, out, outlen, src, len(ciphertext_der))
        if rc != 1:
            L.ERR_clear_error()
            return None
        return bytes(ffi.buffer(out, outlen[0]))
    finally:
        L.EVP_PKEY_CTX_free(pctx)
