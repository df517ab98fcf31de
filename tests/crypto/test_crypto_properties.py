"""Property tests: round trips, and mutated inputs end in the *right* error type —
never a crash, never a wrong plaintext."""

from __future__ import annotations

import contextlib
import io

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ztgw.crypto import _der, sm2, sm3, sm4
from ztgw.crypto.errors import InvalidSignature, InvalidTag, MalformedInput

KEY = sm2.generate_key()
PUB = KEY.public_key()
SM4_KEY = sm4.generate_key()

fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def flip(data: bytes, bit: int) -> bytes:
    bit %= len(data) * 8
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _well_formed(sig: bytes) -> bool:
    """Independent classifier: pyca's strict DER parser plus the range rule."""
    try:
        r, s = decode_dss_signature(sig)
    except ValueError:
        return False
    return 1 <= r < sm2.N and 1 <= s < sm2.N


@fast
@given(data=st.binary(max_size=300), ident=st.binary(max_size=64))
def test_sm2_sign_verify_round_trip(data: bytes, ident: bytes) -> None:
    PUB.verify(KEY.sign(data, id=ident), data, id=ident)
    PUB.verify(KEY.sign(data, id=ident, encoding="raw"), data, id=ident, encoding="raw")


SIG = KEY.sign(b"fixed message")
RAW_SIG = KEY.sign(b"fixed message", encoding="raw")


@settings(max_examples=300, deadline=None)
@given(bit=st.integers(min_value=0))
def test_sm2_der_signature_bit_flips(bit: int) -> None:
    mutated = flip(SIG, bit)
    expected = InvalidSignature if _well_formed(mutated) else MalformedInput
    with pytest.raises(expected):
        PUB.verify(mutated, b"fixed message")


@settings(max_examples=200, deadline=None)
@given(bit=st.integers(min_value=0))
def test_sm2_raw_signature_bit_flips(bit: int) -> None:
    mutated = flip(RAW_SIG, bit)
    r, s = int.from_bytes(mutated[:32], "big"), int.from_bytes(mutated[32:], "big")
    expected = InvalidSignature if (1 <= r < sm2.N and 1 <= s < sm2.N) else MalformedInput
    with pytest.raises(expected):
        PUB.verify(mutated, b"fixed message", encoding="raw")


@settings(max_examples=200, deadline=None)
@given(junk=st.binary(max_size=120))
def test_sm2_garbage_signatures_never_crash(junk: bytes) -> None:
    with pytest.raises((InvalidSignature, MalformedInput)):
        PUB.verify(junk, b"fixed message")


@fast
@given(data=st.binary(min_size=1, max_size=200), fmt=st.sampled_from(["der", "c1c3c2"]))
def test_sm2_encrypt_round_trip(data: bytes, fmt: str) -> None:
    assert KEY.decrypt(PUB.encrypt(data, format=fmt), format=fmt) == data


CT = {fmt: PUB.encrypt(b"a confidential message", format=fmt) for fmt in ("der", "c1c3c2")}


@settings(max_examples=200, deadline=None)
@given(bit=st.integers(min_value=0), fmt=st.sampled_from(["der", "c1c3c2"]))
def test_sm2_ciphertext_bit_flips(bit: int, fmt: str) -> None:
    with pytest.raises((MalformedInput, InvalidTag)):
        KEY.decrypt(flip(CT[fmt], bit), format=fmt)


@settings(max_examples=200, deadline=None)
@given(bit=st.integers(min_value=8 * 97))  # past C1: only C3 or C2 bits
def test_sm2_raw_ciphertext_body_flips_are_invalid_tag(bit: int) -> None:
    ct = CT["c1c3c2"]
    bit = 8 * 97 + bit % ((len(ct) - 97) * 8)
    with pytest.raises(InvalidTag):
        KEY.decrypt(flip(ct, bit), format="c1c3c2")


@fast
@given(data=st.binary(max_size=2000), aad=st.binary(max_size=64))
def test_sm4_gcm_round_trip(data: bytes, aad: bytes) -> None:
    assert sm4.gcm_decrypt(SM4_KEY, sm4.gcm_encrypt(SM4_KEY, data, aad), aad) == data


