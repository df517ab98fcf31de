"""A ztgw of its own for the interop tests, plus the npm packages (scripts/ensure_node_deps.sh)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.conftest import RunningGateway, start_processes, stop_processes

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def node_ready() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (HERE / "node_modules" / "openid-client").is_dir():
        subprocess.run([str(ROOT / "scripts" / "ensure_node_deps.sh")], check=False, timeout=300)
    if not (HERE / "node_modules" / "openid-client").is_dir():
        return "npm packages missing: run scripts/ensure_node_deps.sh"
    return None


@pytest.fixture(scope="module")
def interop_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    why = node_ready()
    if why:
        pytest.skip(why)
    gw, procs = start_processes(tmp_path_factory.mktemp("ztgw-interop"))
    try:
        yield gw
    finally:
        stop_processes(procs)
