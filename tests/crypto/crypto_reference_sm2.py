"""Test-only, pure-Python SM2 on any short-Weierstrass curve with a *chosen* nonce k.

Exists only to reproduce the fixed-k examples of GB/T 32918 (OpenSSL's EVP API cannot
take k, nor sign on the Fp-256 example curve). Not constant time, never used by ztgw.
Independent of ztgw.crypto: hashing uses ``hashlib.new("sm3")``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def sm3(data: bytes) -> bytes:
    return hashlib.new("sm3", data).digest()


@dataclass(frozen=True)
class Curve:
    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int

    @property
    def size(self) -> int:
        return (self.p.bit_length() + 7) // 8


CURVES = {
    # GB/T 32918.5-2017 recommended curve
    "sm2p256v1": Curve(
        p=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
        a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
        b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
        gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
        gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
        n=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
    ),
    # GB/T 32918.2/.4-2016 Annex A example curve over Fp-256
    "fp256-test": Curve(
        p=0x8542D69E4C044F18E8B92435BF6FF7DE457283915C45517D722EDB8B08F1DFC3,
        a=0x787968B4FA32C3FD2417842E73BBFEFF2F3C848B6831D7E0EC65228B3937E498,
        b=0x63E4C6D3B23B0C849CF84241484BFE48F61D59A5B16BA06E6E12D1DA27C5249A,
        gx=0x421DEBD61B62EAB6746434EBC3CC315E32220B3BADD50BDC4C4E6C147FEDD43D,
        gy=0x0680512BCBB42C07D47349D2153B70C4E5D7FDFCBFA36EA1A85841B9E46E09A2,
        n=0x8542D69E4C044F18E8B92435BF6FF7DD297720630485628D5AE74EE7C32E79B7,
    ),
}

Point = tuple[int, int] | None


def add(c: Curve, P: Point, Q: Point) -> Point:
    if P is None:
        return Q
    if Q is None:
        return P
    if P[0] == Q[0] and (P[1] + Q[1]) % c.p == 0:
        return None
    if P == Q:
        lam = (3 * P[0] * P[0] + c.a) * pow(2 * P[1], -1, c.p) % c.p
    else:
        lam = (Q[1] - P[1]) * pow(Q[0] - P[0], -1, c.p) % c.p
    x = (lam * lam - P[0] - Q[0]) % c.p
    return x, (lam * (P[0] - x) - P[1]) % c.p


def mul(c: Curve, k: int, P: Point) -> Point:
    R: Point = None
    while k:
        if k & 1:
            R = add(c, R, P)
        P = add(c, P, P)
        k >>= 1
    return R


def public(c: Curve, d: int) -> tuple[int, int]:
    Q = mul(c, d, (c.gx, c.gy))
    assert Q is not None
    return Q


def z_value(c: Curve, ident: bytes, Q: tuple[int, int]) -> bytes:
    s = c.size
    parts = [(len(ident) * 8).to_bytes(2, "big"), ident]
    parts += [v.to_bytes(s, "big") for v in (c.a, c.b, c.gx, c.gy, Q[0], Q[1])]
    return sm3(b"".join(parts))


def sign(c: Curve, d: int, ident: bytes, msg: bytes, k: int) -> tuple[int, int]:
    Q = public(c, d)
    e = int.from_bytes(sm3(z_value(c, ident, Q) + msg), "big")
    x1 = mul(c, k, (c.gx, c.gy))[0]  # type: ignore[index]
    r = (e + x1) % c.n
    s = pow(1 + d, -1, c.n) * (k - r * d) % c.n
    return r, s


def verify(c: Curve, Q: tuple[int, int], ident: bytes, msg: bytes, r: int, s: int) -> bool:
    if not (1 <= r < c.n and 1 <= s < c.n):
        return False
    e = int.from_bytes(sm3(z_value(c, ident, Q) + msg), "big")
    t = (r + s) % c.n
    if t == 0:
        return False
    pt = add(c, mul(c, s, (c.gx, c.gy)), mul(c, t, Q))
    return pt is not None and (e + pt[0]) % c.n == r


def kdf(z: bytes, klen: int) -> bytes:
    out = b""
    ct = 1
    while len(out) < klen:
        out += sm3(z + ct.to_bytes(4, "big"))
        ct += 1
    return out[:klen]


def encrypt(c: Curve, Q: tuple[int, int], msg: bytes, k: int) -> tuple[int, int, bytes, bytes]:
    """Return (x1, y1, C3, C2)."""
    s = c.size
    x1, y1 = mul(c, k, (c.gx, c.gy))  # type: ignore[misc]
    x2, y2 = mul(c, k, Q)  # type: ignore[misc]
    xb, yb = x2.to_bytes(s, "big"), y2.to_bytes(s, "big")
    t = kdf(xb + yb, len(msg))
    c2 = bytes(a ^ b for a, b in zip(msg, t, strict=True))
    return x1, y1, sm3(xb + msg + yb), c2
