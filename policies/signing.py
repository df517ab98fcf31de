"""SM2-signed policy bundles (GB/T 39786 §8.1 b): integrity of access-control information.

A signature covers a *manifest* of every file in the bundle folder (SM3 digest, size and
relative path, sorted), so adding, removing or altering any file — the policy or its tests —
breaks it.  The signature file ``bundle.sig`` is JSON::

    {"format": "ztgw-policy-bundle/1", "algorithm": "SM2-SM3", "signer": "<SM3 of the
     public point, hex>", "files": {"policy.yaml": "<sm3 hex>", ...}, "signature": "<base64
     DER SM2 signature over the manifest, GB/T 32918.2 with the default ID>"}

:func:`load_verified_bundle` reads every file once into memory, verifies the signature over
those bytes and parses the policy from the same bytes, so a file swapped between the check and
the parse cannot slip through.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ztgw.crypto import sm3
from ztgw.crypto.errors import CryptoError
from ztgw.crypto.sm2 import SM2PrivateKey, SM2PublicKey

from .bundle import MAX_BUNDLE_BYTES, POLICY_FILE, PolicyBundle, parse_bundle
from .errors import BundleError, BundleSignatureError

SIGNATURE_FILE = "bundle.sig"
FORMAT = "ztgw-policy-bundle/1"
ALGORITHM = "SM2-SM3"
MAX_FILES = 1000


@dataclass(frozen=True, slots=True)
class SignatureInfo:
    signer: str
    files: Mapping[str, str]


def read_bundle_files(path: Path) -> dict[str, bytes]:
    """Every regular file under the bundle folder, by POSIX relative path (no symlinks)."""
    if not path.is_dir():
        raise BundleError(f"{path} is not a bundle folder")
    files: dict[str, bytes] = {}
    total = 0
    for item in sorted(path.rglob("*")):
        rel = item.relative_to(path).as_posix()
        if item.is_symlink():
            raise BundleError(f"bundle {path} contains a symbolic link ({rel}); refused")
        if item.is_dir() or rel == SIGNATURE_FILE:
            continue
        if any(part.startswith(".") for part in item.relative_to(path).parts):
            continue  # editor swap files and the like are not part of a bundle
        data = item.read_bytes()
        total += len(data)
        if total > MAX_BUNDLE_BYTES or len(files) >= MAX_FILES:
            raise BundleError(f"bundle {path} is larger than {MAX_BUNDLE_BYTES} bytes / {MAX_FILES} files")
        files[rel] = data
    if POLICY_FILE not in files:
        raise BundleError(f"bundle {path} has no {POLICY_FILE}")
    return files


def manifest(files: Mapping[str, bytes]) -> bytes:
    lines = [FORMAT]
    for rel in sorted(files):
        lines.append(f"{sm3.digest(files[rel]).hex()} {len(files[rel])} {rel}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def signer_id(key: SM2PublicKey) -> str:
    return sm3.digest(key.to_point()).hex()


def sign_bundle(path: Path, key: SM2PrivateKey) -> SignatureInfo:
    """Write ``bundle.sig`` for the folder as it is now."""
    files = read_bundle_files(path)
    parse_bundle(_yaml(files[POLICY_FILE], path))  # never sign a bundle that does not load
    signature = key.sign(manifest(files))
    doc = {
        "format": FORMAT,
        "algorithm": ALGORITHM,
        "signer": signer_id(key.public_key()),
        "files": {rel: sm3.digest(data).hex() for rel, data in sorted(files.items())},
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    (path / SIGNATURE_FILE).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    return SignatureInfo(doc["signer"], doc["files"])


def verify_files(files: Mapping[str, bytes], sig_bytes: bytes | None,
                 trusted: Iterable[SM2PublicKey]) -> SignatureInfo:
    """Check a signature document against file contents and trusted keys, or raise."""
    if sig_bytes is None:
        raise BundleSignatureError("the bundle is not signed (no bundle.sig)")
    try:
        doc = json.loads(sig_bytes.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("algorithm") != ALGORITHM:
            raise ValueError("unknown signature format")
        signature = base64.b64decode(str(doc["signature"]), validate=True)
        listed = doc["files"]
        signer = str(doc["signer"])
        if not isinstance(listed, dict):
            raise ValueError("files is not a mapping")
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise BundleSignatureError(f"bundle.sig is malformed: {exc}") from exc
    actual = {rel: sm3.digest(data).hex() for rel, data in files.items()}
    added = sorted(set(actual) - set(listed))
    removed = sorted(set(listed) - set(actual))
    altered = sorted(r for r in set(actual) & set(listed)
                     if not hmac.compare_digest(str(listed[r]), actual[r]))
    if added or removed or altered:
        raise BundleSignatureError(
            f"the bundle was changed after signing (added {added}, removed {removed}, "
            f"altered {altered})")
    keys = [k for k in trusted if hmac.compare_digest(signer_id(k), signer)]
    if not keys:
        raise BundleSignatureError(f"the bundle is signed by {signer[:16]}…, which is not trusted")
    data = manifest(files)
    for key in keys:
        try:
            key.verify(signature, data)
            return SignatureInfo(signer, dict(listed))
        except CryptoError:
            continue
    raise BundleSignatureError("the bundle signature does not verify")


def verify_bundle(path: Path, trusted: Iterable[SM2PublicKey]) -> SignatureInfo:
    files = read_bundle_files(path)
    sig = path / SIGNATURE_FILE
    return verify_files(files, sig.read_bytes() if sig.is_file() else None, trusted)


def load_verified_bundle(path: Path, trusted: Iterable[SM2PublicKey]) -> PolicyBundle:
    """Verify and parse from the same bytes (no check-then-use gap)."""
    files = read_bundle_files(path)
    sig = path / SIGNATURE_FILE
    verify_files(files, sig.read_bytes() if sig.is_file() else None, list(trusted))
    bundle = parse_bundle(_yaml(files[POLICY_FILE], path))
    return PolicyBundle(bundle.name, bundle.version, bundle.rules, bundle.role_links,
                        path / POLICY_FILE)


def _yaml(raw: bytes, where: Path) -> Any:
    try:
        return yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BundleError(f"policy bundle {where} is not valid UTF-8 YAML: {exc}") from exc
