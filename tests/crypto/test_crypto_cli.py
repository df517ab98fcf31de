"""The ``ztgw crypto`` Typer sub-app, invoked directly with CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from crypto_vectors import needs_openssl, openssl
from typer.testing import CliRunner

from ztgw.crypto import sm3, sm4
from ztgw.crypto.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture()
def keys(tmp_path: Path) -> tuple[Path, Path]:
    code, out = run("sm2", "keygen", "--out", str(tmp_path / "k.pem"), "--pubout",
                    str(tmp_path / "p.pem"), "--json")
    assert code == 0, out
    assert json.loads(out)["private_key"].endswith("k.pem")
    assert oct((tmp_path / "k.pem").stat().st_mode & 0o777) == "0o600"
    return tmp_path / "k.pem", tmp_path / "p.pem"


def test_sign_verify_exit_codes(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    key, pub = keys
    (tmp_path / "m").write_bytes(b"policy bundle v7")
    sig = tmp_path / "sig"
    assert run("sm2", "sign", "--key", str(key), "--in", str(tmp_path / "m"), "--out",
               str(sig))[0] == 0
    code, out = run("sm2", "verify", "--pub", str(pub), "--in", str(tmp_path / "m"), "--sig",
                    str(sig), "--json")
    assert (code, json.loads(out)) == (0, {"valid": True})
    # wrong ID -> invalid (1)
    assert run("sm2", "verify", "--pub", str(pub), "--in", str(tmp_path / "m"), "--sig",
               str(sig), "--id", "bob")[0] == 1
    # modified message -> invalid (1)
    (tmp_path / "m2").write_bytes(b"policy bundle v8")
    assert run("sm2", "verify", "--pub", str(pub), "--in", str(tmp_path / "m2"), "--sig",
               str(sig))[0] == 1
    # garbage signature / missing file / bad key -> bad input (2)
    (tmp_path / "junk").write_bytes(b"\x30\x02\x05\x00")
    assert run("sm2", "verify", "--pub", str(pub), "--in", str(tmp_path / "m"), "--sig",
               str(tmp_path / "junk"))[0] == 2
    assert run("sm2", "verify", "--pub", str(pub), "--in", str(tmp_path / "nope"), "--sig",
               str(sig))[0] == 2
    assert run("sm2", "verify", "--pub", str(tmp_path / "m"), "--in", str(tmp_path / "m"),
               "--sig", str(sig))[0] == 2
    # raw signatures with a custom ID
    assert run("sm2", "sign", "--key", str(key), "--in", str(tmp_path / "m"), "--out",
               str(tmp_path / "raw"), "--raw", "--id", "alice")[0] == 0
    assert len((tmp_path / "raw").read_bytes()) == 64
    assert run("sm2", "verify", "--pub", str(pub), "--in", str(tmp_path / "m"), "--sig",
               str(tmp_path / "raw"), "--raw", "--id", "alice")[0] == 0


@needs_openssl
def test_cli_keys_and_signatures_work_with_openssl(tmp_path: Path,
                                                   keys: tuple[Path, Path]) -> None:
    key, pub = keys
    (tmp_path / "m").write_bytes(b"hello")
    run("sm2", "sign", "--key", str(key), "--in", str(tmp_path / "m"), "--out",
        str(tmp_path / "sig"))
    res = openssl("pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey",
                  str(pub), "-in", str(tmp_path / "m"), "-sigfile", str(tmp_path / "sig"),
                  "-pkeyopt", "distid:1234567812345678", check=False)
    assert res.returncode == 0


def test_sm2_encrypt_decrypt(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    key, pub = keys
    (tmp_path / "pt").write_bytes(b"sm4 data key")
    for fmt in ("der", "c1c3c2"):
        assert run("sm2", "encrypt", "--pub", str(pub), "--in", str(tmp_path / "pt"),
                   "--out", str(tmp_path / "ct"), "--format", fmt)[0] == 0
        assert run("sm2", "decrypt", "--key", str(key), "--in", str(tmp_path / "ct"),
                   "--out", str(tmp_path / "back"), "--format", fmt)[0] == 0
        assert (tmp_path / "back").read_bytes() == b"sm4 data key"
    ct = bytearray((tmp_path / "ct").read_bytes())
    ct[-1] ^= 1
    (tmp_path / "bad").write_bytes(bytes(ct))
    assert run("sm2", "decrypt", "--key", str(key), "--in", str(tmp_path / "bad"), "--out",
               str(tmp_path / "x"), "--format", "c1c3c2")[0] == 1


def test_sm3_command(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    code, out = run("sm3", str(tmp_path / "f"))
    assert code == 0 and out.split()[0] == sm3.digest(b"abc").hex()
    code, out = run("sm3", str(tmp_path / "f"), "--json")
    assert json.loads(out)["digest"] == sm3.digest(b"abc").hex()
    assert run("sm3", str(tmp_path / "missing"))[0] == 2


@pytest.mark.parametrize("mode", ["ecb", "cbc", "ctr", "gcm"])
def test_sm4_modes(tmp_path: Path, mode: str) -> None:
    key = sm4.generate_key().hex()
    data = bytes(range(256)) * 300 if mode != "ecb" else bytes(4096)
    (tmp_path / "pt").write_bytes(data)
    extra = ["--aad", "beef"] if mode == "gcm" else []
    code, out = run("sm4", "encrypt", "--mode", mode, "--key", key, "--in",
                    str(tmp_path / "pt"), "--out", str(tmp_path / "ct"), *extra)
    assert code == 0, out
    code, out = run("sm4", "decrypt", "--mode", mode, "--key", key, "--in",
                    str(tmp_path / "ct"), "--out", str(tmp_path / "back"), *extra)
    assert code == 0, out
    assert (tmp_path / "back").read_bytes() == data


def test_sm4_gcm_tamper_writes_nothing(tmp_path: Path) -> None:
    key, iv = sm4.generate_key().hex(), "00" * 12
    (tmp_path / "pt").write_bytes(b"secret" * 1000)
    run("sm4", "encrypt", "--mode", "gcm", "--key", key, "--iv", iv, "--in",
        str(tmp_path / "pt"), "--out", str(tmp_path / "ct"))
    ct = bytearray((tmp_path / "ct").read_bytes())
    ct[10] ^= 1
    (tmp_path / "ct").write_bytes(bytes(ct))
    code, _ = run("sm4", "decrypt", "--mode", "gcm", "--key", key, "--iv", iv, "--in",
                  str(tmp_path / "ct"), "--out", str(tmp_path / "out"))
    assert code == 1 and not (tmp_path / "out").exists()
    assert run("sm4", "encrypt", "--mode", "gcm", "--key", "zz", "--in",
               str(tmp_path / "pt"), "--out", str(tmp_path / "x"))[0] == 2
    assert run("sm4", "encrypt", "--mode", "xts", "--key", key, "--in",
               str(tmp_path / "pt"), "--out", str(tmp_path / "x"))[0] == 2


@needs_openssl
def test_sm4_cbc_cli_matches_openssl(tmp_path: Path) -> None:
    key, iv = sm4.generate_key().hex(), "11" * 16
    (tmp_path / "pt").write_bytes(b"interop " * 100)
    run("sm4", "encrypt", "--mode", "cbc", "--key", key, "--iv", iv, "--in",
        str(tmp_path / "pt"), "--out", str(tmp_path / "ct"))
    out = openssl("enc", "-d", "-sm4-cbc", "-K", key, "-iv", iv, "-in",
                  str(tmp_path / "ct")).stdout
    assert out == b"interop " * 100
