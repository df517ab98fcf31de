"""Lets the policy tests reuse tests/e2e's process helpers (start_processes, stop_processes)."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parents[1])
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
