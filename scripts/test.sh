#!/usr/bin/env bash
# Runs the whole suite: lint, architecture contract, tests. Starts (and stops) the
# system services the tests need when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
export PATH="$PWD/$VENV/bin:$PATH"

echo "== ruff"
ruff check .
scripts/ensure_system_deps.sh
scripts/ensure_node_deps.sh  # npm openid-client / oidc-provider for tests/interop
scripts/ensure_attack_tools.sh  # sqlmap, nmap for tests/e2e/test_detection.py (loopback only)
echo "== pytest"
set +e
pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
exit $rc
