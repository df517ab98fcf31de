#!/usr/bin/env bash
# Installs the Debian attack tools the detection e2e tests replay against a gateway on
# loopback (tests/e2e/test_detection.py): sqlmap and nmap. Nikto is not in Debian main.
# Without root or apt the tests that need a tool skip with a message.
set -euo pipefail
missing=()
for tool in sqlmap nmap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "ensure_attack_tools: ${missing[*]} missing and cannot be installed here; those tests skip" >&2
  exit 0
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; } \
  || echo "ensure_attack_tools: could not install ${missing[*]}; those tests skip" >&2
