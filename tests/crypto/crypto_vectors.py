"""Load the key = value vector files under tests/vectors/ (pyca/NIST style).

Blocks are separated by blank lines; ``#`` starts a comment; ``[...]`` headers are ignored.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def load(relative: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for raw in (VECTORS / relative).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or line.startswith("["):
            continue
        if not line:
            if current:
                blocks.append(current)
                current = {}
            continue
        key, _, value = line.partition("=")
        current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl CLI not installed")


def openssl(*args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *args], input=input, capture_output=True, check=check, timeout=60)
