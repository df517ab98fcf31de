"""SM2-signed bundles: sign, verify, and every way of tampering is refused (with the CLI's
exit codes: 0 valid, 1 not valid, 2 bad input)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ztgw.crypto.sm2 import generate_key
from ztgw.gateway.demo.realm import demo_bundle_dir
from ztgw.policies.cli import app
from ztgw.policies.errors import BundleError, BundleSignatureError
from ztgw.policies.signing import SIGNATURE_FILE, load_verified_bundle, sign_bundle, verify_bundle

KEY = generate_key()


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    target = tmp_path / "demo"
    shutil.copytree(demo_bundle_dir(), target)
    sign_bundle(target, KEY)
    return target


def test_signed_bundle_verifies_and_loads(bundle: Path) -> None:
    info = verify_bundle(bundle, [KEY.public_key()])
    assert set(info.files) == {"policy.yaml", "tests/demo.yaml"}
    assert load_verified_bundle(bundle, [KEY.public_key()]).name == "demo"


def test_altered_policy_is_refused(bundle: Path) -> None:
    policy = bundle / "policy.yaml"
    policy.write_text(policy.read_text(encoding="utf-8").replace("role:suspended", "role:nobody"),
                      encoding="utf-8")
    with pytest.raises(BundleSignatureError, match="altered"):
        load_verified_bundle(bundle, [KEY.public_key()])


def test_added_and_removed_files_are_refused(bundle: Path) -> None:
    (bundle / "tests" / "extra.yaml").write_text("cases: []\n", encoding="utf-8")
    with pytest.raises(BundleSignatureError, match="added"):
        verify_bundle(bundle, [KEY.public_key()])
    (bundle / "tests" / "extra.yaml").unlink()
    (bundle / "tests" / "demo.yaml").unlink()
    with pytest.raises(BundleSignatureError, match="removed"):
        verify_bundle(bundle, [KEY.public_key()])


def test_unsigned_untrusted_and_forged_are_refused(bundle: Path) -> None:
    with pytest.raises(BundleSignatureError, match="not trusted"):
        verify_bundle(bundle, [generate_key().public_key()])
    sig = json.loads((bundle / SIGNATURE_FILE).read_text(encoding="utf-8"))
    # a forged manifest: digests recomputed by an attacker, signature left as it was
    other = generate_key()
    sign_bundle(bundle, other)
    forged = json.loads((bundle / SIGNATURE_FILE).read_text(encoding="utf-8"))
    forged["signer"] = sig["signer"]
    (bundle / SIGNATURE_FILE).write_text(json.dumps(forged), encoding="utf-8")
    with pytest.raises(BundleSignatureError, match="does not verify"):
        verify_bundle(bundle, [KEY.public_key()])
    (bundle / SIGNATURE_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(BundleSignatureError, match="malformed"):
        verify_bundle(bundle, [KEY.public_key()])
    (bundle / SIGNATURE_FILE).unlink()
    with pytest.raises(BundleSignatureError, match="not signed"):
        verify_bundle(bundle, [KEY.public_key()])


def test_symlinks_are_refused(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.yaml").write_text("x: 1\n", encoding="utf-8")
    (bundle / "link.yaml").symlink_to(tmp_path / "outside.yaml")
    with pytest.raises(BundleError, match="symbolic link"):
        verify_bundle(bundle, [KEY.public_key()])


def test_a_bundle_that_does_not_load_is_not_signed(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("bundle: x\nversion: 1\nrules: [{id: a}]\n", encoding="utf-8")
    with pytest.raises(BundleError):
        sign_bundle(tmp_path, KEY)
    assert not (tmp_path / SIGNATURE_FILE).exists()


def test_cli_keygen_sign_verify_and_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    keys = tmp_path / "keys"
    out = runner.invoke(app, ["keygen", "--out", str(keys), "--json"])
    assert out.exit_code == 0, out.output
    assert (keys / "policy-signing.key.pem").stat().st_mode & 0o077 == 0
    assert runner.invoke(app, ["keygen", "--out", str(keys)]).exit_code == 2  # never overwrite
    target = tmp_path / "b"
    shutil.copytree(demo_bundle_dir(), target)
    pub = str(keys / "policy-signing.pub.pem")
    assert runner.invoke(app, ["verify", str(target), "--pubkey", pub]).exit_code == 1
    out = runner.invoke(app, ["sign", str(target), "--key", str(keys / "policy-signing.key.pem")])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["verify", str(target), "--pubkey", pub, "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["valid"] is True
    (target / "policy.yaml").write_text((target / "policy.yaml").read_text(encoding="utf-8") + "\n",
                                        encoding="utf-8")
    out = runner.invoke(app, ["verify", str(target), "--pubkey", pub, "--json"])
    assert out.exit_code == 1 and json.loads(out.stdout)["valid"] is False
    assert runner.invoke(app, ["verify", str(tmp_path / "nope"), "--pubkey", pub]).exit_code == 2