SEALED = sm4.gcm_encrypt(SM4_KEY, b"field value 110101199003074514", b"person.id|42")


@settings(max_examples=300, deadline=None)
@given(bit=st.integers(min_value=0))
def test_sm4_gcm_bit_flips_are_invalid_tag(bit: int) -> None:
    with pytest.raises(InvalidTag):
        sm4.gcm_decrypt(SM4_KEY, flip(SEALED, bit), b"person.id|42")


@fast
@given(aad=st.binary(max_size=32), cut=st.integers(min_value=0, max_value=60))
def test_sm4_gcm_wrong_aad_or_truncation(aad: bytes, cut: int) -> None:
    if aad != b"person.id|42":
        with pytest.raises(InvalidTag):
            sm4.gcm_decrypt(SM4_KEY, SEALED, aad)
    with pytest.raises((InvalidTag, MalformedInput)):
        sm4.gcm_decrypt(SM4_KEY, SEALED[: len(SEALED) - 1 - cut], b"person.id|42")


@fast
@given(data=st.binary(max_size=3000), mode=st.sampled_from(["cbc", "ctr", "gcm"]),
       chunk=st.integers(min_value=1, max_value=700))
def test_sm4_streaming_equals_one_shot(data: bytes, mode: str, chunk: int) -> None:
    iv = bytes(range(12 if mode == "gcm" else 16))
    src, dst = io.BytesIO(data), io.BytesIO()
    enc = sm4.SM4Encryptor(mode, SM4_KEY, iv)
    out = b"".join(enc.update(data[i : i + chunk]) for i in range(0, len(data), chunk))
    out += enc.finalize() + (enc.tag or b"")
    sm4.encrypt_stream(src, dst, mode, SM4_KEY, iv)
    assert dst.getvalue() == out
    dec = sm4.SM4Decryptor(mode, SM4_KEY, iv)
    back = b"".join(dec.update(out[i : i + chunk]) for i in range(0, len(out), chunk))
    assert back + dec.finalize() == data


@fast
@given(data=st.binary(max_size=500))
def test_sm4_cbc_wrong_key_never_returns_plaintext_silently(data: bytes) -> None:
    iv = bytes(16)
    ct = sm4.cbc_encrypt(SM4_KEY, iv, data)
    try:
        out = sm4.cbc_decrypt(sm4.generate_key(), iv, ct)
    except MalformedInput:
        return
    assert out != data or data == b""  # CBC has no integrity: garbage, never the plaintext


@given(value=st.integers(min_value=-(2**300), max_value=2**300))
def test_der_integer_round_trip(value: int) -> None:
    el = _der.read_single(_der.integer(value))
    assert _der.decode_integer(el, unsigned=False) == value


@given(data=st.binary(max_size=80))
def test_der_reader_never_crashes(data: bytes) -> None:
    with contextlib.suppress(MalformedInput):
        _der.read_sequence(data)


@given(key=st.binary(min_size=16, max_size=100), data=st.binary(max_size=200))
def test_hmac_sm3_matches_stdlib(key: bytes, data: bytes) -> None:
    import hmac as std

    assert sm3.hmac(key, data) == std.new(key, data, "sm3").digest()
    sm3.hmac_verify(key, data, sm3.hmac(key, data))
    with pytest.raises(InvalidSignature):
        sm3.hmac_verify(key, data + b"!", sm3.hmac(key, data))


@given(data=st.binary(max_size=300), key=st.binary(min_size=16, max_size=40))
def test_sm3_hashlib_and_pyca_paths_agree(data: bytes, key: bytes) -> None:
    fast = (sm3.digest(data), sm3.hmac(key, data), sm3.pbkdf2(data, b"salt", 3, 40))
    original = sm3._HASHLIB
    sm3._HASHLIB = False
    try:
        slow = (sm3.digest(data), sm3.hmac(key, data), sm3.pbkdf2(data, b"salt", 3, 40))
        h = sm3.SM3(data[:10])
        h.update(data[10:])
        assert h.digest() == fast[0]
    finally:
        sm3._HASHLIB = original
    assert fast == slow
