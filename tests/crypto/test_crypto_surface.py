"""A guarded public surface (cf. httpx tests/test_exported_members.py) and the layering."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

CRYPTO = Path(__file__).resolve().parents[2] / "crypto"

PUBLIC = {
    "sm2": {"DEFAULT_ID", "CiphertextFormat", "SM2PrivateKey", "SM2PublicKey",
            "SignatureEncoding", "ciphertext_from_der", "ciphertext_to_der", "generate_key",
            "load_private_key", "load_public_key", "signature_from_der", "signature_to_der"},
    "sm3": {"DIGEST_SIZE", "SM3", "HMACSM3", "digest", "digest_file", "hmac", "hmac_verify",
            "kdf", "pbkdf2"},
    "sm4": {"Mode", "SM4Decryptor", "SM4Encryptor", "cbc_decrypt", "cbc_encrypt",
            "ctr_decrypt", "ctr_encrypt", "decrypt_stream", "ecb_decrypt", "ecb_encrypt",
            "encrypt_stream", "gcm_decrypt", "gcm_encrypt", "generate_key"},
    "passwords": {"SCHEME", "hash_password", "needs_rehash", "verify_password"},
    "ff1": {"ALPHABET", "FF1"},
    "fields": {"FieldCipher", "field_aad"},
    "envelope": {"open_sealed", "seal"},
    "keystore": {"FileKeyStorage", "InMemoryKeyStorage", "KeyKind", "KeyRecord", "KeyStatus",
                 "KeyStorage", "KeyStore", "KeyUseHook", "MasterKey"},
    "x509": {"EKU", "Certificate", "Name", "build_certificate", "common_name", "create_ca",
             "issue_certificate", "load_certificate", "load_certificates", "verify_chain"},
    "jose": {"SM2_ALG", "KeySet", "SM2JWK", "Signer", "SigningKey", "sign_jws", "sign_jwt",
             "verify_jws", "verify_jwt"},
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_exported_members(module: str) -> None:
    mod = importlib.import_module(f"ztgw.crypto.{module}")
    assert set(mod.__all__) == PUBLIC[module]
    for name in mod.__all__:
        assert hasattr(mod, name)


def test_error_tree() -> None:
    from ztgw.crypto import errors

    assert issubclass(errors.InvalidSignature, errors.VerificationFailed)
    assert issubclass(errors.InvalidTag, errors.VerificationFailed)
    assert not issubclass(errors.MalformedInput, errors.VerificationFailed)
    assert not issubclass(errors.InvalidSignature, ValueError)
    assert issubclass(errors.MalformedInput, ValueError)


def test_crypto_is_flat_and_self_contained() -> None:
    assert not [p for p in CRYPTO.iterdir() if p.is_dir() and p.name != "__pycache__"]
    for path in CRYPTO.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith("ztgw."), f"{path.name}: {node.module}"
                assert node.module.split(".")[0] != "gmssl", f"{path.name} uses gmssl"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] not in ("gmssl", "subprocess", "random"), \
                        f"{path.name} imports {alias.name}"
