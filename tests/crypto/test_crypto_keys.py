"""Key store, field protection and SM2 envelopes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ztgw.crypto import envelope, sm2
from ztgw.crypto.errors import InvalidSignature, InvalidTag, KeyNotFound, MalformedInput
from ztgw.crypto.fields import FieldCipher
from ztgw.crypto.keystore import (
    FileKeyStorage,
    KeyKind,
    KeyStatus,
    KeyStore,
    MasterKey,
)


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)


def test_master_key_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mk = MasterKey.generate()
    (tmp_path / "hex").write_text(mk.to_hex() + "\n")
    assert MasterKey.from_file(tmp_path / "hex").kek_id == mk.kek_id
    (tmp_path / "raw").write_bytes(bytes.fromhex(mk.to_hex()))
    assert MasterKey.from_file(tmp_path / "raw").kek_id == mk.kek_id
    monkeypatch.setenv("ZTGW_CRYPTO_MASTER_KEY", mk.to_hex())
    assert MasterKey.from_env().kek_id == mk.kek_id
    os.chmod(tmp_path / "hex", 0o666)
    with pytest.raises(MalformedInput):
        MasterKey.from_file(tmp_path / "hex")
    with pytest.raises(MalformedInput):
        MasterKey.from_hex("abcd")
    assert mk.to_hex() not in repr(mk)


def test_envelope_storage_rotation_and_audit(tmp_path: Path) -> None:
    mk = MasterKey.generate()
    audit = Recorder()
    store = FileKeyStorage(tmp_path / "keys.json")
    ks = KeyStore(mk, store, on_key_use=audit)
    kid1 = ks.create(KeyKind.SM4, "records")
    blob1 = ks.encrypt("records", b"row 1", b"ctx")
    # the file holds no key in clear and is private
    text = (tmp_path / "keys.json").read_text()
    assert oct((tmp_path / "keys.json").stat().st_mode & 0o777) == "0o600"
    assert json.loads(text)["keys"][0]["kid"] == kid1
    kid2 = ks.rotate("records")
    assert kid2 != kid1 and ks.active_kid("records") == kid2
    blob2 = ks.encrypt("records", b"row 2")
    assert KeyStore.blob_kid(blob2) == kid2
    # reopen from disk with the same master key: old and new data decrypt
    ks2 = KeyStore(mk, FileKeyStorage(tmp_path / "keys.json"), on_key_use=audit)
    assert ks2.decrypt("records", blob1, b"ctx") == b"row 1"
    assert ks2.decrypt("records", blob2) == b"row 2"
    statuses = {r.kid: r.status for r in ks2.records("records")}
    assert statuses == {kid1: KeyStatus.RETIRED, kid2: KeyStatus.ACTIVE}
    assert all(r.wrapped == b"" for r in ks2.records())
    with pytest.raises(InvalidTag):
        ks2.decrypt("records", blob1, b"other ctx")
    # wrong master key cannot open the store
    with pytest.raises(KeyNotFound):
        KeyStore(MasterKey.generate(), FileKeyStorage(tmp_path / "keys.json")).decrypt(
            "records", blob1, b"ctx")
    actions = [(e["action"], e["outcome"]) for e in audit.events]
    assert ("create", "success") in actions and ("rotate", "success") in actions
    assert ("decrypt", "failure") in actions
    for e in audit.events:
        assert set(e) <= {"action", "kid", "kind", "purpose", "outcome", "timestamp", "reason"}
        assert mk.to_hex() not in json.dumps(e)


def test_tampered_key_record_detected(tmp_path: Path) -> None:
    mk = MasterKey.generate()
    ks = KeyStore(mk, FileKeyStorage(tmp_path / "k.json"))
    ks.create("sm4", "a")
    ks.create("sm4", "b")
    doc = json.loads((tmp_path / "k.json").read_text())
    # relabel a's wrapped key as b's: the AAD binding must refuse it
    doc["keys"][1]["wrapped"] = doc["keys"][0]["wrapped"]
    (tmp_path / "k.json").write_text(json.dumps(doc))
    ks2 = KeyStore(mk, FileKeyStorage(tmp_path / "k.json"))
    with pytest.raises(InvalidTag):
        ks2.encrypt("b", b"x")


def test_status_rules_and_destroy() -> None:
    audit = Recorder()
    ks = KeyStore(MasterKey.generate(), on_key_use=audit)
    kid = ks.create("sm4", "p")
    blob = ks.encrypt("p", b"x")
    ks.set_status(kid, "disabled")
    with pytest.raises(KeyNotFound):
        ks.decrypt("p", blob)
    assert audit.events[-1]["outcome"] == "failure"
    ks.set_status(kid, "retired")
    assert ks.decrypt("p", blob) == b"x"
    with pytest.raises(KeyNotFound):
        ks.encrypt("p", b"y")  # no active key any more
    ks.destroy(kid)
    with pytest.raises(KeyNotFound):
        ks.decrypt("p", blob)
    with pytest.raises(KeyNotFound):
        ks.decrypt("q", blob)  # wrong purpose
    with pytest.raises(MalformedInput):
        ks.create("hmac-sm3", "p")  # one kind per purpose


def test_rewrap_master_key() -> None:
    ks = KeyStore(MasterKey.generate())
    ks.create("sm4", "p")
    blob = ks.encrypt("p", b"x")
    new = MasterKey.generate()
    ks.rewrap(new)
    assert {r.kek_id for r in ks.records()} == {new.kek_id}
    ks._cache.clear()
    assert ks.decrypt("p", blob) == b"x"


def test_hook_failure_fails_closed() -> None:
    def broken(event: dict[str, Any]) -> None:
        if event["action"] == "encrypt":
            raise RuntimeError("audit sink down")

    ks = KeyStore(MasterKey.generate(), on_key_use=broken)
    ks.create("sm4", "p")
    with pytest.raises(RuntimeError):
        ks.encrypt("p", b"x")


def test_keystore_sm2_and_hmac() -> None:
    ks = KeyStore(MasterKey.generate())
    ks.create("sm2", "receipts")
    kid, sig = ks.sign("receipts", b"consent receipt")
    ks.verify("receipts", kid, sig, b"consent receipt")
    with pytest.raises(InvalidSignature):
        ks.verify("receipts", kid, sig, b"other")
    ks.public_key("receipts").verify(sig, b"consent receipt")
    ks.rotate("receipts")
    ks.verify("receipts", kid, sig, b"consent receipt")  # retired keys still verify
    ks.create("hmac-sm3", "pseudonym")
    k1, tag = ks.mac("pseudonym", b"110101199003074514")
    assert ks.mac("pseudonym", b"110101199003074514") == (k1, tag)  # stable pseudonym
    ks.mac_verify("pseudonym", k1, b"110101199003074514", tag)
    with pytest.raises(InvalidSignature):
        ks.mac_verify("pseudonym", k1, b"other", tag)


def test_field_cipher_binding() -> None:
    ks = KeyStore(MasterKey.generate())
    fc = FieldCipher.bootstrap(ks)
    tok = fc.encrypt("110101199003074514", field="person.id_number", record_id="42")
    assert tok.startswith("zf1.")
    assert fc.decrypt_text(tok, field="person.id_number", record_id="42") == \
        "110101199003074514"
    with pytest.raises(InvalidTag):
        fc.decrypt(tok, field="person.phone", record_id="42")
    with pytest.raises(InvalidTag):
        fc.decrypt(tok, field="person.id_number", record_id="43")
    with pytest.raises(MalformedInput):
        fc.decrypt("zf1.!!!", field="person.id_number", record_id="42")
    ks.rotate("field")
    assert fc.decrypt(tok, field="person.id_number", record_id="42")  # old key still reads
    phone = "13800138000"
    enc = fc.encrypt_digits(phone, field="person.phone")
    assert len(enc) == 11 and enc.isdigit() and enc != phone
    assert fc.decrypt_digits(enc, field="person.phone") == phone


def test_sm2_envelope() -> None:
    key = sm2.generate_key()
    sealed = envelope.seal(key.public_key(), b"x" * 100_000, b"bundle-7")
    assert envelope.open_sealed(key, sealed, b"bundle-7") == b"x" * 100_000
    with pytest.raises(InvalidTag):
        envelope.open_sealed(key, sealed, b"bundle-8")
    with pytest.raises(InvalidTag):
        envelope.open_sealed(sm2.generate_key(), sealed, b"bundle-7")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(InvalidTag):
        envelope.open_sealed(key, tampered, b"bundle-7")
    with pytest.raises(MalformedInput):
        envelope.open_sealed(key, b"XX" + sealed[2:])


def test_purpose_and_kid_limits(tmp_path: Path) -> None:
    ks = KeyStore(MasterKey.generate(), FileKeyStorage(tmp_path / "k.json"))
    purpose = "p" * 40
    kid = ks.create("sm4", purpose)
    reopened = KeyStore(ks._master, FileKeyStorage(tmp_path / "k.json"))
    assert reopened.active_kid(purpose) == kid
    for bad in ("p" * 41, "../etc", "", ".hidden", "a b"):
        with pytest.raises(MalformedInput):
            ks.create("sm4", bad)
