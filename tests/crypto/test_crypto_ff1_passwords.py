from __future__ import annotations

import pytest
from crypto_vectors import load
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgw.crypto import passwords, sm4
from ztgw.crypto.errors import InvalidPassword, MalformedInput
from ztgw.crypto.ff1 import FF1

FF1_VECTORS = load("ff1/nist_sp800-38g_aes.txt")
SM4_KEY = sm4.generate_key()


@pytest.mark.parametrize("v", FF1_VECTORS, ids=lambda v: f"sample{v['SAMPLE']}")
def test_ff1_nist_aes_samples(v: dict[str, str]) -> None:
    ff1 = FF1(bytes.fromhex(v["KEY"]), int(v["RADIX"]), algorithm="aes")
    tweak = bytes.fromhex(v.get("TWEAK", ""))
    assert ff1.encrypt(v["PT"], tweak) == v["CT"]
    assert ff1.decrypt(v["CT"], tweak) == v["PT"]


@settings(max_examples=60, deadline=None)
@given(digits=st.text(alphabet="0123456789", min_size=6, max_size=40),
       tweak=st.binary(max_size=20))
def test_ff1_sm4_round_trip(digits: str, tweak: bytes) -> None:
    ff1 = FF1(SM4_KEY)
    ct = ff1.encrypt(digits, tweak)
    assert len(ct) == len(digits) and ct.isdigit()
    assert ff1.decrypt(ct, tweak) == digits


def test_ff1_formats_and_tweak_binding() -> None:
    ff1 = FF1(SM4_KEY)
    id_number = "11010519491231002X"
    enc = ff1.encrypt_digits(id_number, b"person.id_number")
    assert enc[-1] == "X" and len(enc) == 18 and enc[:-1].isdigit()
    assert ff1.decrypt_digits(enc, b"person.id_number") == id_number
    assert ff1.decrypt_digits(enc, b"other.field") != id_number
    card = "6222 0212 3456 7890 128"
    enc_card = ff1.encrypt_digits(card, b"card")
    assert [i for i, c in enumerate(enc_card) if c == " "] == [4, 9, 14, 19]
    assert ff1.decrypt_digits(enc_card, b"card") == card
    phone = "13800138000"
    assert ff1.encrypt(phone) == ff1.encrypt(phone)  # deterministic by design
    with pytest.raises(MalformedInput):
        ff1.encrypt("12345")  # 10**5 < 1,000,000
    with pytest.raises(MalformedInput):
        ff1.encrypt("12ab56")
    with pytest.raises(MalformedInput):
        FF1(bytes(15))


def test_password_hash_and_verify() -> None:
    encoded = passwords.hash_password("correct horse 电池", iterations=100_000)
    assert encoded.startswith("$pbkdf2-sm3$i=100000$")
    passwords.verify_password("correct horse 电池", encoded)
    with pytest.raises(InvalidPassword):
        passwords.verify_password("correct horse", encoded)
    assert passwords.needs_rehash(encoded)
    assert not passwords.needs_rehash(encoded, iterations=100_000)
    assert passwords.hash_password("x", iterations=100_000) != passwords.hash_password(
        "x", iterations=100_000
    )


def test_password_nfc_normalisation() -> None:
    encoded = passwords.hash_password("caf\u00e9", iterations=100_000)
    passwords.verify_password("cafe\u0301", encoded)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "$pbkdf2-sha256$i=100000$c2FsdHNhbHRzYWx0$" + "A" * 43,
        "$pbkdf2-sm3$i=1000$c2FsdHNhbHRzYWx0$" + "A" * 43,  # too few iterations
        "$pbkdf2-sm3$i=99999999$c2FsdHNhbHRzYWx0$" + "A" * 43,
        "$pbkdf2-sm3$i=100000$c2Fsd$" + "A" * 43,
        "$pbkdf2-sm3$i=100000$c2FsdHNhbHRzYWx0$" + "A" * 10,
    ],
)
def test_password_malformed_verifiers(bad: str) -> None:
    with pytest.raises(MalformedInput):
        passwords.verify_password("pw", bad)


def test_password_too_few_iterations_refused() -> None:
    with pytest.raises(MalformedInput):
        passwords.hash_password("pw", iterations=1000)
