"""Format-preserving encryption FF1 (NIST SP 800-38G Rev. 1, Algorithms 7 and 8) over SM4.

FF1 is specified for AES; the construction only needs a 128-bit block cipher, so ztgw runs
it with SM4 (the GB/T 39786 algorithm). The implementation is proved with NIST's AES
samples (tests/vectors/ff1/) — AES is accepted *only* for that purpose.

FF1 is deterministic: equal (key, tweak, plaintext) give equal ciphertext. Use a tweak that
binds the context (for example the field name), and remember that format-preserving
ciphertext reveals the length and the format. The domain radix**len must be at least
1,000,000 (SP 800-38G Rev. 1 §5.2), so a digit string needs 6 or more digits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .constants import FF1_MAX_LEN, FF1_MIN_DOMAIN, SM4_KEY_BYTES
from .errors import MalformedInput

__all__ = ["ALPHABET", "FF1"]

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_MAX_TWEAK = 256
_ROUNDS = 10


class FF1:
    """FF1 over a 128-bit block cipher for numeral strings in radix 2..36."""

    __slots__ = ("_algorithm", "_alphabet", "_key", "radix")

    def __init__(self, key: bytes, radix: int = 10, *,
                 algorithm: Literal["sm4", "aes"] = "sm4") -> None:
        if not 2 <= radix <= len(ALPHABET):
            raise MalformedInput("radix must be in [2, 36]")
        if algorithm == "sm4":
            if len(key) != SM4_KEY_BYTES:
                raise MalformedInput("SM4 key must be 16 bytes")
        elif algorithm == "aes":  # NIST sample vectors only
            if len(key) not in (16, 24, 32):
                raise MalformedInput("AES key must be 16, 24 or 32 bytes")
        else:
            raise MalformedInput(f"unknown block cipher {algorithm!r}")
        self._key = bytes(key)
        self._algorithm = algorithm
        self._alphabet = ALPHABET[:radix]
        self.radix = radix

    # -- public API on strings
    def encrypt(self, numerals: str, tweak: bytes = b"") -> str:
        return self._render(self._crypt(self._parse(numerals), tweak, encrypt=True))

    def decrypt(self, numerals: str, tweak: bytes = b"") -> str:
        return self._render(self._crypt(self._parse(numerals), tweak, encrypt=False))

    def encrypt_digits(self, value: str, tweak: bytes = b"") -> str:
        """Encrypt only the decimal digits of ``value``; other characters (spaces, '-',
        a trailing 'X' check character) stay in place. Requires radix 10."""
        return self._map_digits(value, tweak, encrypt=True)

    def decrypt_digits(self, value: str, tweak: bytes = b"") -> str:
        return self._map_digits(value, tweak, encrypt=False)

    # -- internals
    def _map_digits(self, value: str, tweak: bytes, *, encrypt: bool) -> str:
        if self.radix != 10:
            raise MalformedInput("digit helpers need radix 10")
        positions = [i for i, ch in enumerate(value) if "0" <= ch <= "9"]
        digits = "".join(value[i] for i in positions)
        out = self.encrypt(digits, tweak) if encrypt else self.decrypt(digits, tweak)
        chars = list(value)
        for i, ch in zip(positions, out, strict=True):
            chars[i] = ch
        return "".join(chars)

    def _parse(self, numerals: str) -> list[int]:
        if not isinstance(numerals, str):
            raise MalformedInput("FF1 input must be str")
        try:
            return [self._alphabet.index(ch) for ch in numerals.lower()]
        except ValueError:
            raise MalformedInput(f"input is not a radix-{self.radix} numeral string") from None

    def _render(self, numerals: list[int]) -> str:
        return "".join(self._alphabet[x] for x in numerals)

    def _block_encryptor(self) -> Callable[[bytes], bytes]:
        algo = algorithms.SM4(self._key) if self._algorithm == "sm4" else algorithms.AES(self._key)
        ctx = Cipher(algo, modes.ECB()).encryptor()  # noqa: S305 - FF1's PRF/CIPH are ECB by spec
        return ctx.update

    def _crypt(self, x: list[int], tweak: bytes, *, encrypt: bool) -> list[int]:
        radix, n, t = self.radix, len(x), len(tweak)
        if n < 2 or n > FF1_MAX_LEN:
            raise MalformedInput(f"FF1 input length must be in [2, {FF1_MAX_LEN}]")
        if radix**n < FF1_MIN_DOMAIN:
            raise MalformedInput(f"FF1 domain radix**len must be >= {FF1_MIN_DOMAIN}")
        if t > _MAX_TWEAK:
            raise MalformedInput("FF1 tweak too long")
        ciph = self._block_encryptor()
        u, v = n // 2, n - n // 2
        b = ((radix**v - 1).bit_length() + 7) // 8  # ceil(ceil(v*log2(radix)) / 8)
        d = 4 * ((b + 3) // 4) + 4
        p = (bytes([1, 2, 1]) + radix.to_bytes(3, "big") + bytes([10, u % 256])
             + n.to_bytes(4, "big") + t.to_bytes(4, "big"))
        prefix = tweak + bytes((-t - b - 1) % 16)
        mod_u, mod_v = radix**u, radix**v

        def num(xs: list[int]) -> int:
            value = 0
            for digit in xs:
                value = value * radix + digit
            return value

        def string(value: int, m: int) -> list[int]:
            out = [0] * m
            for i in range(m - 1, -1, -1):
                value, out[i] = divmod(value, radix)
            return out

        def round_value(i: int, half: list[int]) -> int:
            q = prefix + bytes([i]) + num(half).to_bytes(b, "big")
            r = bytes(16)
            data = p + q
            for off in range(0, len(data), 16):  # PRF = CBC-MAC with zero IV
                r = ciph(bytes(a ^ c for a, c in zip(r, data[off : off + 16], strict=True)))
            s = r
            for j in range(1, (d + 15) // 16):
                s += ciph(bytes(a ^ c for a, c in zip(r, j.to_bytes(16, "big"), strict=True)))
            return int.from_bytes(s[:d], "big")

        a, bb = x[:u], x[u:]
        if encrypt:
            for i in range(_ROUNDS):
                m, mod = (u, mod_u) if i % 2 == 0 else (v, mod_v)
                c = (num(a) + round_value(i, bb)) % mod
                a, bb = bb, string(c, m)
        else:
            for i in range(_ROUNDS - 1, -1, -1):
                m, mod = (u, mod_u) if i % 2 == 0 else (v, mod_v)
                c = (num(bb) - round_value(i, a)) % mod
                bb, a = a, string(c, m)
        return a + bb
