"""Field-level protection for records at rest (GB/T 39786 §8.4 e), GB/T 35273 personal data).

* :meth:`FieldCipher.encrypt` — SM4-GCM with the AAD bound to (field path, record id), so a
  ciphertext copied to another field or another record fails to decrypt (:class:`InvalidTag`).
  Tokens are text: ``zf1.<base64url(key-store ciphertext)>``; the key id travels inside, so
  rotated keys keep decrypting.
* :meth:`FieldCipher.encrypt_digits` — FF1-SM4 for digit strings that must keep their format
  (ID numbers, phone numbers, bank cards), with the field path as tweak. Deterministic by
  design (joins and look-ups keep working); it hides the value, not equality or length.
  FF1 ciphertext does not name its key: after rotating the FPE key, re-encrypt, or pass the
  old ``kid`` to :meth:`decrypt_digits`.
"""

from __future__ import annotations

import base64
import binascii

from .errors import MalformedInput
from .keystore import KeyKind, KeyStore

__all__ = ["FieldCipher", "field_aad"]

_PREFIX = "zf1."


def _lp(value: str) -> bytes:
    raw = value.encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


def field_aad(field: str, record_id: str) -> bytes:
    """Length-prefixed, so ("a.b", "c") and ("a", "b.c") never collide."""
    if not field or not isinstance(field, str) or not isinstance(record_id, str):
        raise MalformedInput("field path and record id must be non-empty strings")
    return b"ztgw-field-v1" + _lp(field) + _lp(record_id)


class FieldCipher:
    def __init__(self, keystore: KeyStore, *, purpose: str = "field",
                 fpe_purpose: str = "field-fpe") -> None:
        self._ks = keystore
        self._purpose = purpose
        self._fpe_purpose = fpe_purpose

    @classmethod
    def bootstrap(cls, keystore: KeyStore, *, purpose: str = "field",
                  fpe_purpose: str = "field-fpe") -> FieldCipher:
        """Create the SM4 keys if the store has none for these purposes yet."""
        for p in (purpose, fpe_purpose):
            if not keystore.records(p):
                keystore.create(KeyKind.SM4, p)
        return cls(keystore, purpose=purpose, fpe_purpose=fpe_purpose)

    def encrypt(self, value: str | bytes, *, field: str, record_id: str) -> str:
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        blob = self._ks.encrypt(self._purpose, data, field_aad(field, record_id))
        return _PREFIX + base64.urlsafe_b64encode(blob).decode("ascii").rstrip("=")

    def decrypt(self, token: str, *, field: str, record_id: str) -> bytes:
        if not isinstance(token, str) or not token.startswith(_PREFIX):
            raise MalformedInput("not a zf1 field token")
        body = token[len(_PREFIX):]
        try:
            blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise MalformedInput("bad base64url in field token") from None
        return self._ks.decrypt(self._purpose, blob, field_aad(field, record_id))

    def decrypt_text(self, token: str, *, field: str, record_id: str) -> str:
        try:
            return self.decrypt(token, field=field, record_id=record_id).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedInput("field value is not UTF-8 text") from None

    def encrypt_digits(self, value: str, *, field: str) -> str:
        _, ff1 = self._ks.ff1(self._fpe_purpose)
        return ff1.encrypt_digits(value, field.encode("utf-8"))

    def decrypt_digits(self, value: str, *, field: str, kid: str | None = None) -> str:
        _, ff1 = self._ks.ff1(self._fpe_purpose, kid)
        return ff1.decrypt_digits(value, field.encode("utf-8"))
