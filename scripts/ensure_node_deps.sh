#!/usr/bin/env bash
# Installs the npm packages the interop tests and the token bench use (openid-client,
# oidc-provider), pinned by tests/interop/package-lock.json, if node_modules is missing.
# Needs node >= 20 and npm; without them the interop tests skip with a message.
set -euo pipefail
cd "$(dirname "$0")/../tests/interop"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "ensure_node_deps: node/npm not found; the npm interop tests will be skipped" >&2
  exit 0
fi
if [ ! -d node_modules/openid-client ] || [ ! -d node_modules/oidc-provider ] \
   || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
