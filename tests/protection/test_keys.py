"""Protection keys: created once under HOME/keys with mode 0600, purpose keys independent."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ztgw.crypto import sm3
from ztgw.gateway.protection.keys import KEY_FILE, ProtectionKeys


def test_created_once_private_and_reused(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    a = ProtectionKeys.load_or_create(keys_dir)
    path = keys_dir / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    b = ProtectionKeys.load_or_create(keys_dir)
    assert a.master == b.master and len(a.master) == 32
    assert a.master.hex() not in repr(a)  # key material never in repr (logs)


def test_purpose_keys_are_distinct_and_hmac_sm3(tmp_path: Path) -> None:
    k = ProtectionKeys(bytes(range(32)))
    derived = {k.pseudonym, k.token, k.noise, k.watermark}
    assert len(derived) == 4 and len(k.token) == 16
    assert k.watermark == sm3.hmac(k.master, b"ztgw-protection/watermark")


def test_bad_key_files_fail_closed(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    (keys_dir / KEY_FILE).write_text("not hex", encoding="ascii")
    with pytest.raises(ValueError):
        ProtectionKeys.load_or_create(keys_dir)
    (keys_dir / KEY_FILE).write_text("00" * 8, encoding="ascii")
    with pytest.raises(ValueError):  # 64-bit: too short
        ProtectionKeys.load_or_create(keys_dir)
