"""INTERFACES.md names these commands; they must keep existing (each answers --help)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ztgw.gateway.cli import app

COMMANDS = [
    "init", "serve", "config show",
    "demo seed", "demo upstream", "demo run",
    "users add", "clients add",
    "crypto sm2 keygen", "crypto sm2 sign", "crypto sm2 verify", "crypto sm2 encrypt",
    "crypto sm2 decrypt", "crypto sm3", "crypto sm4 encrypt", "crypto sm4 decrypt",
    "policy test", "policy explain", "policy sign", "policy verify",
    "audit verify", "audit search", "audit tail",
    "watermark trace",
    "scan pii", "scan ports", "scan tls", "scan passwords", "scan coverage",
    "drill simulate", "drill report",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_command_exists(command: str) -> None:
    result = CliRunner().invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_bad_usage_exits_2() -> None:
    out = subprocess.run([sys.executable, "-m", "ztgw.gateway", "audit", "search", "--limit", "x"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
